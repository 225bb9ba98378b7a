"""A grey label map whose edges were smoothed (anti-aliased painting, a blur, a smooth resize) is refused: each
blended value along an edge would become an object of its own (176 from three objects, seen). Clean maps pass,
small and thin objects and numbering gaps included."""

import cv2
import numpy as np
import pytest
from layeringdiff.errors import InputError
from layeringdiff.stages.peel import LabelMasks, blended_labels, check_labels, label_values, split_objects


def discs(values=(85, 170, 255)) -> np.ndarray:
    labels = np.zeros((160, 200), np.uint8)
    for k, (x, y, r) in zip(values, ((60, 70, 40), (120, 80, 45), (150, 40, 30)), strict=True):
        cv2.circle(labels, (x, y), r, int(k), -1)
    return labels


@pytest.mark.parametrize("smooth", [
    lambda m: np.round(cv2.GaussianBlur(m.astype(np.float32), (5, 5), 1.5)).astype(np.uint8),
    lambda m: cv2.resize(cv2.resize(m, (100, 80), interpolation=cv2.INTER_NEAREST), (200, 160),
                         interpolation=cv2.INTER_LINEAR),
])
def test_smoothed_edges_are_refused_with_what_to_do(smooth):
    labels = smooth(discs())
    blended = blended_labels(labels, label_values(labels))
    assert len(blended) > 20 and not {85, 170, 255} & set(blended)  # the objects themselves are not blends
    with pytest.raises(InputError) as caught:
        check_labels(labels, label_values(labels))
    assert "values found only along the edges between others" in caught.value.text
    assert "without anti-aliasing" in caught.value.detail


def test_clean_maps_pass_with_small_thin_and_gapped_objects():
    labels = discs((1, 3, 7))
    labels[5, 5] = 9  # one pixel
    labels[150, 10:190] = 4  # a line a pixel thick over the background
    cv2.line(labels, (20, 100), (180, 100), 2, 1)  # and one across the objects: 2 lies between 1 and 3 only in part
    check_labels(labels, label_values(labels))
    assert blended_labels(labels, label_values(labels)) == []


def test_a_few_objects_drawn_only_between_others_are_let_through_more_are_not():
    """Thin objects numbered between what is on either side of them look like blends: two figures' 1-px outlines
    (labels 1 and 2) in front of their fills (3 and 4) over the background pass; stripes of eight values, each a
    pixel wide between a lower and a higher one, do not."""
    labels = np.zeros((80, 160), np.uint8)
    for outline, fill, x in ((1, 3, 40), (2, 4, 115)):
        cv2.circle(labels, (x, 40), 30, fill, -1)
        cv2.circle(labels, (x, 40), 30, outline, 1)
    assert len(blended_labels(labels, label_values(labels))) == 2
    check_labels(labels, label_values(labels))
    stripes = np.zeros((40, 60), np.uint8)
    stripes[:30, 10:30] = 10
    stripes[:30, 30:50] = 20
    for k in range(8):  # eight pixel-wide values between 10 and 20: a smooth step
        stripes[:30, 26 + k] = 11 + k
    assert blended_labels(stripes, label_values(stripes)) == list(range(11, 19))
    with pytest.raises(InputError, match="8 values found only along the edges between others \\(11, 12, 13"):
        check_labels(stripes, label_values(stripes))
    assert check_labels(stripes, label_values(stripes), thin=True) == list(range(11, 19))  # the user says: objects


def test_labels_that_leave_no_background_are_refused():
    labels = discs((1, 2, 3))
    labels[labels == 0] = 3  # the backmost object labelled everywhere else
    with pytest.raises(InputError, match="every pixel has an object's label") as caught:
        check_labels(labels, label_values(labels))
    assert caught.value.detail == "leave the background unlabelled, at 0"


def test_a_picture_too_small_is_the_picture_s_fault_and_an_object_s_failure_names_its_label():
    labels = np.zeros((3, 3), np.uint8)
    labels[1, 1] = 4
    with pytest.raises(InputError, match=r"^image of 3x3 pixels is too small to split \(it needs 4 pixels or more"):
        split_objects(np.zeros((3, 3, 3), np.float32), LabelMasks(labels, [4], ["label 4"]))
    labels = np.full((40, 40), 4, np.uint8)
    labels[0, 0] = 0
    with pytest.raises(InputError, match="^label 4: the mask leaves no background"):
        split_objects(np.zeros((40, 40, 3), np.float32), LabelMasks(labels, [4], ["label 4"]))
    with pytest.raises(InputError, match="^object 1: the mask leaves no background"):  # no names: the position
        split_objects(np.zeros((40, 40, 3), np.float32), LabelMasks(labels, [4]))


def test_each_object_s_progress_is_named_after_it_and_only_the_last_says_done():
    """Progress of a split into objects: each object's stages on its share, named after it ("label 2: matting"),
    rising, and "done" once, at the end (each object's own "done" at 50% read as the job's)."""
    labels = discs((1, 2, 3))
    image = np.random.default_rng(0).random((*labels.shape, 3)).astype(np.float32)
    seen: list[tuple[str, float]] = []
    split_objects(image, LabelMasks(labels, [1, 2, 3], ["label 1", "label 2", "label 3"]),
                  progress=lambda stage, fraction: seen.append((stage, fraction)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and seen[-1] == ("done", 1.0)
    assert [stage for stage, _ in seen].count("done") == 1
    for k in (1, 2, 3):
        mine = [f for stage, f in seen if stage.startswith(f"label {k}: ")]
        assert {"matting", "done"} <= {stage.split(": ")[1] for stage, _ in seen if stage.startswith(f"label {k}: ")}
        assert (k - 1) / 3 - 1e-6 <= min(mine) and max(mine) <= k / 3 + 1e-6
    one: list[str] = []
    split_objects(image, LabelMasks(labels, [2], ["label 2"]), progress=lambda stage, _: one.append(stage))
    assert "matting" in one and one[-1] == "done" and not any(":" in stage for stage in one)  # one object: as split
