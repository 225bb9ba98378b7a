"""The split's own steps, each against values worked out by hand: the input checks, the object's crop and its
context margin, a box's region, the alpha from a hint, the options and the stage timings."""

import numpy as np
import pytest
from layeringdiff.errors import InputError
from layeringdiff.imaging.compose import LEAST_CHANGE, PROJECTION, compose_layers
from layeringdiff.imaging.matting import estimate_alpha
from layeringdiff.imaging.trimap import UNKNOWN, trimap_from_mask
from layeringdiff.stages import split as split_module
from layeringdiff.stages.split import (
    CROP_MARGIN_PX,
    LayerMethod,
    SplitOptions,
    StageTimer,
    box_region,
    check_image,
    context_margin,
    object_crop,
    split_alpha,
    split_layer,
)


def refused(call, *args) -> InputError:
    with pytest.raises(InputError) as caught:
        call(*args)
    return caught.value


# ---- check_image ------------------------------------------------------------------------------------------
def test_an_image_of_four_pixels_each_way_is_the_smallest_taken():
    assert check_image(np.zeros((4, 4, 3), np.float32)).shape == (4, 4, 3)
    assert str(refused(check_image, np.zeros((3, 8, 4), np.float32))) == (
        "image of 8x3 pixels is too small to split (it needs 4 pixels or more each way)")
    assert str(refused(check_image, np.zeros((8, 3, 4), np.float32))) == (
        "image of 3x8 pixels is too small to split (it needs 4 pixels or more each way)")


def test_image_refusals_in_full():
    bad = np.zeros((8, 8, 4), np.float32)
    bad[2, 3, 1] = np.nan
    assert str(refused(check_image, bad)) == "image contains NaN or infinite values"
    assert str(refused(check_image, np.zeros((8, 8, 2), np.float32))) == \
        "image must be HxWx3 or HxWx4, got shape (8, 8, 2)"


def test_an_image_within_0_1_is_used_as_it_is_without_a_copy():
    """On a 4096^2 layer a copy is 268 MB: a float32 image already in [0, 1], touching both ends, is not copied."""
    image = np.zeros((6, 6, 4), np.float32)
    image[0, 0] = 1.0
    image[1, 1] = 0.5
    assert check_image(image) is image


def test_values_outside_0_1_are_clipped_on_either_side_and_other_dtypes_become_float32():
    low = np.full((6, 6, 3), 0.5, np.float32)
    low[0, 0, 0] = -0.25  # only below
    assert check_image(low)[0, 0, 0] == 0.0 and check_image(low)[1, 1, 0] == 0.5
    high = np.full((6, 6, 3), 0.5, np.float32)
    high[0, 0, 0] = 1.5  # only above, less than 2
    out = check_image(high)
    assert out[0, 0, 0] == 1.0 and out[1, 1, 0] == 0.5 and high[0, 0, 0] == 1.5  # the caller's array is untouched
    wide = check_image(np.full((6, 6, 3), 0.25, np.float64))
    assert wide.dtype == np.float32 and float(wide[0, 0, 0]) == 0.25


# ---- object_crop, context_margin, box_region --------------------------------------------------------------
def alpha_with(rows: slice, cols: slice, shape=(300, 400)) -> np.ndarray:
    alpha = np.zeros(shape, np.float32)
    alpha[rows, cols] = 0.5
    return alpha


def test_the_crop_is_the_object_box_grown_by_the_margin_and_clipped():
    assert object_crop(alpha_with(slice(50, 60), slice(100, 120)), 10) == (slice(40, 70), slice(90, 130))
    assert object_crop(alpha_with(slice(0, 5), slice(0, 5)), 3) == (slice(0, 8), slice(0, 8))  # at the top left
    assert object_crop(alpha_with(slice(295, 300), slice(390, 400)), 20) == (slice(275, 300), slice(370, 400))
    assert object_crop(alpha_with(slice(100, 101), slice(7, 8)), 2) == (slice(98, 103), slice(5, 10))  # one pixel
    assert object_crop(np.zeros((30, 40), np.float32)) == (slice(0, 30), slice(0, 40))  # nothing: everything


def test_the_context_margin_is_the_larger_of_the_fixed_margin_and_a_share_of_the_object_box():
    wide = alpha_with(slice(30, 130), slice(10, 250))  # 100 rows, 240 columns
    tall = alpha_with(slice(10, 250), slice(30, 130), (300, 300))  # 240 rows, 100 columns
    for alpha in (wide, tall):
        assert context_margin(alpha, 1.0) == 240
        assert context_margin(alpha, 0.5) == 120
        assert context_margin(alpha, 0.2) == CROP_MARGIN_PX == 64  # 48 px is less than the fixed margin
        assert context_margin(alpha, 0.0) == 64
    assert context_margin(np.zeros((30, 40), np.float32), 0.5) == 64


def test_a_box_region_in_any_corner_order_clipped_to_the_image():
    region = box_region((10, -5, -3, 4), 6, 12)  # x from -3 to 10, y from -5 to 4
    expected = np.zeros((6, 12), bool)
    expected[0:4, 0:10] = True
    np.testing.assert_array_equal(region, expected)


# ---- split_alpha ------------------------------------------------------------------------------------------
def scene(h=48, w=64):
    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 0.3, (h, w, 3)).astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    mask[12:36, 16:48] = 1.0
    rgb[mask > 0] = [0.9, 0.7, 0.2]
    return rgb, mask


def test_the_alpha_is_closed_form_matting_of_the_trimap_with_the_mask_as_prior():
    rgb, mask = scene()
    info = {}
    alpha = split_alpha(rgb, mask, None, SplitOptions(band=3), lambda *a: None, info)
    trimap = trimap_from_mask(mask, 3)
    np.testing.assert_array_equal(alpha, estimate_alpha(rgb, trimap, prior=mask))
    assert info == {"unknown_fraction": round(float(np.mean(trimap == UNKNOWN)), 4), "matting": "closed-form"}
    # the 24 x 32 object: (24 + 6) x (32 + 6) = 1140 pixels within 3 px of its edge or inside it, less 5 at each
    # corner farther than 3 px (5x5-mask distances: (1, 3) and (3, 1) 3.2, (2, 3) and (3, 2) 3.6, (3, 3) 4.2),
    # less the (24 - 6) x (32 - 6) = 468 sure foreground: 652 unknown of 48 x 64 = 3072
    assert info["unknown_fraction"] == round(652 / 3072, 4) == 0.2122


def test_the_band_option_sets_the_trimap():
    rgb, mask = scene()
    info = {}
    split_alpha(rgb, mask, None, SplitOptions(band=5), lambda *a: None, info)
    assert info["unknown_fraction"] == round(float(np.mean(trimap_from_mask(mask, 5) == UNKNOWN)), 4)


def test_nothing_outside_a_box_is_foreground():
    rgb, _ = scene()
    alpha = split_alpha(rgb, None, (14, 10, 50, 40), SplitOptions(), lambda *a: None, {})
    outside = ~box_region((14, 10, 50, 40), 48, 64)
    assert np.isfinite(alpha).all() and (alpha[outside] == 0).all() and alpha[24, 32] > 0.9


def test_hint_refusals_in_full():
    rgb, mask = scene()
    steps = (SplitOptions(), lambda *a: None, {})
    assert str(refused(split_alpha, rgb, None, None, *steps)) == "give exactly one foreground hint: a mask or a box"
    assert str(refused(split_alpha, rgb, mask[:40], None, *steps)) == \
        "mask is 64x40, image is 64x48: sizes must match"
    assert str(refused(split_alpha, rgb, mask[..., None], None, *steps)) == \
        "mask must be one channel, got shape (48, 64, 1)"  # the right size, one channel too many
    # a selection at 127/255 marks no pixel as the object's: its layer was empty, without a word
    faint = refused(split_alpha, rgb, mask * np.float32(127 / 255), None, *steps)
    assert str(faint) == ("the selection is faint: its strongest value is 127/255, under half, so it marks no pixel "
                          "as the object's")
    assert faint.detail == ("select the object at full strength, or take the selection as the exact alpha: the "
                            "docker's 'Use the selection as the exact alpha', the CLI's --alpha-mode mask")
    # as the exact alpha it is what the artist asked for: a see-through layer
    as_alpha = split_alpha(rgb, mask * np.float32(127 / 255), None, SplitOptions(alpha_mode="mask"), *steps[1:])
    assert float(as_alpha.max()) == pytest.approx(127 / 255)
    assert split_alpha(rgb, mask * np.float32(128 / 255), None, *steps).max() > 0.5  # half is enough


# ---- options, method, timings -----------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{"quantize": 1}, {"quantize": 65535}, {"band": 1}, {"band": 500}])
def test_options_at_their_limits_are_taken(options):
    assert SplitOptions.from_dict(options) == SplitOptions(**options)


@pytest.mark.parametrize("options,text", [
    ({"quantize": 0}, "quantize must be an integer in 1..65535, got 0"),
    ({"quantize": 65536}, "quantize must be an integer in 1..65535, got 65536"),
    ({"band": 0}, "band must be an integer in 1..500 pixels, got 0"),
    ({"band": 501}, "band must be an integer in 1..500 pixels, got 501"),
    ({"zeta": 1, "alpha": 2, "band": 3}, "unknown split option(s): alpha, zeta"),
])
def test_options_past_their_limits_are_refused_in_full(options, text):
    assert str(refused(SplitOptions.from_dict, options)) == text


def test_a_layer_method_names_the_compositions_it_takes():
    with pytest.raises(ValueError) as caught:
        LayerMethod("x", lambda *a: a, composition="nonsense")
    assert str(caught.value) == "composition must be one of ('least-change', 'projection'), got 'nonsense'"


def test_stage_timings_add_up_each_stage_from_its_first_report_to_the_next_stage(monkeypatch):
    clock = iter([0.0, 10.0, 11.00004, 11.5, 13.0, 20.0])
    monkeypatch.setattr(split_module.time, "perf_counter", lambda: next(clock))
    seen = []
    timer = StageTimer(lambda stage, fraction: seen.append((stage, fraction)))  # 0.0
    timer("a", 0.1)  # 10.0: a starts
    timer("a", 0.2)  # no new stage: no clock read
    timer("b", 0.3)  # 11.00004: a took 1.00004
    timer("a", 0.4)  # 11.5: b took 0.49996
    timer("c", 0.5)  # 13.0: a took 1.5 more
    assert timer.timings == {"a": 2.5, "b": 0.5}
    assert seen == [("a", 0.1), ("a", 0.2), ("b", 0.3), ("a", 0.4), ("c", 0.5)]


def test_a_stage_time_keeps_four_decimals(monkeypatch):
    clock = iter([0.0, 1.0, 2.23456])
    monkeypatch.setattr(split_module.time, "perf_counter", lambda: next(clock))
    timer = StageTimer(lambda *a: None)
    timer("a", 0.0)
    timer("b", 0.5)
    assert timer.timings == {"a": 1.2346}


# ---- split_layer ------------------------------------------------------------------------------------------
class Recording:
    """A layer method that records what it is given and guesses a lighter image (F) and mid grey (B): guesses
    that the two compositions correct differently."""

    def __init__(self, local: bool, context: float = 0.0, composition: str = PROJECTION) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.method = LayerMethod("recording", self.layers, local=local, composition=composition, context=context)

    def layers(self, rgb, alpha, progress):
        self.shapes.append(rgb.shape)
        progress("guessing", 0.5)
        return np.clip(rgb * 0.5 + 0.4, 0, 1), np.full_like(rgb, 0.5)


def rgba_scene(h=48, w=64):
    rgb, mask = scene(h, w)
    return np.concatenate([rgb, np.ones((h, w, 1), np.float32)], axis=-1), mask


def test_a_method_that_is_not_local_sees_the_whole_image():
    image, mask = rgba_scene(200, 240)
    mask[:] = 0.0
    mask[80:100, 100:140] = 1.0  # small: its crop would be 148 x 168
    recording = Recording(local=False)
    result = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=recording.method)
    assert recording.shapes == [(200, 240, 3)] and result.info["crop"] == [0, 0, 240, 200]


def test_a_local_method_sees_the_object_and_its_context_margin():
    image, mask = rgba_scene(200, 240)
    mask[:] = 0.0
    mask[80:100, 100:140] = 1.0  # 20 x 40
    recording = Recording(local=True, context=2.5)  # 2.5 x 40 = 100 px of context, more than the fixed 64
    result = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=recording.method)
    assert result.info["crop"] == [0, 0, 240, 200] and recording.shapes == [(200, 240, 3)]
    recording = Recording(local=True, context=1.0)  # 40 px: the fixed 64 px margin
    result = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=recording.method)
    assert result.info["crop"] == [36, 16, 204, 164] and recording.shapes == [(148, 168, 3)]


def test_the_layers_are_the_composition_step_of_the_method_s_guesses_named_in_the_info():
    import cv2

    image, hard = rgba_scene()
    mask = cv2.GaussianBlur(hard, (9, 9), 3)  # soft edges: mixed pixels, where the compositions differ
    for composition in (PROJECTION, LEAST_CHANGE):
        recording = Recording(local=False, composition=composition)
        result = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=recording.method)
        fg, bg, fallback = compose_layers(image[..., :3], mask, np.clip(image[..., :3] * 0.5 + 0.4, 0, 1),
                                          np.full((48, 64, 3), 0.5, np.float32), composition)
        np.testing.assert_array_equal(result.foreground[..., :3], fg)
        np.testing.assert_array_equal(result.background[..., :3], bg)
        assert result.info["composition"] == composition
        if composition == LEAST_CHANGE:
            assert result.info["composition_fallback"] == round(fallback, 4) and 0 < fallback < 1
        else:
            assert "composition_fallback" not in result.info


def test_the_split_s_info_names_its_hint_method_and_measures():
    image, mask = rgba_scene()
    mask[12, 16] = 0.123456  # a mean alpha with more than four decimals
    recording = Recording(local=False)
    result = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=recording.method)
    info = result.info
    assert {k: info[k] for k in ("method", "alpha_mode", "hint")} == {"method": "recording", "alpha_mode": "mask",
                                                                      "hint": "mask"}
    assert info["foreground_fraction"] == round(float(np.mean(mask)), 4) == 0.2497  # (767 + 0.123456) / 3072
    assert set(info["timings"]) == {"hint", "guessing", "layers"}
    assert result.alpha.dtype == np.float32
    boxed = split_layer(image, box=(14, 10, 50, 40), options=SplitOptions(alpha_mode="mask"),
                        method=Recording(local=False).method)
    assert boxed.info["hint"] == "box"


def test_the_caller_s_layer_is_left_alone_unless_it_offers_its_buffer():
    image, mask = rgba_scene()
    before = image.copy()
    result = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=Recording(local=False).method)
    np.testing.assert_array_equal(image, before)
    assert result.background is not image
    offered = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=Recording(local=False).method,
                          overwrite_input=True)
    assert offered.background is image  # 268 MB less on a 4096^2 canvas
    np.testing.assert_array_equal(offered.background, result.background)
    rgb = before[..., :3].copy()  # only an RGBA buffer can become the background
    assert split_layer(rgb, mask, options=SplitOptions(alpha_mode="mask"), method=Recording(local=False).method,
                       overwrite_input=True).background is not rgb


def test_where_the_layer_is_transparent_nothing_is_foreground():
    image, mask = rgba_scene()
    image[20:24, 20:24, 3] = 0.0  # a hole in the layer, inside the selection
    result = split_layer(image, mask, options=SplitOptions(alpha_mode="mask"), method=Recording(local=False).method)
    assert (result.alpha[20:24, 20:24] == 0.0).all() and result.alpha[30, 30] == 1.0
    image[..., 3] = 0.0
    assert str(refused(split_layer, image, mask)) == "the layer is fully transparent: nothing to split"
