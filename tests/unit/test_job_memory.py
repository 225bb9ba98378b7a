"""The job memory estimate's inputs (backend/layeringdiff/job_memory.py): what it reads from a request before the job
runs, checked against what the split itself makes of the same selection (its trimap, its crop, the texture fill's
working level), and how the estimate orders shapes. Its accuracy in bytes: benchmarks/bench_job_memory.py."""

import tracemalloc

import cv2
import numpy as np
import pytest
from layering_protocol import Generate, Image, Split, SplitLayers
from layeringdiff import job_memory
from layeringdiff.errors import NotAvailable
from layeringdiff.imaging.patchmatch import completion
from layeringdiff.imaging.trimap import UNKNOWN, trimap_from_mask
from layeringdiff.job_memory import (
    FIXED_SIZE_MODEL_BYTES,
    TILED_MODEL_BYTES,
    estimate_job,
    label_boxes,
    mask_work,
    models_needed,
    split_bytes,
    split_work,
    weight_bytes,
)
from layeringdiff.stages.split import CROP_MARGIN_PX, SplitOptions, split_layer


def _split(w, h, **kwargs):
    return Split(Image(w, h, "RGBA", "u8", b""), **kwargs)


def _masked(mask: np.ndarray, **kwargs) -> Split:
    """A split request with this selection (HxW in [0, 1]) as its u8 mask frame."""
    h, w = mask.shape
    frame = (np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8)
    return _split(w, h, mask=Image(w, h, "L", "u8", frame.tobytes()), **kwargs)


def _u8(mask: np.ndarray) -> np.ndarray:
    return (np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8)


def _disc(side: int, radius: int, feather: float = 0.0) -> np.ndarray:
    mask = np.zeros((side, side), np.float32)
    cv2.circle(mask, (side // 2, side // 2), radius, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), feather) if feather else mask


def _strands(side: int) -> np.ndarray:
    """A disc with thin strands (2-3 px) reaching out of it: edges whose bands overlap."""
    mask = _disc(side, side // 4)
    rng = np.random.default_rng(1)
    for angle in rng.uniform(0, 2 * np.pi, 12):
        tip = (int(side / 2 + 0.45 * side * np.cos(angle)), int(side / 2 + 0.45 * side * np.sin(angle)))
        cv2.line(mask, (side // 2, side // 2), tip, 1.0, int(rng.integers(2, 4)))
    return mask


def _fur(side: int) -> np.ndarray:
    """A furry object's hard label (examples.soft_alpha's strands, alpha > 0.5)."""
    from layeringdiff.examples import soft_alpha

    return (soft_alpha(side, side, seed=1, hair=30, glass=False) > 0.5).astype(np.float32)


def _unknown(mask: np.ndarray, band: int | None = None) -> int:
    """The unknown band as the split makes it."""
    return int(np.count_nonzero(trimap_from_mask(_u8(mask).astype(np.float32) / 255, band) == UNKNOWN))


@pytest.mark.parametrize("mask,band", [
    (_disc(512, 200), None),  # a hard edge: 2% of the object's size either side
    (_disc(512, 200, feather=6.0), None),  # a feathered selection: its own band replaces the ramp
    (_disc(512, 60), None),  # a small object: the narrowest band
    (_strands(768), None),  # strands: the bands of their two sides overlap
    (_fur(512), None),  # fur cut at alpha 0.5: the band widened around the strands (trimap_and_strands)
    (_disc(512, 200), 20),  # the band option
])
def test_the_unknown_band_is_read_as_the_trimap_makes_it(mask, band):
    """The estimate's unknown pixels come from the selection's edges, soft pixels and the band's width: the
    trimap's band, within a tenth, counted on blocks of 2x2 pixels (a band of a few pixels: up to a block's width
    more along its edge; a feathered ramp's width is measured on the edge's pixels, not its contour)."""
    real = _unknown(mask, band)
    read = mask_work(_u8(mask), band=band).unknown
    contours, _ = cv2.findContours((_u8(mask) >= 128).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    edge = sum(cv2.arcLength(c, True) for c in contours)
    assert 0.9 * real <= read <= 1.1 * real + 2 * edge


def test_a_feathered_selection_over_the_whole_canvas_costs_its_band_not_its_ramp():
    """A ramp from 0 at the left to 1 at the right: every pixel is soft, but a feathered selection's unknown band
    is a band around its middle (trimap_from_mask), and alpha is 0 left of it: the crop is the right part."""
    side = 1024
    ramp = np.broadcast_to(np.linspace(0, 1, side, dtype=np.float32), (side, side))
    work = mask_work(_u8(ramp))
    assert 0.9 * _unknown(ramp) <= work.unknown < 0.25 * side * side
    assert work.crop < 0.75 * side * side


def test_u16_and_float_masks_read_as_their_u8_frame():
    mask = _disc(512, 150, feather=3.0)
    u8 = estimate_job(_masked(mask))
    for dtype, scale in (("u16", 65535), ("f32", 1.0)):
        frame = (np.clip(mask, 0, 1) * scale + (0.5 if dtype == "u16" else 0)).astype(
            np.uint16 if dtype == "u16" else np.float32)
        other = estimate_job(_split(512, 512, mask=Image(512, 512, "L", dtype, frame.tobytes())))
        assert other.nbytes == pytest.approx(u8.nbytes, rel=0.02)


def test_a_noise_mask_costs_more_than_a_clean_disc_of_the_same_box():
    """Every pixel of a random 0/255 selection is next to an edge: the unknown band is the whole box (its matting
    at reduced size, and full-size arrays over the box), against a thin band round a disc with the same box."""
    side = 1024
    noise = np.random.default_rng(0).integers(0, 2, (side, side)).astype(np.float32)
    disc = _disc(side, side // 2)
    assert split_work(_masked(noise)).crop == split_work(_masked(disc)).crop == side * side
    assert split_work(_masked(noise)).unknown >= 0.9 * side * side > 4 * split_work(_masked(disc)).unknown
    assert estimate_job(_masked(noise)).nbytes > estimate_job(_masked(disc)).nbytes


def test_two_corner_pixels_are_estimated_by_their_real_work():
    """Two opposite corner pixels: the selection's box is the canvas, so the split works on all of it, and the
    hole is two pixels, so the texture fill searches patches at full size (no reduced level to work at): more than
    a disc filling the canvas, whose fill works at a reduced size, though its band is far larger."""
    side = 2048
    corners = np.zeros((side, side), np.float32)
    corners[0, 0] = corners[-1, -1] = 1.0
    work = split_work(_masked(corners))
    assert work.crop == work.level == work.energy == side * side
    assert work.unknown < 100  # a band of a few pixels round each
    disc = split_work(_masked(_disc(side, side // 2 - 8)))
    assert disc.level < side * side / 64
    assert estimate_job(_masked(corners)).nbytes > estimate_job(_masked(_disc(side, side // 2 - 8))).nbytes


def _fill_levels(mask: np.ndarray, exact: bool) -> dict:
    """The texture fill's working level and texture-energy level (pixels) in a real split of this selection."""
    seen = {"level": 0}
    em, energy = completion._em, completion.texture_energy

    def record_em(level, *args, **kwargs):
        seen["level"] = level.hole.size
        return em(level, *args, **kwargs)

    def record_energy(image, known, *args, **kwargs):
        seen["energy"] = known.size
        return energy(image, known, *args, **kwargs)

    h, w = mask.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    image = np.dstack([0.5 + 0.5 * np.sin(xx / 3), 0.5 + 0.5 * np.cos(yy / 5), (xx + yy) / (w + h),
                       np.ones((h, w))]).astype(np.float32)
    completion._em, completion.texture_energy = record_em, record_energy
    try:
        result = split_layer(image, mask=_u8(mask).astype(np.float32) / 255,
                             options=SplitOptions(alpha_mode="mask" if exact else "matte"))
    finally:
        completion._em, completion.texture_energy = em, energy
    x0, y0, x1, y1 = result.info["crop"]
    return seen | {"crop": (x1 - x0) * (y1 - y0)}


def _islands(side: int, size: int, every: int) -> np.ndarray:
    mask = np.zeros((side, side), np.float32)
    for dy in range(size):
        for dx in range(size):
            mask[every // 2 + dy::every, every // 2 + dx::every] = 1.0
    return mask


@pytest.mark.parametrize("name,mask,exact", [
    (name, mask, exact) for name, mask in (
        ("disc", _disc(384, 120)),  # a big hole: the fill works at a reduced size
        ("small disc", _disc(384, 30)),
        ("islands", _islands(384, 4, 16)),  # coarse levels hold no whole patch between the islands: full size
    ) for exact in (False, True)] + [
    # no level has source; with matting a small canvas's alpha can have some (a big one's, matted at reduced size
    # and brought back by the guided filter, has none): the selection cannot tell
    ("noise", np.random.default_rng(0).integers(0, 2, (256, 256)).astype(np.float32), True),
])
def test_the_fill_levels_are_read_as_the_fill_chooses_them(name, mask, exact):
    """The texture fill's working level (from the hole's size, finer where the source between the selected
    pixels holds no whole patch, none where no level does) and its texture-energy level, as a split picks them."""
    real = _fill_levels(mask, exact)
    work = mask_work(_u8(mask), exact=exact)
    assert work.crop == pytest.approx(real["crop"], rel=0.05)
    assert work.level == pytest.approx(real["level"], rel=0.05)
    if exact:  # with matting, alpha (not the selection) decides the hole: the energy level may differ
        assert work.energy == pytest.approx(real["energy"], rel=0.05)


def test_exact_alpha_needs_no_matting_and_other_fills_no_patch_search():
    mask = _disc(1024, 300)
    matte, exact = split_work(_masked(mask)), split_work(_masked(mask, options={"alpha_mode": "mask"}))
    assert matte.unknown > 0 and exact.unknown == exact.box == 0
    assert estimate_job(_masked(mask, options={"alpha_mode": "mask"})).nbytes < estimate_job(_masked(mask)).nbytes
    smooth = split_work(_masked(mask, options={"fill": "smooth"}))
    assert smooth.level == smooth.energy == 0 < matte.level


def test_a_box_is_estimated_as_the_ellipse_inscribed_in_it():
    """What GrabCut will find is not known before the job: the object is taken as the ellipse in the box."""
    w = h = 2048
    ellipse = np.zeros((h, w), np.float32)
    cv2.ellipse(ellipse, (1000, 900), (400, 300), 0, 0, 360, 1.0, -1)
    by_box = estimate_job(_split(w, h, box=[600, 600, 1401, 1201]))
    assert by_box.nbytes == pytest.approx(estimate_job(_masked(ellipse)).nbytes, rel=0.05)


def test_reading_a_selection_costs_the_server_a_few_megabytes():
    """The server reads the selection a band of rows at a time: a 4096^2 mask (16 MB) adds little to its memory."""
    side = 4096
    mask = _u8(_strands(side))
    tracemalloc.start()
    try:
        mask_work(mask)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20


def _boxes_by_hand(labels):
    boxes = {}
    for k in np.unique(labels)[1:]:
        ys, xs = np.nonzero(labels == k)
        boxes[int(k)] = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return boxes


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_label_boxes_are_each_labels_box_whatever_the_pixels_read_at_a_time(monkeypatch, chunk):
    """Labels 1..255 in any number, scattered across chunks (pixels read at a time), in any shape."""
    monkeypatch.setattr(job_memory, "LABEL_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    for h, w in ((37, 53), (1, 300), (300, 1), (16, 16)):
        labels = np.zeros((h, w), np.uint8)
        for k in (1, 2, 200, 255):
            y, x = rng.integers(0, h), rng.integers(0, w)
            labels[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = k
        labels[rng.random((h, w)) < 0.02] = 9  # a label in specks everywhere
        labels[-1, -1] = 17  # and one in the last pixel only
        assert label_boxes(Image(w, h, "L", "u8", labels.tobytes())) == _boxes_by_hand(labels)
    assert label_boxes(Image(5, 3, "L", "u8", bytes(15))) == {}


@pytest.mark.parametrize("w, h", [(2_097_152, 2), (2, 2_097_152)])
def test_label_boxes_of_a_long_strip_cost_tens_of_megabytes(w, h):
    """A 4 MB label image one way or the other (the server reads it on its own thread at admission): before, a row
    or a column of 256 flags a pixel, 4.5 GB for (2_097_152, 2), and int32 flat indices past 8.4M columns."""
    labels = np.zeros(w * h, np.uint8)
    labels[w * h // 3: w * h // 2] = 255
    labels[-1] = 1
    tracemalloc.start()
    try:
        boxes = label_boxes(Image(w, h, "L", "u8", labels.tobytes()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert boxes == _boxes_by_hand(labels.reshape(h, w))
    assert peak < 64 << 20


def test_a_strip_one_pixel_wide_is_read_in_a_few_rounds_and_as_any_chunk_reads_it(monkeypatch):
    """mask_work reads about MASK_CHUNK pixels a round, whatever the shape: a 1 x 16M selection took 62,500
    rounds of MASK_ROWS rows (6 s on the server's own thread, every other client waiting)."""
    h = 1 << 20
    mask = np.zeros((h, 1), np.uint8)
    mask[h // 4: h // 2] = 255
    mask[h // 2: h // 2 + 40] = 128  # a soft end
    rounds = []
    pool = job_memory._pool
    monkeypatch.setattr(job_memory, "_pool", lambda a: rounds.append(a.shape) or pool(a))
    work = mask_work(mask)
    reads = [s for s in rounds if s[0] == job_memory.MASK_CHUNK]  # the reading loop pools three arrays a round
    assert len(reads) == 3 * (h // job_memory.MASK_CHUNK) and len(rounds) < 40
    monkeypatch.setattr(job_memory, "MASK_CHUNK", 1)  # MASK_ROWS rows a round, as before
    monkeypatch.setattr(job_memory, "_pool", pool)
    assert mask_work(mask) == work
    wide = mask_work(np.ascontiguousarray(mask.T))  # the same strip lying down: the same work
    assert (wide.crop, wide.unknown, wide.mixed) == (work.crop, work.unknown, work.mixed)


def test_admission_reads_no_selection_or_labels_of_a_canvas_past_its_scan_limit(monkeypatch):
    """estimate_job's `least` (admission, on the server's own thread) reads up to ADMIT_SCAN_PIXELS; past it, the
    least any selection or labels can need, at most the full estimate, which reads them."""
    monkeypatch.setattr(job_memory, "ADMIT_SCAN_PIXELS", 64 * 64)
    mask = np.zeros((80, 80), np.float32)
    mask[70:, 70:] = 1.0
    labels = Image(80, 80, "L", "u8", (np.arange(6400) % 3).astype(np.uint8).tobytes())
    layers = SplitLayers(Image(80, 80, "RGBA", "u8", bytes(4 * 6400)), labels)
    full = estimate_job(_masked(mask)).nbytes, estimate_job(layers).nbytes

    def unread(*args, **kwargs):
        raise AssertionError("read at admission")

    monkeypatch.setattr(job_memory, "mask_work", unread)
    monkeypatch.setattr(job_memory, "label_boxes", unread)
    least = estimate_job(_masked(mask), least=True).nbytes, estimate_job(layers, least=True).nbytes
    assert least[0] == split_bytes(6400, 0, 0, job_memory.SplitWork(0, 0, 0)) < full[0]
    assert 0 < least[1] < full[1]
    with pytest.raises(AssertionError, match="read at admission"):  # the worker's estimate reads them
        estimate_job(_masked(mask))
    monkeypatch.setattr(job_memory, "ADMIT_SCAN_PIXELS", 80 * 80)
    with pytest.raises(AssertionError, match="read at admission"):  # up to the limit, admission reads them too
        estimate_job(_masked(mask), least=True)


def test_the_estimate_grows_with_the_canvas_and_counts_models_not_loaded():
    small, big = estimate_job(_split(1024, 1024)), estimate_job(_split(4096, 4096))
    assert big.nbytes > 4 * small.nbytes  # no hint to read: all of a 16x larger canvas is worked on
    assert big.what == "a 4096x4096 split" and small.nbytes == split_bytes(1024 * 1024)
    phrase = estimate_job(_split(1024, 1024, phrase="a cat"))
    assert phrase.nbytes > small.nbytes + 1e9  # stage-2 weights, as the registry gives them
    loaded = estimate_job(_split(1024, 1024, phrase="a cat"), weights=lambda name: 0)
    on_gpu = estimate_job(_split(1024, 1024, phrase="a cat"), weights=lambda name: 0, on_gpu=True)
    assert phrase.nbytes > loaded.nbytes > on_gpu.nbytes == small.nbytes
    generate = estimate_job(Generate("[a cat]", width=1024, height=1024))
    assert generate.nbytes > 7e9 and "1024x1024" in generate.what
    assert models_needed(Generate("[a]", options={"control": "depth"}))[:2] == ["sdxl", "controlnet-depth"]
    assert models_needed(_split(8, 8, options={"layering": "fbdd"})) == ["layering"]
    assert models_needed(_split(8, 8, box=[0, 0, 4, 4])) == []


class FakeModels:
    def __init__(self, folders: dict, loaded: set) -> None:
        self.folders, self._loaded = folders, loaded

    def loaded(self) -> set:
        return self._loaded

    def resolve(self, name: str) -> str:
        if name not in self.folders:
            raise NotAvailable(f"{name} missing")
        return self.folders[name]


def test_weights_are_read_from_the_model_folders(tmp_path):
    """What loading reads: the weight files in the folder (a tiny test model is not 7 GB); nothing for a
    model in memory already, or missing (that job answers not_available first)."""
    sam = tmp_path / "sam"
    (sam / "sub").mkdir(parents=True)
    (sam / "model.safetensors").write_bytes(b"\0" * 1000)
    (sam / "sub" / "extra.bin").write_bytes(b"\0" * 500)
    (sam / "config.json").write_text("{}" * 100)
    size = weight_bytes(FakeModels({"sam": str(sam), "vitmatte": str(sam)}, loaded={"vitmatte"}))
    assert size("sam") == 1500 and size("vitmatte") == 0 and size("grounding-dino") == 0


def test_a_small_object_on_a_big_canvas_costs_its_crop_and_a_wide_layer_its_bytes():
    """The work follows the object's box (plus context), read from the selection or the box."""
    w = h = 4096
    mask = np.zeros((h, w), np.float32)
    mask[1000:1512, 2000:2512] = 1.0
    by_mask = split_work(_masked(mask))
    by_box = split_work(_split(w, h, box=[2000, 1000, 2512, 1512]))
    for work in (by_mask, by_box):  # the box grown by the band (2% of 512 px, about 10) and the context
        assert (512 + 2 * CROP_MARGIN_PX) ** 2 < work.crop < (512 + 2 * CROP_MARGIN_PX + 2 * 12) ** 2
    whole = estimate_job(_split(w, h)).nbytes
    assert estimate_job(_masked(mask)).nbytes < 0.75 * whole
    u8, u16, f32 = (estimate_job(Split(Image(w, h, "RGBA", dtype, b""), box=[2000, 1000, 2512, 1512])).nbytes
                    for dtype in ("u8", "u16", "f32"))
    assert f32 - u8 == 3 * (u16 - u8) > 0  # the result's frames: 12 bytes a pixel more than u8, u16's 4 more


def test_a_lama_fill_costs_its_fixed_working_memory_on_the_objects_crop(tmp_path):
    """LaMa works at its own size on the hole's crop, on the CPU: no per-pixel model allowance and no patch
    search (as the smooth fill), the crop kept."""
    w = h = 4096
    smooth = estimate_job(_split(w, h, box=[2000, 1000, 2512, 1512], options={"fill": "smooth"}))
    lama = estimate_job(_split(w, h, box=[2000, 1000, 2512, 1512], options={"fill": "lama"}), weights=lambda n: 0)
    assert lama.nbytes - smooth.nbytes == FIXED_SIZE_MODEL_BYTES["lama"]
    onnx_file = tmp_path / "lama" / "lama_fp32.onnx"
    onnx_file.parent.mkdir()
    onnx_file.write_bytes(b"\0" * 2000)
    assert weight_bytes(FakeModels({"lama": str(onnx_file.parent)}, loaded=set()))("lama") == 2000


def test_the_learned_matting_costs_its_tiles_on_the_cpu_and_nothing_more_on_a_gpu():
    """ViTMatte works in tiles of a fixed size on the band's box (stages/learned_matte.py): a selection's split with
    it keeps its crop's estimate, plus the tiles' allowance on the CPU, plus its weights where they are not loaded."""
    w = h = 4096
    box = [2000, 1000, 2512, 1512]
    closed = estimate_job(_split(w, h, box=box, options={"matting": "closed-form"}))
    learned = _split(w, h, box=box, options={"matting": "vitmatte"})
    assert models_needed(learned) == ["vitmatte"]
    assert estimate_job(learned, weights=lambda n: 0).nbytes - closed.nbytes == TILED_MODEL_BYTES["vitmatte"]
    assert estimate_job(learned, weights=lambda n: 0, on_gpu=True).nbytes == closed.nbytes
    assert estimate_job(learned, weights=lambda n: 1000).nbytes == closed.nbytes + TILED_MODEL_BYTES["vitmatte"] + 1000
    assert closed.nbytes < 0.5 * estimate_job(_split(w, h)).nbytes  # the crop's work, not the canvas's
    # nothing is matted with the exact alpha; auto and the closed form name no model (auto: ViTMatte on a GPU only)
    assert models_needed(_split(w, h, box=box, options={"matting": "vitmatte", "alpha_mode": "mask"})) == []
    assert models_needed(_split(w, h, box=box, options={"matting": "auto"})) == []
    labels = Image(64, 64, "L", "u8", bytes(64 * 64))
    assert models_needed(SplitLayers(Image(64, 64, "RGBA", "u8", b""), labels, options={"matting": "vitmatte"})) == \
        ["vitmatte"]
    # a phrase's stage 2 has ViTMatte already, once
    assert models_needed(_split(w, h, phrase="a cat", options={"matting": "vitmatte"})).count("vitmatte") == 1


def test_the_estimate_reads_the_mask_from_the_channel_the_split_uses():
    """An RGB mask: the split takes its red channel (wire.to_mask), and so does the estimate."""
    from layeringdiff.wire import to_mask

    w = h = 1024
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[100:200, 300:400, 0] = 255  # red: the object
    rgb[:, :, 2] = 255  # blue everywhere: not the mask
    red = estimate_job(_split(w, h, mask=Image(w, h, "L", "u8", np.ascontiguousarray(rgb[..., 0]).tobytes())))
    for order, frame in (("RGB", rgb), ("BGR", rgb[..., ::-1])):
        mask = Image(w, h, order, "u8", np.ascontiguousarray(frame).tobytes())
        assert to_mask(mask)[150, 350] == 1.0 and to_mask(mask)[0, 0] == 0.0
        assert estimate_job(Split(Image(w, h, "RGBA", "u8", b""), mask=mask)).nbytes == red.nbytes
