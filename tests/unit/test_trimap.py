import numpy as np
import pytest
from layeringdiff.errors import InputError
from layeringdiff.imaging.trimap import UNKNOWN, band_radius, check_mask, mask_from_box, trimap_from_mask


def disk(h=128, w=128, r=40):
    yy, xx = np.mgrid[:h, :w]
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= r * r).astype(np.float32)


def test_trimap_has_band_around_edge_only():
    mask = disk()
    tri = trimap_from_mask(mask, radius=5)
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
    tri = trimap_from_mask(mask, radius=3)
    assert np.all(tri[10:20, 10:20] == UNKNOWN)


def test_thin_object_keeps_some_foreground():
    mask = np.zeros((64, 64), np.float32)
    mask[30:33, 5:60] = 1.0  # 3 px line: a big erosion would remove it
    tri = trimap_from_mask(mask, radius=8)
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


@pytest.mark.parametrize("box", [(5, 5, 6, 6), (200, 200, 300, 300), (0, 0, 160, 120)])
def test_bad_boxes(box):
    with pytest.raises(InputError):
        mask_from_box(np.zeros((120, 160, 3), np.float32), box)
