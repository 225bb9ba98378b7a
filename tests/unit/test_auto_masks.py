"""Split into all layers, the parts that need no model: the point grid, SAM's stability score, the suppression of
duplicate masks, which masks are objects (not stuff, not parts, not specks) and the order from depth and
occlusion. Values worked out by hand."""

import numpy as np
from layeringdiff.stages.auto import (
    box_iou_nms,
    depth_verdicts,
    grid_points,
    is_stuff,
    labels_from,
    object_masks,
    stability,
)
from layeringdiff.stages.order import best_order, occlusion_verdicts


def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.hypot(yy - cy, xx - cx) < r


def test_the_grid_puts_one_point_at_each_cells_centre():
    points = grid_points(40, 80, 2)
    assert points.tolist() == [[20.0, 10.0], [60.0, 10.0], [20.0, 30.0], [60.0, 30.0]]  # (x, y), row by row
    assert grid_points(1024, 1024, 16).shape == (256, 2)


def test_stability_is_the_iou_of_the_mask_thresholded_above_and_below():
    logits = np.full((2, 4, 4), -5.0)
    logits[0, :2] = 5.0  # 8 pixels sure either way: stable
    logits[1, :2], logits[1, 2] = 5.0, 0.5  # 4 more pixels only just above 0: 8 of 12
    assert stability(logits).tolist() == [1.0, 8 / 12]
    assert stability(np.full((1, 2, 2), -5.0)).tolist() == [0.0]  # nothing at all


def test_duplicates_are_suppressed_the_better_kept():
    a = np.zeros((1, 10, 10), bool)
    a[0, :5] = True
    b = a.copy()
    b[0, 5, :5] = True  # 55 pixels, 50 of them a's: IoU 50/55 > 0.7
    c = np.zeros((1, 10, 10), bool)
    c[0, 7:] = True  # apart
    masks = np.concatenate([a, b, c])
    assert box_iou_nms(masks, np.array([0.9, 0.95, 0.5])) == [1, 2]
    assert box_iou_nms(masks, np.array([0.9, 0.95, 0.5]), iou_max=0.95) == [1, 0, 2]
    assert box_iou_nms(np.zeros((1, 4, 4), bool), np.array([1.0])) == []  # an empty mask is none


def test_stuff_is_most_of_the_picture_or_along_three_sides():
    floor = np.zeros((100, 100), bool)
    floor[70:] = True  # one side: an object as far as this goes
    assert not is_stuff(floor)
    wall = np.zeros((100, 100), bool)
    wall[:, :10], wall[:10], wall[-10:] = True, True, True  # along the left, top and bottom
    assert is_stuff(wall) and wall.mean() < 0.5
    assert is_stuff(np.ones((100, 100), bool))
    assert not is_stuff(disc(100, 100, 50, 50, 20))


def test_objects_are_neither_stuff_nor_specks_and_a_part_joins_its_whole():
    h = w = 100
    body = disc(h, w, 50, 40, 25)
    head = disc(h, w, 30, 40, 10) & body  # all inside the body: a part
    cup = disc(h, w, 70, 85, 10)
    speck = disc(h, w, 5, 95, 2)  # 12 pixels: 0.12% of the picture
    sky = np.zeros((h, w), bool)
    sky[:40] = True
    sky[:, :5] = sky[:, -5:] = True  # top, left and right
    masks = np.stack([head, body, cup, speck, sky])
    objects = object_masks(masks, np.array([0.99, 0.98, 0.97, 0.96, 0.95]))
    assert len(objects) == 2 and np.array_equal(objects[0], body | head) and np.array_equal(objects[1], cup)
    assert object_masks(np.zeros((0, h, w), bool), np.zeros(0)) == []
    labels = labels_from(objects, (h, w))
    assert (labels == 1).sum() == body.sum() and (labels == 2).sum() == cup.sum()


def test_depth_orders_objects_apart_and_the_outline_decides_where_they_touch():
    h, w = 80, 160
    card = np.zeros((h, w), bool)
    card[10:60, 10:70] = True
    coin = disc(h, w, 55, 65, 14)  # over the card's corner, keeping its round outline: in front
    ball = disc(h, w, 40, 130, 15)  # apart
    labels = labels_from([coin, card & ~coin, ball], (h, w))  # 1 coin, 2 card, 3 ball
    nearness = np.zeros((h, w), np.float32)
    nearness[labels == 1], nearness[labels == 2], nearness[labels == 3] = 0.2, 0.5, 0.9
    verdicts = depth_verdicts(labels, [1, 2, 3], nearness)
    expected = {(1, 2): -0.3 / 0.7, (1, 3): -1.0, (2, 3): -0.4 / 0.7}  # by depth the ball is nearest
    assert verdicts.keys() == expected.keys() and all(abs(verdicts[k] - v) < 1e-6 for k, v in expected.items())
    touching = occlusion_verdicts(labels, [1, 2, 3])
    assert set(touching) == {(1, 2)} and touching[(1, 2)] > 1  # the coin in front, by its boundary's length
    verdicts.update(touching)
    assert best_order(labels, [1, 2, 3], verdicts) == [3, 1, 2]  # the ball by depth; the coin over the card
