"""The learned matting (ViTMatte, the `matting` option) with a tiny random ViTMatte of the real classes: in tiles on
the unknown band's box, in a split from a selection, in a split into layers from labels, through the real backend
process and the CLI; without its weights, a clear error naming it."""

import subprocess
import sys

import numpy as np
import pytest
from layering_protocol import Error, ErrorCode, Image, Result, Split, SplitLayers
from layeringdiff.client import Client, result_arrays
from layeringdiff.examples import synthetic_composite
from layeringdiff.imaging.trimap import UNKNOWN, trimap_from_mask
from layeringdiff.io.ora import read_ora
from layeringdiff.models import ModelManager
from layeringdiff.options import SplitOptions
from layeringdiff.pipeline import matte_method
from layeringdiff.stages import learned_matte as lm
from layeringdiff.stages.peel import LabelMasks, split_objects
from layeringdiff.stages.split import split_layer
from layeringdiff.wire import from_array
from PIL import Image as PILImage

from tests.conftest import BackendProcess
from tests.models.runtime import model_config


@pytest.fixture(scope="module")
def vitmatte(tiny_models):
    root, _ = tiny_models
    return ModelManager(model_config().with_models_dir(str(root))).vitmatte()


@pytest.fixture(scope="module")
def lively_vitmatte(vitmatte):
    """The tiny ViTMatte with a louder matting head: at its initialisation its alpha is 0.5 within 1e-6 everywhere,
    which no blending can tell apart."""
    import copy

    import torch

    model, processor = vitmatte
    lively = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in lively.named_parameters():
            if name.startswith("decoder.matting_head") and p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 50)
    return lively, processor


def disc_scene(h=200, w=260, seed=4):
    comp, alpha, _, _ = synthetic_composite(h, w, seed=seed)
    return comp, (alpha > 0.5).astype(np.float32)


def test_tiles_cover_the_side_with_the_overlap_and_blend_without_a_zero():
    assert lm.spans(100, 128, 16) == [(0, 100)]
    for length, tile, overlap in ((300, 128, 16), (1024, 1024, 64), (1025, 1024, 64), (5000, 1024, 64)):
        spans = lm.spans(length, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(stop - start == min(tile, length) for start, stop in spans)
        assert all(a[1] - b[0] >= overlap for a, b in zip(spans, spans[1:], strict=False))  # neighbours overlap
        assert len(lm.spans(length, tile, overlap)) == max(1, -(-(length - overlap) // (tile - overlap)))
        weights = np.zeros(length, np.float32)
        for start, stop in spans:
            w = lm.ramp(start, stop, length, overlap)
            assert w.min() > 0 and w.max() == 1
            weights[start:stop] += w
        assert weights.min() > 0
    # at the picture's own edges the weight stays 1; towards a neighbour it falls
    w = lm.ramp(0, 128, 300, 16)
    assert w[0] == 1 and w[-1] == pytest.approx(1 / 17) and np.all(np.diff(w[-16:]) < 0)


def test_learned_matte_keeps_the_sure_pixels_and_runs_only_the_tiles_with_band(vitmatte):
    model, processor = vitmatte
    comp = synthetic_composite(300, 700, seed=4)[0]
    mask = np.zeros((300, 700), np.float32)
    mask[60:200, 40:150] = 1  # two objects far apart: the band's box spans the picture, its middle holds no band
    mask[100:260, 560:660] = 1
    trimap = trimap_from_mask(mask, 6)
    calls = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        stages = []
        alpha = lm.learned_matte(model, processor, comp, trimap, lambda s, f: stages.append((s, f)), tile=128)
    finally:
        hook.remove()
    unknown = trimap == UNKNOWN
    np.testing.assert_array_equal(alpha[~unknown], (trimap[~unknown] >= 1).astype(np.float32))
    assert alpha.dtype == np.float32 and np.all((alpha >= 0) & (alpha <= 1))
    # the band's box with its context, in tiles: those over the gap between the objects hold no band and are not run
    rows, cols = np.flatnonzero(unknown.any(1)), np.flatnonzero(unknown.any(0))
    box = trimap[max(0, rows[0] - lm.CONTEXT):rows[-1] + 1 + lm.CONTEXT, max(0, cols[0] - lm.CONTEXT):]
    tiles = [(ys, xs) for ys in lm.spans(box.shape[0], 128) for xs in lm.spans(box.shape[1], 128)]
    with_band = [(ys, xs) for ys, xs in tiles if np.any(box[ys[0]:ys[1], xs[0]:xs[1]] == UNKNOWN)]
    assert len(calls) == len(with_band) and len(tiles) - len(with_band) >= 4
    assert len(stages) == len(calls) and [f for _, f in stages] == sorted(f for _, f in stages)


def test_a_tile_alone_over_a_pixel_gives_its_own_prediction(lively_vitmatte):
    """Where one tile alone covers a pixel, the alpha is that tile's prediction (the blend's weights cancel);
    where two do, it lies between theirs."""
    model, processor = lively_vitmatte
    comp = np.random.default_rng(0).random((96, 300, 3)).astype(np.float32)
    trimap = np.full((96, 300), UNKNOWN, np.float32)
    trimap[:, :8] = 0.0
    trimap[:, -8:] = 1.0
    alpha = lm.learned_matte(model, processor, comp, trimap, tile=128)  # the box is the whole picture here
    (a0, a1), (b0, b1), (c0, _) = lm.spans(300, 128)[:3]
    first = np.clip(lm.predict(model, processor, comp[:, a0:a1], trimap[:, a0:a1]), 0, 1)
    second = np.clip(lm.predict(model, processor, comp[:, b0:b1], trimap[:, b0:b1]), 0, 1)
    alone = slice(8, b0)
    np.testing.assert_allclose(alpha[:, alone], first[:, alone], atol=1e-5)
    both = slice(b0, min(a1, c0))  # the first two tiles only
    theirs = first[:, both], second[:, :both.stop - b0]
    lo, hi = np.minimum(*theirs), np.maximum(*theirs)
    assert np.all(alpha[:, both] >= lo - 1e-5) and np.all(alpha[:, both] <= hi + 1e-5)
    assert not np.allclose(alpha[:, both], first[:, both], atol=1e-3)  # the second tile's share shows


def test_a_split_with_the_learned_matting_recomposes_and_says_so(vitmatte):
    comp, mask = disc_scene()
    matte = lm.vitmatte_matte(*vitmatte)
    stages = []
    result = split_layer(comp, mask=mask, options=SplitOptions(quantize=255, matting="vitmatte"), matte=matte,
                         progress=lambda s, f: stages.append((s, f)))
    assert result.info["matting"] == "vitmatte" and result.info["recomposition_error"] <= 1 / 255
    closed = split_layer(comp, mask=mask, options=SplitOptions(quantize=255))
    assert closed.info["matting"] == "closed-form"
    assert not np.array_equal(result.alpha, closed.alpha)  # the model's alpha, not the closed form's
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and "matting" in {s for s, _ in stages}
    # the exact alpha mode mats nothing, whatever the matting
    exact = split_layer(comp, mask=mask, options=SplitOptions(alpha_mode="mask", matting="vitmatte"), matte=matte)
    np.testing.assert_array_equal(exact.alpha, mask)
    with pytest.raises(ValueError, match="needs its model"):
        split_layer(comp, mask=mask, options=SplitOptions(matting="vitmatte"))


def test_objects_from_labels_each_get_the_learned_matting(vitmatte):
    comp, _ = disc_scene(160, 200)
    labels = np.zeros((160, 200), np.uint8)
    labels[70:140, 90:170] = 2
    labels[30:90, 40:110] = 1  # in front where they overlap
    peeled = split_objects(comp, LabelMasks(labels, [1, 2]), SplitOptions(quantize=255, matting="vitmatte"),
                           matte=lm.vitmatte_matte(*vitmatte))
    assert [i["matting"] for i in peeled.infos] == ["vitmatte", "vitmatte"]
    assert np.abs(peeled.composite()[..., :3] - comp).max() <= 1 / 255


def test_matte_method_follows_the_option(tiny_models, tmp_path):
    root, _ = tiny_models
    here = ModelManager(model_config().with_models_dir(str(root)))
    assert matte_method(here, {"matting": "closed-form"}) is None
    assert matte_method(here, {"matting": "vitmatte", "alpha_mode": "mask"}) is None
    assert callable(matte_method(here, {"matting": "vitmatte"}))
    # auto: ViTMatte only where a GPU runs it (these tests' device: the CPU unless asked otherwise)
    assert (matte_method(here, {}) is not None) == here.accelerated()
    missing = ModelManager(model_config(offline=True).with_overrides([f"vitmatte={tmp_path / 'none'}"]))
    assert matte_method(missing, {}) is None  # auto without the weights: the closed form, nothing asked of torch
    from layeringdiff.models import NotAvailable

    with pytest.raises(NotAvailable) as err:
        matte_method(missing, {"matting": "vitmatte"})
    assert "vitmatte" in err.value.text and "models fetch" in err.value.detail


def test_selection_and_labels_with_the_learned_matting_through_the_server(model_backend):
    comp, mask = disc_scene(120, 160)
    image = from_array(np.dstack([comp, np.ones(comp.shape[:2], np.float32)]), "u8", "BGRA")
    selection = from_array(mask, "u8", "L")
    labels = np.zeros((120, 160), np.uint8)
    labels[20:70, 30:90] = 1
    labels[50:110, 80:150] = 2
    with Client(model_backend.endpoint) as c:
        final, _ = c.run(Split(image, mask=selection, options={"matting": "vitmatte"}), timeout=120)
        assert isinstance(final.message, Result), final.message
        assert final.message.info["matting"] == "vitmatte" and final.message.info["recomposition_error"] <= 1 / 255
        learned = result_arrays(final.message)["alpha"]
        final, _ = c.run(Split(image, mask=selection, options={"matting": "closed-form"}), timeout=60)
        assert final.message.info["matting"] == "closed-form"
        assert not np.array_equal(result_arrays(final.message)["alpha"], learned)
        final, _ = c.run(SplitLayers(image, Image(160, 120, "L", "u8", labels.tobytes()),
                                     options={"matting": "vitmatte"}), timeout=120)
        assert isinstance(final.message, Result), final.message
        assert final.message.info["matting"] == "vitmatte" and len(final.message.behind) == 1
        assert final.message.info["recomposition_error"] <= 1 / 255
        final, events = c.run(Split(image, mask=selection, options={"matting": "learned"}), timeout=30)
        err = final.message
        assert isinstance(err, Error) and err.code == ErrorCode.BAD_INPUT and len(events) == 1
        assert "matting must be one of ('auto', 'closed-form', 'vitmatte')" in err.text


def test_without_its_weights_the_learned_matting_is_refused_by_name(tmp_path):
    server = BackendProcess("--model", f"vitmatte={tmp_path / 'no-vitmatte'}")
    comp, mask = disc_scene(64, 80)
    image = from_array(np.dstack([comp, np.ones(comp.shape[:2], np.float32)]), "u8", "BGRA")
    try:
        with Client(server.endpoint) as c:
            final, _ = c.run(Split(image, mask=from_array(mask, "u8", "L"), options={"matting": "vitmatte"}),
                             timeout=60)
            err = final.message
            assert isinstance(err, Error) and err.code == ErrorCode.NOT_AVAILABLE
            assert "vitmatte" in err.text and "models fetch" in err.detail
            final, _ = c.run(Split(image, mask=from_array(mask, "u8", "L")), timeout=60)  # auto: the closed form
            assert isinstance(final.message, Result) and final.message.info["matting"] == "closed-form"
    finally:
        server.terminate()


def test_cli_split_with_labels_and_the_learned_matting(tiny_models, tmp_path):
    root, _ = tiny_models
    comp, _ = disc_scene(120, 160)
    PILImage.fromarray((comp * 255 + 0.5).astype(np.uint8)).save(tmp_path / "in.png")
    labels = np.zeros((120, 160), np.uint8)
    labels[20:70, 30:90] = 1
    labels[50:110, 80:150] = 2
    PILImage.fromarray(labels).save(tmp_path / "labels.png")
    out = tmp_path / "out.ora"
    command = [sys.executable, "-m", "layeringdiff", "split", str(tmp_path / "in.png"), "--labels",
               str(tmp_path / "labels.png"), "--no-png", "--matting", "vitmatte"]
    proc = subprocess.run([*command, "-o", str(out), "--models-dir", str(root)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "vitmatte matting" in proc.stderr.splitlines()[-1]
    layers, w, h = read_ora(out)
    assert (w, h) == (160, 120) and [la.name for la in layers] == ["object 1", "object 2", "background", "original"]
    missing = subprocess.run([*command, "-o", str(tmp_path / "other.ora"), "--model",
                              f"vitmatte={tmp_path / 'none'}"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "vitmatte" in missing.stderr and "models fetch" in missing.stderr
    assert not (tmp_path / "other.ora").exists()
