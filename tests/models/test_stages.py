"""Stages 1 and 2 with tiny models of the real classes, loaded through the real ModelManager by folder."""

import cv2
import numpy as np
import pytest
from layeringdiff.errors import InputError, JobCancelled
from layeringdiff.examples import synthetic_composite
from layeringdiff.imaging.trimap import UNKNOWN
from layeringdiff.models import ModelManager
from layeringdiff.stages import foreground
from layeringdiff.stages.foreground import (
    Detection,
    ForegroundOptions,
    choose_box,
    detect,
    determine_foreground,
    dino_query,
    learned_matte,
    mark_transparent,
    segment,
    to_pil,
)
from layeringdiff.stages.generate import GenerateParams, control_condition, generate_composite

from tests.models.runtime import model_config

LOOSE = ForegroundOptions(box_threshold=0.0, text_threshold=0.0)


@pytest.fixture(scope="module")
def manager(tiny_models):
    root, _ = tiny_models
    return ModelManager(model_config().with_models_dir(str(root)))


@pytest.fixture(scope="module")
def photo():
    comp, alpha, _, _ = synthetic_composite(96, 128, seed=2)
    return comp


# ---- stage 2 pieces with hand-made inputs ------------------------------------------------------------
def test_dino_query_format():
    assert dino_query("A  Red Fox") == "a red fox." and dino_query("glass.") == "glass."


def test_choose_box_policies():
    dets = [Detection((10, 10, 30, 40), 0.9, "cat"), Detection((50, 5, 70, 20), 0.5, "cat")]
    assert choose_box(dets, "best", 100, 100) == (10, 10, 30, 40)
    assert choose_box(dets, "union", 100, 100) == (10, 5, 70, 40)
    assert choose_box([Detection((-5, -2, 120.2, 50), 1, "x")], "best", 100, 60) == (0, 0, 100, 50)


def test_transparent_boxes_make_the_overlap_unknown():
    trimap = np.zeros((20, 20), np.float32)
    trimap[5:15, 5:15] = 1.0
    mask = trimap > 0.5
    out = mark_transparent(trimap, mask, [(10, 0, 20, 8)])
    assert np.all(out[5:8, 10:15] == UNKNOWN)  # overlap of box and object
    assert np.all(out[0:5, 10:20] == 0.0)  # box outside the object stays background
    assert np.all(out[8:15, 5:15] == 1.0) and np.all(out[5:8, 5:10] == 1.0)
    assert np.array_equal(trimap, mask.astype(np.float32))  # input untouched


# ---- with the tiny models ------------------------------------------------------------------------------
def test_detect_segment_matte_shapes(manager, photo):
    pil = to_pil(photo)
    dino, dino_proc = manager.grounding_dino()
    dets = detect(dino, dino_proc, pil, "a cat", 0.0, 0.0)
    assert dets and all(0 <= d.score <= 1 for d in dets)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    sam, sam_proc = manager.sam()
    mask = segment(sam, sam_proc, pil, (20, 10, 100, 80))
    assert mask.shape == (96, 128) and mask.dtype == bool
    assert not mask[:, :18].any() and not mask[:8].any() and not mask[82:].any()  # clipped to the box + margin
    vm, vm_proc = manager.vitmatte()
    trimap = np.zeros((96, 128), np.float32)
    trimap[20:70, 30:100] = UNKNOWN
    trimap[35:55, 45:85] = 1.0
    alpha = learned_matte(vm, vm_proc, photo, trimap)
    assert alpha.shape == (96, 128) and alpha.dtype == np.float32
    assert np.all(alpha[trimap == 1.0] == 1.0) and np.all(alpha[trimap == 0.0] == 0.0)
    unknown = alpha[trimap == UNKNOWN]
    assert unknown.min() >= 0 and unknown.max() <= 1


def test_models_are_loaded_once(manager):
    assert manager.sam()[0] is manager.sam()[0]


def rule_trimap(mask: np.ndarray) -> np.ndarray:
    """The documented band rule written out (docs/offline-split.md), for a hard mask: unknown within r px of the
    edge either side, r = 2% of sqrt(area) clamped to 2-80 px, halved while the object is no deeper than r."""
    hard = mask.astype(np.uint8)
    r = min(80, max(2, round(0.02 * np.sqrt(hard.sum()))))
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # exact distances
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    while inside.max() <= r and r > 1:
        r //= 2
    trimap = np.full(mask.shape, UNKNOWN, np.float32)
    trimap[inside > r] = 1.0
    trimap[outside > r] = 0.0
    return trimap


def matte_anything_rule(mask: np.ndarray) -> np.ndarray:
    """MatteAnything's generate_trimap, as its matte_anything.py writes it: a 10x10 kernel, 5 iterations each."""
    kernel = np.ones((10, 10), np.uint8)
    hard = mask.astype(np.uint8) * 255
    trimap = np.zeros(mask.shape, np.float32)
    trimap[cv2.dilate(hard, kernel, iterations=5) == 255] = UNKNOWN
    trimap[cv2.erode(hard, kernel, iterations=5) == 255] = 1.0
    return trimap


@pytest.mark.parametrize("trimap_kind", ["scaled", "matteanything"])
def test_determine_foreground_end_to_end_from_box_to_trimap_to_alpha(manager, photo, monkeypatch, trimap_kind):
    """Each stage gets the previous one's result: the phrase's best box goes to SAM, SAM's mask becomes the trimap
    by the band rule (scaled) or MatteAnything's erode/dilate (the default), the transparent-thing boxes make their
    overlap with the object unknown, and ViTMatte's alpha keeps the trimap's known pixels. The tiny random models'
    boxes, mask and alpha mean nothing in themselves."""
    options = ForegroundOptions(box_threshold=0.0, text_threshold=0.0, trimap=trimap_kind)
    if trimap_kind == "scaled":  # words of the tiny model's vocabulary, so that its boxes reach the sure part
        options.transparent_query, options.transparent_threshold = "transparent object. glass.", 0.35
    seen: dict = {}

    def spy(name, real):
        def call(*args):
            out = real(*args)
            seen.setdefault(name, []).append((args, out))
            return out
        return call

    for name in ("detect", "segment", "learned_matte"):
        monkeypatch.setattr(foreground, name, spy(name, getattr(foreground, name)))
    stages = []
    alpha, info = determine_foreground(manager, photo, "a cat", options, lambda s, f: stages.append(s))
    assert stages[:4] == ["detect", "segment", "trimap", "matting"]
    (phrase_call, dets), (glass_call, glass) = seen["detect"]
    assert phrase_call[3] == "a cat" and glass_call[3:5] == (options.transparent_query, options.transparent_threshold)
    if trimap_kind == "matteanything":  # the defaults: MatteAnything's query and box threshold
        assert glass_call[3:5] == ("glass.lens.crystal.diamond.bubble.bulb.web.grid", 0.5)
    assert info["trimap"] == trimap_kind
    assert info["detections"] == len(dets) >= 1
    x0, y0, x1, y1 = dets[0].box  # the best box, floored and ceiled to pixels inside the 128x96 image
    box = (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))), min(128, int(np.ceil(x1))), min(96, int(np.ceil(y1))))
    [(segment_call, mask)] = seen["segment"]
    assert segment_call[3] == box and info["box"] == list(box)
    [(matte_call, _)] = seen["learned_matte"]
    trimap = matte_call[3]
    expected = rule_trimap(mask) if trimap_kind == "scaled" else matte_anything_rule(mask)
    overlap = np.zeros(mask.shape, bool)
    for gx0, gy0, gx1, gy1 in (d.box for d in glass):
        overlap[max(0, int(gy0)):int(np.ceil(gy1)), max(0, int(gx0)):int(np.ceil(gx1))] = True
    overlap &= mask
    if trimap_kind == "scaled":  # MatteAnything's ~25 px band leaves this 128x96 picture's object no sure part
        assert np.any(overlap & (expected == 1.0)), "no transparent box reaches the object's sure foreground"
    expected[overlap] = UNKNOWN
    assert np.array_equal(trimap, expected)
    assert info["transparent_boxes"] == len(glass)
    assert info["unknown_fraction"] == round(np.mean(expected == UNKNOWN), 4)
    assert alpha.shape == photo.shape[:2] and alpha.dtype == np.float32
    assert np.all(alpha[trimap == 1.0] == 1.0) and np.all(alpha[trimap == 0.0] == 0.0)
    assert np.all((alpha[trimap == UNKNOWN] >= 0) & (alpha[trimap == UNKNOWN] <= 1))


def test_no_detection_is_a_clear_error(manager, photo):
    with pytest.raises(InputError, match="found no 'a cat'"):
        determine_foreground(manager, photo, "a cat", ForegroundOptions(box_threshold=1.0))


# ---- stage 1 ---------------------------------------------------------------------------------------------
def params(**kw):
    return GenerateParams(**{"prompt": "a cat on a sofa", "width": 64, "height": 48, "steps": 3, "seed": 7, **kw})


def test_generation_is_seeded_and_reports_each_step(manager):
    pipe = manager.sdxl()
    seen = []
    a = generate_composite(pipe, params(), lambda s, f: seen.append((s, f)))
    b = generate_composite(pipe, params())
    c = generate_composite(pipe, params(seed=8))
    assert a.shape == (48, 64, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert [f for s, f in seen if s == "generate"] == [0.0, 1 / 3, 2 / 3, 1.0]


def test_generation_cancels_between_steps(manager):
    calls = []

    def progress(stage, fraction):
        calls.append(fraction)
        if fraction > 0.3:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        generate_composite(manager.sdxl(), params(steps=10), progress)
    assert len(calls) == 5  # 0.0, then steps 1..4 (0.4 raises)


def test_controlnet_depth_takes_the_map_as_it_is(manager):
    depth = np.linspace(0, 1, 64, dtype=np.float32)[None, :].repeat(48, 0)
    cond = control_condition(params(control="depth", control_image=depth))
    assert cond.shape == (48, 64, 3) and cond[0, 0, 0] == 0 and cond[0, -1, 0] == 255
    assert generate_composite(manager.sdxl("depth"), params(control="depth", control_image=depth)).shape == (48, 64, 3)


def test_controlnet_canny(manager):
    ctrl = np.zeros((48, 64, 3), np.float32)
    ctrl[10:40, 20:50] = 1.0
    edges = control_condition(params(control="canny", control_image=ctrl))
    assert edges.shape == (48, 64, 3) and edges.max() == 255 and edges[25, 35].max() == 0
    out = generate_composite(manager.sdxl("canny"), params(control="canny", control_image=ctrl))
    assert out.shape == (48, 64, 3)


def test_a_layer_as_control_goes_over_paper():
    """A sketch layer (black lines on transparency, RGB black everywhere) gives edges at the lines only;
    a depth layer's transparent parts count as far (black)."""
    sketch = np.zeros((48, 64, 4), np.float32)
    sketch[20:23, 8:56, 3] = 1.0  # a black line
    edges = control_condition(params(control="canny", control_image=sketch))[..., 0] > 0
    rows = np.nonzero(edges.any(axis=1))[0]
    assert edges.any() and rows.min() >= 17 and rows.max() <= 25
    depth = np.ones((48, 64, 4), np.float32)
    depth[:, :32, 3] = 0.0
    cond = control_condition(params(control="depth", control_image=depth))
    assert cond[0, 0, 0] == 0 and cond[0, -1, 0] == 255


@pytest.mark.parametrize("kw,words", [({"width": 60}, "multiple of 8"), ({"prompt": " "}, "empty"),
                                      ({"steps": 0}, "steps"), ({"control": "pose", "control_image": np.zeros((8, 8))},
                                                                "control must be"),
                                      ({"control": "canny"}, "needs a control image")])
def test_generation_parameter_errors(kw, words):
    with pytest.raises(InputError, match=words):
        params(**kw).check()
