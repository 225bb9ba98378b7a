import cv2
import numpy as np
import pytest
from layeringdiff.errors import InputError
from layeringdiff.imaging.trimap import (
    UNKNOWN,
    band_radius,
    check_mask,
    mask_from_box,
    selection_ramp,
    trimap_from_mask,
    unknown_box,
)


def disk(h=128, w=128, r=40):
    yy, xx = np.mgrid[:h, :w]
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= r * r).astype(np.float32)


def test_trimap_has_band_around_edge_only():
    mask = disk()
    tri = trimap_from_mask(mask, band=5)
    assert set(np.unique(tri)) == {0.0, UNKNOWN, 1.0}
    assert tri[64, 64] == 1.0 and tri[0, 0] == 0.0
    assert tri[64, 64 + 40] == UNKNOWN  # on the edge
    # the band is about 2 * radius wide along a row through the centre
    row = tri[64]
    assert 8 <= np.count_nonzero(row == UNKNOWN) / 2 <= 12


def test_band_scales_with_object_size():
    # 2% of the object's size (sqrt of its area), at least 2 px: worked out by hand, not from the module's constants
    assert band_radius(disk(512, 512, 200)) == 7  # area about 125,660 px: 354.5 px, 7.09 px
    assert band_radius(disk(256, 256, 100)) == 4  # about 31,420 px: 177.2 px, 3.54 px
    assert band_radius(disk(128, 128, 20)) == 2  # about 1,257 px: 35.4 px, 0.71 px, raised to 2
    assert band_radius(disk(64, 64, 3)) == 2


def test_soft_selection_edges_become_unknown():
    mask = disk()
    mask[10:20, 10:20] = 0.3  # feathered patch away from the object
    tri = trimap_from_mask(mask, band=3)
    assert np.all(tri[10:20, 10:20] == UNKNOWN)


def test_thin_object_keeps_some_foreground():
    mask = np.zeros((64, 64), np.float32)
    mask[30:33, 5:60] = 1.0  # 3 px line: a big erosion would remove it
    tri = trimap_from_mask(mask, band=8)
    assert np.any(tri == 1.0)


@pytest.mark.parametrize("mask,words", [
    (np.zeros((8, 8), np.float32), "empty"),
    (np.ones((8, 8), np.float32), "whole image"),
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((8, 8, 3), np.float32), "one channel"),
])
def test_bad_masks_give_clear_errors(mask, words):
    with pytest.raises(InputError, match=words):
        check_mask(mask)


def test_box_grabcut_finds_object_inside_box():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 0.3, (120, 160, 3)).astype(np.float32)  # dark noisy background
    yy, xx = np.mgrid[:120, :160]
    obj = ((yy - 60) ** 2 / 30**2 + (xx - 80) ** 2 / 40**2) <= 1
    image[obj] = [0.9, 0.8, 0.1]
    mask = mask_from_box(image, (30, 20, 130, 100))
    iou = np.logical_and(mask > 0.5, obj).sum() / np.logical_or(mask > 0.5, obj).sum()
    assert iou > 0.9


def test_the_same_box_gives_the_same_mask_every_time():
    """GrabCut's colour models start from k-means on OpenCV's random generator: without a seed of its own the second
    split of the same box found another edge than the first (a furry object over a photo)."""
    from tests.unit.test_strands import furry_scene

    image, _, mask = furry_scene(1)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()) - 8, int(ys.min()) - 8, int(xs.max()) + 8, int(ys.max()) + 8)
    first = mask_from_box(image, box)
    cv2.randu(np.zeros((8, 8), np.float32), 0.0, 1.0)  # someone else draws from the generator in between
    for _ in range(2):
        np.testing.assert_array_equal(mask_from_box(image, box), first)


@pytest.mark.parametrize("box", [(5, 5, 6, 6), (200, 200, 300, 300), (0, 0, 160, 120)])
def test_bad_boxes(box):
    with pytest.raises(InputError):
        mask_from_box(np.zeros((120, 160, 3), np.float32), box)


def scene(h, w, cy, cx, ry, rx):
    """A yellow ellipse on a dark noisy background, and its true mask."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 0.3, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    obj = ((yy - cy) ** 2 / ry**2 + (xx - cx) ** 2 / rx**2) <= 1
    image[obj] = [0.9, 0.8, 0.1]
    return image, obj


def iou(mask, obj):
    return np.logical_and(mask > 0.5, obj).sum() / np.logical_or(mask > 0.5, obj).sum()


@pytest.mark.parametrize("box", [(130, 100, 30, 20), (-40, -30, 130, 100), (30, 20, 400, 300)])
def test_a_box_is_read_in_any_corner_order_and_clipped_to_the_image(box):
    image, obj = scene(120, 160, 60, 80, 30, 40)
    mask = mask_from_box(image, box)
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0} and iou(mask, obj) > 0.9


def test_a_box_on_a_large_image_is_found_at_its_place_after_the_reduced_grabcut():
    """GrabCut runs at most 512 px wide: the box is scaled down and the mask scaled back to full size."""
    image, obj = scene(768, 1536, 500, 1100, 120, 200)
    mask = mask_from_box(image, (850, 340, 1350, 660))
    assert mask.shape == (768, 1536) and iou(mask, obj) > 0.9
    assert not mask[:, :800].any()  # nothing outside the box's columns


def test_boxes_at_the_limits_of_the_rule():
    """At least 4 px each way; the whole image is refused only when the box covers both of its sides."""
    image, obj = scene(120, 160, 60, 80, 30, 40)
    wide = mask_from_box(image, (0, 20, 160, 100))  # the full width, not the full height: allowed
    assert iou(wide, obj) > 0.8
    tiny = np.zeros((120, 160, 3), np.float32)
    tiny[60:64, 80:84] = [0.9, 0.8, 0.1]
    with pytest.raises(InputError) as caught:
        mask_from_box(tiny, (80, 60, 83, 70))
    assert str(caught.value) == "box (80, 60, 83, 70) is only 3x10 px inside the 160x120 image"
    assert caught.value.detail == "draw it around the whole object, at least 4 px each way"
    for box in ((80, 60, 80, 70), (200, 10, 240, 50), (10, -40, 50, -5)):  # no width; outside: nothing to draw
        with pytest.raises(InputError) as caught:
            mask_from_box(tiny, box)
        assert str(caught.value) == f"box {box} is empty or outside the 160x120 image"
    with pytest.raises(InputError) as caught:
        mask_from_box(image, (0, 0, 160, 120))
    assert str(caught.value) == "the box covers the whole image: leave a margin of background around the object"


def test_a_box_around_nothing_says_so():
    image = np.full((120, 160, 3), 0.5, np.float32)  # a flat image: GrabCut finds no object
    with pytest.raises(InputError) as caught:
        mask_from_box(image, (30, 20, 130, 100))
    assert str(caught.value).startswith(("no object found inside box (30, 20, 130, 100)",
                                         "cannot find an object in box (30, 20, 130, 100)"))
    assert caught.value.detail


def trimap_by_the_rule(mask, r, feathered=False):
    """The documented rule on the whole canvas, without trimap_from_mask's crop to the mask's box: sure foreground
    deeper than r inside the 0.5 contour, sure background farther than r outside it, unknown between; r halves
    until some foreground is deeper than it (thin objects); soft pixels unknown unless the selection is feathered."""
    import cv2

    hard = (mask >= 0.5).astype(np.uint8)
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    while inside.max() <= r and r > 1:
        r //= 2
    tri = np.full(mask.shape, 0.5, np.float32)
    tri[inside > r if inside.max() > r else hard > 0] = 1.0
    tri[outside > r] = 0.0
    if not feathered:
        tri[(mask > 0.02) & (mask < 0.98)] = 0.5
    return tri


def off_centre_masks():
    """Objects of uneven shape anywhere on the canvas: near each side, in a corner, with soft pixels at the box's
    extreme rows and columns (and at exactly the soft limits 0.02 and 0.98, and 0.5), one row or column thin."""
    yy, xx = np.mgrid[:90, :130]
    blob = (((yy - 30) / 18.0) ** 2 + ((xx - 85) / 30.0) ** 2 <= 1).astype(np.float32)
    corner = np.zeros((90, 130), np.float32)
    corner[:25, 100:] = 1.0
    soft_tips = blob.copy()
    soft_tips[11, 85] = soft_tips[49, 85] = soft_tips[30, 54] = soft_tips[30, 116] = 0.3
    soft_tips[14, 58], soft_tips[30, 85] = 0.02, 0.98  # at the soft limits: neither is soft
    soft_tips[30, 56:59] = 0.5  # on the edge: exactly half is inside
    left = np.zeros((90, 130), np.float32)
    left[30:60, :20] = 1.0  # against the left side
    bar = np.zeros((90, 130), np.float32)
    bar[60:64, 3:127] = 1.0
    column = np.zeros((90, 130), np.float32)
    column[2:88, 40] = 1.0
    return {"blob": blob, "corner": corner, "soft tips": soft_tips, "bar": bar, "column": column, "left": left}


@pytest.mark.parametrize("name", ["blob", "corner", "soft tips", "bar", "column", "left"])
@pytest.mark.parametrize("radius", [1, 2, 3, 6, 11])
def test_the_trimap_is_the_rule_applied_to_the_whole_canvas(name, radius):
    """Working on the mask's box only is for speed: every pixel, on each side of the box, is what the rule gives."""
    mask = off_centre_masks()[name]
    tri = trimap_from_mask(mask, band=radius)
    assert tri.dtype == np.float32 and tri.shape == mask.shape
    np.testing.assert_array_equal(tri, trimap_by_the_rule(mask, radius))


def test_a_radius_of_one_gives_a_band_one_pixel_each_side():
    mask = np.zeros((40, 40), np.float32)
    mask[10:30, 10:30] = 1.0
    row = trimap_from_mask(mask, band=1)[20]
    assert row[8] == 0.0 and row[9] == row[10] == UNKNOWN and row[11] == 1.0
    assert row[28] == 1.0 and row[29] == row[30] == UNKNOWN and row[31] == 0.0


def test_a_box_on_a_large_image_leaves_out_objects_just_past_its_right_and_bottom_sides():
    """The box is scaled down with the image: its size, not its far corner, nor grown by the scale."""
    image, obj = scene(768, 1536, 300, 700, 150, 250)
    yy, xx = np.mgrid[:768, :1536]
    right = ((yy - 300) ** 2 + (xx - 1150) ** 2) <= 80**2  # beside the box, within its rows
    below = ((yy - 600) ** 2 + (xx - 700) ** 2) <= 80**2  # under the box, within its columns
    image[right | below] = [0.9, 0.8, 0.1]
    mask = mask_from_box(image, (420, 130, 980, 470))
    assert iou(mask, obj) > 0.9 and not (mask > 0.5)[right | below].any()


def test_boxes_of_exactly_four_pixels_each_way_are_taken_and_three_are_not():
    image = np.random.default_rng(1).uniform(0.0, 0.3, (120, 160, 3)).astype(np.float32)
    image[60:62, 80:82] = [0.9, 0.8, 0.1]
    assert mask_from_box(image, (79, 59, 83, 63)).shape == (120, 160)  # 4 x 4: the smallest box there is
    for box in ((79, 59, 82, 63), (79, 61, 83, 64)):  # 3 wide; 3 high (not at the top: y0 + y1 is no height)
        with pytest.raises(InputError) as caught:
            mask_from_box(image, box)
        assert str(caught.value).startswith(f"box {box} is only ")


def test_a_box_as_high_as_the_image_but_not_as_wide_is_no_whole_image_box():
    image, obj = scene(120, 160, 60, 80, 30, 40)
    assert iou(mask_from_box(image, (10, 0, 160, 120)), obj) > 0.8  # x0 + x1 is past the width: no matter


def test_a_box_on_an_rgba_image_finds_what_it_finds_on_the_colours():
    image, obj = scene(120, 160, 60, 80, 30, 40)
    rgba = np.concatenate([image, np.full((120, 160, 1), 0.7, np.float32)], axis=-1)
    np.testing.assert_array_equal(mask_from_box(rgba, (30, 20, 130, 100)), mask_from_box(image, (30, 20, 130, 100)))


def test_a_flat_box_says_no_object_and_how_to_go_on():
    with pytest.raises(InputError) as caught:
        mask_from_box(np.full((120, 160, 3), 0.5, np.float32), (30, 20, 130, 100))
    assert str(caught.value) == "no object found inside box (30, 20, 130, 100)"
    assert caught.value.detail == "draw the box tighter or give a mask"


def test_a_mask_that_leaves_no_background_is_refused_with_a_hint():
    mask = np.zeros((20, 20), np.float32)
    mask[1:19, 1:19] = 1.0  # one pixel of background all round: inside the band
    with pytest.raises(InputError) as caught:
        trimap_from_mask(mask, band=3)
    assert (str(caught.value), caught.value.detail) == (
        "the mask leaves no background around the object",
        "select a smaller region, or narrow the band around its edge (3 px here: the docker's Edge, the CLI's --band)")


def test_a_selection_soft_all_over_is_all_unknown_around_it():
    """A 40% selection (no pixel at least half selected): nothing is sure foreground, and that is no error."""
    mask = np.zeros((60, 60), np.float32)
    mask[20:40, 20:40] = 0.4
    tri = trimap_from_mask(mask, band=2)
    assert not (tri == 1.0).any() and (tri[20:40, 20:40] == UNKNOWN).all() and tri[0, 0] == 0.0


@pytest.mark.parametrize("mask,text,detail", [
    (np.full((8, 8), 0.02, np.float32), "the mask is empty: select or paint the foreground first", ""),
    (np.full((8, 8), 0.98, np.float32), "the mask covers the whole image: nothing would be left for the "
                                        "background", "select only the foreground object"),
    (np.full((8, 8), np.inf, np.float32), "mask contains NaN or infinite values", ""),
    (np.zeros((8, 8, 1), np.float32), "mask must be one channel, got shape (8, 8, 1)", ""),
])
def test_mask_refusals_in_full_at_the_limits(mask, text, detail):
    """Soft means strictly between 0.02 and 0.98: all 0.02 is empty, all 0.98 is the whole image."""
    with pytest.raises(InputError) as caught:
        check_mask(mask)
    assert (str(caught.value), caught.value.detail) == (text, detail)


def test_a_mask_is_read_as_float32_clipped_to_0_1():
    mask = np.array([[-0.5, 0.3], [1.7, 0.0]], np.float64)
    out = check_mask(mask)
    assert out.dtype == np.float32 and out.tolist() == [[0.0, np.float32(0.3)], [1.0, 0.0]]


def square_with_ramp(extra: dict | None = None) -> np.ndarray:
    """A 40 px square of 1 inside a one-pixel ring of 0.5: the 0.5 contour is the 42 px square's border."""
    mask = np.zeros((100, 100), np.float32)
    mask[29:71, 29:71] = 0.5
    mask[30:70, 30:70] = 1.0
    for (y, x), v in (extra or {}).items():
        mask[y, x] = v
    return mask


def test_the_selection_ramp_is_soft_pixels_per_pixel_of_the_half_contour():
    # 42 x 42 - 40 x 40 = 164 soft pixels; the contour through the ring's pixel centres, closed: 4 x 41 = 164 px
    assert selection_ramp(square_with_ramp()) == pytest.approx(1.0)
    # pixels at exactly 0.02 and 0.98 are not soft (a lone 0.98 pixel's contour has no length)
    assert selection_ramp(square_with_ramp({(5, 5): 0.02, (90, 90): 0.98})) == pytest.approx(1.0)
    ring = square_with_ramp()
    ring[45:55, 45:55] = 0.0  # a hole: its border is contour too (10 x 10 hole: 4 x 11 = 44 px around it)
    assert selection_ramp(ring) == pytest.approx(164 / (164 + 44), rel=0.02)
    soft_only = np.full((20, 20), 0.3, np.float32)
    assert selection_ramp(soft_only) == 0.0  # no contour: no ramp


def test_the_band_rule_reads_half_selected_pixels_as_inside_and_a_ramp_of_three_as_feathered():
    mask = np.zeros((400, 400), np.float32)
    mask[50:350, 50:350] = 0.5  # 300 x 300 at exactly half: inside, 2% of 300 is 6 px
    assert band_radius(mask, ramp=0.0) == 6
    assert band_radius(mask, ramp=3.0) == 17  # a ramp of 3 px is a feathered selection: at least 17 px
    assert band_radius(mask, ramp=2.9) == 6


def test_the_unknown_box_is_the_bands_grown_by_the_margin_and_clipped():
    trimap = np.zeros((100, 120), np.float32)
    assert unknown_box(trimap, 10) is None
    trimap[30:40, 50:55] = UNKNOWN
    trimap[60, 70] = UNKNOWN
    trimap[80:90, 10:20] = 1.0  # sure pixels do not count
    assert unknown_box(trimap, 0) == (slice(30, 61), slice(50, 71))
    assert unknown_box(trimap, 10) == (slice(20, 71), slice(40, 81))
    assert unknown_box(trimap, 45) == (slice(0, 100), slice(5, 116))
