"""Properties of the offline split on real photos (shipped in scikit-image) with synthetic soft mattes."""

import cv2
import numpy as np
import pytest
from layeringdiff.errors import InputError, JobCancelled
from layeringdiff.examples import photo, soft_alpha, synthetic_composite
from layeringdiff.imaging.compose import ALPHA_EPS, compose
from layeringdiff.stages.classical import HIDDEN_ALPHA
from layeringdiff.stages.split import SplitOptions, split_layer

PAIRS = [("chelsea", "astronaut"), ("coffee", "rocket"), ("astronaut", "coffee")]


def u8(x):
    return np.round(np.clip(x, 0, 1) * 255) / 255


@pytest.mark.parametrize("fg_photo,bg_photo", PAIRS)
@pytest.mark.parametrize("mode", ["matte", "mask"])
def test_layers_recomposite_within_one_level(fg_photo, bg_photo, mode):
    comp, alpha_gt, _, _ = synthetic_composite(192, 224, seed=2, fg_photo=fg_photo, bg_photo=bg_photo)
    comp = u8(comp)  # an 8-bit painting, as a user has it
    hint = alpha_gt if mode == "mask" else (alpha_gt > 0.5).astype(np.float32)
    r = split_layer(comp, mask=hint, options=SplitOptions(alpha_mode=mode, quantize=255))
    assert r.foreground.shape == (192, 224, 4) and r.background.shape == (192, 224, 4)
    a = r.foreground[..., 3]
    assert np.array_equal(a, r.alpha)
    visible = a < 1 - ALPHA_EPS
    assert visible.any() and (~visible).any()
    # in float, and again after storing every layer as 8-bit (what the .ora and Krita keep)
    assert np.abs(compose(a, r.foreground[..., :3], r.background[..., :3]) - comp)[visible].max() <= 1 / 255
    stored = compose(u8(a), u8(r.foreground[..., :3]), u8(r.background[..., :3]))
    assert np.abs(stored - comp)[visible].max() <= 1 / 255 + 1e-6
    # copy-through
    assert np.array_equal(r.foreground[..., :3][a >= 1.0], comp[a >= 1.0])
    assert np.array_equal(r.background[..., :3][a <= 0.0], comp[a <= 0.0])
    assert np.all(r.background[..., 3] == 1.0)
    assert r.info["recomposition_error"] <= 1 / 255


@pytest.mark.parametrize("bg_photo", ["astronaut", "coffee", "rocket"])
def test_foreground_colour_does_not_bleed_into_background(bg_photo):
    h, w = 200, 200
    alpha_gt = soft_alpha(h, w, seed=5)
    green = np.zeros((h, w, 3), np.float32) + np.array([0.1, 0.85, 0.15], np.float32)
    bg = cv2.resize(photo(bg_photo), (w, h), interpolation=cv2.INTER_AREA)
    comp = compose(alpha_gt, green, bg)
    r = split_layer(comp, mask=(alpha_gt > 0.5).astype(np.float32))

    def greenness(x):
        return x[..., 1] - (x[..., 0] + x[..., 2]) / 2

    fg_green = float(greenness(green).mean())
    out_bg = r.background[..., :3]
    hidden = (r.alpha >= HIDDEN_ALPHA) & (alpha_gt >= HIDDEN_ALPHA)
    band = (r.alpha > 0.05) & (r.alpha < HIDDEN_ALPHA)
    assert hidden.sum() > 1000 and band.sum() > 100
    true_level = float(greenness(bg)[alpha_gt < 0.05].mean())
    assert abs(float(greenness(out_bg)[hidden].mean()) - true_level) < 0.1 * fg_green
    assert abs(float(greenness(out_bg)[band].mean()) - true_level) < 0.15 * fg_green
    # and the foreground layer keeps the green where it is visible
    assert float(greenness(r.foreground[..., :3])[r.alpha > 0.5].mean()) > 0.8 * fg_green


@pytest.mark.parametrize("fg_photo,bg_photo", PAIRS)
def test_partly_visible_background_is_unmixed(fg_photo, bg_photo):
    comp, alpha_gt, _, bg = synthetic_composite(256, 256, seed=1, fg_photo=fg_photo, bg_photo=bg_photo)
    r = split_layer(comp, mask=alpha_gt.copy(), options=SplitOptions(alpha_mode="mask"))
    seen = (alpha_gt > 0.02) & (alpha_gt < 0.5)
    assert np.abs(r.background[..., :3] - bg)[seen].mean() < 0.06
    # a naive copy of the composite would be far worse
    assert np.abs(comp - bg)[seen].mean() > 1.5 * np.abs(r.background[..., :3] - bg)[seen].mean()


@pytest.mark.parametrize("fg_photo,bg_photo", PAIRS)
def test_matting_improves_a_hard_selection_of_a_soft_edge(fg_photo, bg_photo):
    fg = cv2.resize(photo(fg_photo), (256, 256), interpolation=cv2.INTER_AREA)
    bg = cv2.resize(photo(bg_photo), (256, 256), interpolation=cv2.INTER_AREA)
    disk = np.zeros((256, 256), np.float32)
    cv2.circle(disk, (128, 128), 70, 1.0, -1)
    alpha_gt = cv2.GaussianBlur(disk, (0, 0), 3)
    comp = compose(alpha_gt, fg, bg)
    hint = (alpha_gt > 0.5).astype(np.float32)
    r = split_layer(comp, mask=hint)
    assert np.abs(r.alpha - alpha_gt).sum() < 0.75 * np.abs(hint - alpha_gt).sum()


def test_semi_transparent_layer_stacks_back_to_itself():
    comp, alpha_gt, _, _ = synthetic_composite(128, 128, seed=3)
    layer_alpha = np.clip(np.linspace(0.2, 1.0, 128)[None, :].repeat(128, 0), 0, 1).astype(np.float32)
    rgba = np.dstack([comp, layer_alpha])
    r = split_layer(rgba, mask=(alpha_gt > 0.5).astype(np.float32))
    below = np.full((128, 128, 3), 0.3, np.float32)

    def over(rgb, a, under):
        return rgb * a[..., None] + under * (1 - a[..., None])

    want = over(comp, layer_alpha, below)
    got = over(r.foreground[..., :3], r.foreground[..., 3],
               over(r.background[..., :3], r.background[..., 3], below))
    assert np.abs(got - want).max() < 1e-3


def test_box_hint_on_a_photo():
    from layeringdiff.examples import example

    image, box = example("coffee")
    r = split_layer(image, box=box)
    x0, y0, x1, y1 = box
    assert r.alpha[:, :x0].max() == 0 and r.alpha[y1:, :].max() == 0  # nothing outside the box
    assert 0.2 < r.info["foreground_fraction"] < 0.8
    assert r.info["recomposition_error"] <= 1 / 255


def test_progress_stages_in_order_and_cancel_propagates():
    comp, alpha_gt, _, _ = synthetic_composite(96, 96)
    seen = []
    split_layer(comp, mask=(alpha_gt > 0.5).astype(np.float32), progress=lambda s, f: seen.append((s, f)))
    stages = [s for s, _ in seen]
    assert stages == ["hint", "trimap", "matting", "foreground", "background", "fill", "layers", "done"]
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    def cancel_at_matting(stage, fraction):
        if stage == "matting":
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        split_layer(comp, mask=(alpha_gt > 0.5).astype(np.float32), progress=cancel_at_matting)


@pytest.mark.parametrize("case,words", [
    ("nan", "NaN"), ("size", "sizes must match"), ("both", "exactly one"), ("none", "exactly one"),
    ("transparent", "fully transparent"), ("grey", "HxWx3"), ("tiny", "too small"), ("option", "alpha_mode"),
])
def test_input_errors(case, words):
    image = np.full((32, 32, 3), 0.5, np.float32)
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1
    kwargs = {"mask": mask}
    if case == "nan":
        image[3, 3, 1] = np.nan
    elif case == "size":
        kwargs["mask"] = mask[:20]
    elif case == "both":
        kwargs["box"] = (1, 1, 20, 20)
    elif case == "none":
        kwargs = {}
    elif case == "transparent":
        image = np.zeros((32, 32, 4), np.float32)
    elif case == "grey":
        image = image[..., 0]
    elif case == "tiny":
        image, kwargs["mask"] = image[:2, :2], mask[:2, :2]
    elif case == "option":
        with pytest.raises(InputError, match=words):
            SplitOptions.from_dict({"alpha_mode": "magic"})
        return
    with pytest.raises(InputError, match=words):
        split_layer(image, **kwargs)


def test_small_object_on_a_big_canvas_is_worked_on_in_its_crop():
    comp, alpha_gt, _, _ = synthetic_composite(96, 96, seed=4)
    canvas = cv2.resize(photo("rocket"), (640, 480), interpolation=cv2.INTER_AREA)
    mask = np.zeros((480, 640), np.float32)
    y, x = 300, 420
    a = alpha_gt[..., None]
    canvas[y:y + 96, x:x + 96] = a * comp + (1 - a) * canvas[y:y + 96, x:x + 96]
    mask[y:y + 96, x:x + 96] = alpha_gt > 0.5
    r = split_layer(canvas, mask=mask, options=SplitOptions(quantize=255))
    x0, y0, x1, y1 = r.info["crop"]
    assert x0 >= 420 - 64 - 40 and y0 >= 300 - 64 - 40 and (x1 - x0) * (y1 - y0) < 0.2 * 640 * 480
    outside = np.ones((480, 640), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(r.background[..., :3][outside], canvas[outside])
    assert np.all(r.alpha[outside] == 0)
    visible = r.alpha < 1 - ALPHA_EPS
    got = compose(r.alpha, r.foreground[..., :3], r.background[..., :3])
    assert np.abs(got - canvas)[visible].max() <= 1 / 255


@pytest.mark.parametrize("options,words", [
    ({"quantize": True}, "quantize must be an integer in 1..65535, got True"),
    ({"band": False}, "band must be an integer in 1..500 pixels, got False"),
    ({"band": 501}, "band must be an integer in 1..500 pixels, got 501"),
    ({"quantize": 0}, "quantize must be an integer in 1..65535, got 0"),
])
def test_split_options_take_integers_only_in_their_range(options, words):
    """true/false are not numbers on the wire (msgpack keeps them apart), so they are refused, not read as 1/0."""
    with pytest.raises(InputError) as caught:
        SplitOptions.from_dict(options)
    assert str(caught.value) == words
    assert SplitOptions.from_dict({"quantize": 65535, "band": 500}).band == 500
