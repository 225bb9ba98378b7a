"""The backend's limits and the job memory estimate (the estimate's accuracy: benchmarks/bench_job_memory.py)."""

import pytest
from layering_protocol import Generate, Image, Split
from layeringdiff.errors import NotAvailable
from layeringdiff.job_memory import (
    CROP_MARGIN_PX,
    FIXED_SIZE_MODEL_BYTES,
    SPLIT_CANVAS_BYTES_PER_PIXEL,
    SPLIT_CROP_BYTES_PER_PIXEL,
    estimate_job,
    models_needed,
    split_bytes,
    weight_bytes,
)
from layeringdiff.limits import Limits, parse_size


@pytest.mark.parametrize("text,total,expected", [
    ("12G", None, 12 << 30), ("800M", None, 800 << 20), ("1.5g", None, 3 << 29), ("4096", None, 4096),
    ("64KiB", None, 64 << 10), ("60%", 1000, 600), ("100%", 1000, 1000),
])
def test_sizes(text, total, expected):
    assert parse_size(text, total) == expected


@pytest.mark.parametrize("text,total", [("", None), ("-1G", None), ("0", None), ("12X", None), ("60%", None),
                                        ("0%", 1000), ("101%", 1000), ("x%", 1000)])
def test_bad_sizes(text, total):
    with pytest.raises(ValueError):
        parse_size(text, total)


def test_defaults_follow_the_machine_and_the_pixel_limit():
    limits = Limits.make(max_pixels=10_000, max_memory=8 << 30)
    assert limits.max_message == 10_000 * 20 + (1 << 20)  # the largest valid split at that pixel limit
    assert limits.hard_message == limits.max_message + (64 << 20)  # room to answer an oversized one
    big = Limits.make(max_memory=8 << 30)
    assert big.max_message == 1 << 30  # at most 1/8 of the memory budget
    assert big.queued_input == 2 << 30
    assert Limits.make().max_memory > 0


def _split(w, h, **kwargs):
    return Split(Image(w, h, "RGBA", "u8", b""), **kwargs)


def test_the_estimate_grows_with_the_canvas_and_counts_models_not_loaded():
    small, big = estimate_job(_split(1024, 1024)), estimate_job(_split(4096, 4096))
    per_pixel = SPLIT_CANVAS_BYTES_PER_PIXEL + SPLIT_CROP_BYTES_PER_PIXEL  # no hint to read: all of it is worked on
    assert big.nbytes - small.nbytes == per_pixel * (4096 * 4096 - 1024 * 1024)
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
    """The work follows the object's box (plus context), read from the selection's bounding box or the box."""
    w = h = 4096
    mask = bytearray(w * h)
    for y in range(1000, 1512):
        mask[y * w + 2000:y * w + 2512] = b"\xff" * 512
    by_mask = estimate_job(Split(Image(w, h, "RGBA", "u8", b""), mask=Image(w, h, "L", "u8", bytes(mask))))
    by_box = estimate_job(_split(w, h, box=[2000, 1000, 2512, 1512]))
    crop = (512 + 2 * CROP_MARGIN_PX) ** 2
    assert by_mask.nbytes == by_box.nbytes == split_bytes(w * h, crop)
    assert by_mask.nbytes < estimate_job(_split(w, h)).nbytes - SPLIT_CROP_BYTES_PER_PIXEL * (w * h - crop) + 1
    f32 = estimate_job(Split(Image(w, h, "RGBA", "f32", b""), box=[2000, 1000, 2512, 1512]))
    assert f32.nbytes - by_box.nbytes == 12 * w * h  # 16 bytes a pixel instead of 4


def test_a_lama_fill_costs_its_fixed_working_memory_on_the_objects_crop(tmp_path):
    """LaMa works at its own size on the hole's crop, on the CPU: no per-pixel model allowance, the crop kept."""
    w = h = 4096
    plain = estimate_job(_split(w, h, box=[2000, 1000, 2512, 1512]))
    lama = estimate_job(_split(w, h, box=[2000, 1000, 2512, 1512], options={"fill": "lama"}), weights=lambda n: 0)
    assert lama.nbytes - plain.nbytes == FIXED_SIZE_MODEL_BYTES["lama"]
    onnx_file = tmp_path / "lama" / "lama_fp32.onnx"
    onnx_file.parent.mkdir()
    onnx_file.write_bytes(b"\0" * 2000)
    assert weight_bytes(FakeModels({"lama": str(onnx_file.parent)}, loaded=set()))("lama") == 2000


def test_the_estimate_reads_the_mask_from_the_channel_the_split_uses():
    """An RGB mask: the split takes its red channel (wire.to_mask), and so does the crop of the estimate."""
    import numpy as np
    from layeringdiff.wire import to_mask

    w = h = 1024
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[100:200, 300:400, 0] = 255  # red: the object
    rgb[:, :, 2] = 255  # blue everywhere: not the mask
    for order, frame in (("RGB", rgb), ("BGR", rgb[..., ::-1])):
        mask = Image(w, h, order, "u8", np.ascontiguousarray(frame).tobytes())
        assert to_mask(mask)[150, 350] == 1.0 and to_mask(mask)[0, 0] == 0.0
        estimate = estimate_job(Split(Image(w, h, "RGBA", "u8", b""), mask=mask))
        assert estimate.nbytes == split_bytes(w * h, (100 + 2 * CROP_MARGIN_PX) ** 2)
