"""A back object's layer runs on a little way behind the objects in front of it (stages/peel.hidden_share): its edge
against them is theirs, not its own, and the background behind it holds no piece of it."""

import numpy as np
from layeringdiff.options import SplitOptions
from layeringdiff.stages.peel import LabelMasks, completion_reach, hidden_share, split_objects

H, W = 120, 160
BLUE, RED, GREEN = np.array([0.1, 0.2, 0.9]), np.array([0.9, 0.15, 0.1]), np.array([0.2, 0.8, 0.3])


def disc_over_bar() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A green disc (label 1) in front of a red bar (label 2) that runs under it, over blue: the picture, the labels
    and where the bar really is."""
    yy, xx = np.mgrid[:H, :W]
    disc = (yy - 60) ** 2 + (xx - 100) ** 2 <= 35 ** 2
    bar = (yy >= 45) & (yy < 75) & (xx >= 10) & (xx < 110)  # its right end hidden under the disc
    image = np.where(disc[..., None], GREEN, np.where(bar[..., None], RED, BLUE)).astype(np.float32)
    labels = np.where(disc, 1, np.where(bar, 2, 0)).astype(np.uint8)
    return image, labels, bar


def test_the_back_object_runs_on_behind_the_front_one_and_the_background_keeps_none_of_it():
    image, labels, bar = disc_over_bar()
    peeled = split_objects(image, LabelMasks(labels, [1, 2]), SplitOptions(quantize=255))
    assert np.abs(peeled.composite()[..., :3] - image).max() <= 0.5 / 255 + 1e-5
    back = peeled.layers[1][..., 3] / 255.0
    yy, xx = np.mgrid[:H, :W]
    under = labels == 1
    near = under & bar & (yy >= 50) & (yy < 70) & (xx < 78)  # the disc's first 12 px over the bar's middle
    assert back[near].mean() > 0.95  # the bar's layer goes on under the disc: no edge where the disc begins
    assert back[under & (xx >= 90)].max() == 0  # and no further than its depth (15 px) and a band
    # what is behind the disc's near part is the blue around the bar, not a piece of the red bar
    assert np.abs(peeled.background[near][:, :3] - BLUE).max(axis=1).mean() < 0.1
    # the bar's visible part is held whole, its edges against the blue soft at most a pixel or two
    assert back[bar & (labels == 2)].mean() > 0.98


def test_a_share_is_nearer_to_the_object_than_to_anything_else_visible_and_no_deeper_than_it():
    seen = np.zeros((40, 60), bool)
    seen[10:30, 5:25] = True  # 20 px deep: depth 10
    covered = np.zeros((40, 60), bool)
    covered[:, 25:45] = True  # a front object right of it, with background beyond
    share = hidden_share(seen, covered)
    assert share is not None and share.dtype == np.float32
    on = share > 0
    assert not (on & ~covered).any()  # only the front objects' pixels
    cols = np.flatnonzero(on.any(axis=0))
    assert cols.min() == 25 and cols.max() <= 25 + 10  # within its depth of it
    rows = np.flatnonzero(on.any(axis=1))
    assert rows.min() >= 10 - 1 and rows.max() <= 30  # not towards the background above and below it
    assert completion_reach(20, 20) >= 10  # job_memory's box growth covers it


def test_strands_and_objects_in_the_open_are_not_completed():
    covered = np.zeros((40, 60), bool)
    covered[:, 30:] = True
    strand = np.zeros((40, 60), bool)
    strand[20, 5:30] = True  # a pixel-wide strand running into the front object: no shape to go on with
    assert hidden_share(strand, covered) is None
    alone = np.zeros((40, 60), bool)
    alone[5:15, 2:12] = True  # far from the front object
    assert hidden_share(alone, covered) is None
    assert hidden_share(alone, np.zeros((40, 60), bool)) is None
