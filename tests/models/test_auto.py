"""Split into all layers with tiny random models of the real classes (SAM, Depth Anything V2): the plumbing from the
picture to SAM's point prompts, Depth Anything's depth, the order and the peel; random weights find arbitrary
regions, so the checks are of shapes, counts, the recomposition and the errors."""

import subprocess
import sys

import numpy as np
import pytest
from layering_protocol import SplitLayers
from layeringdiff.errors import InputError
from layeringdiff.examples import synthetic_composite
from layeringdiff.models import ModelConfig, ModelManager, ModelMissing
from layeringdiff.pipeline import run_job
from layeringdiff.progress import no_progress
from layeringdiff.stages import auto
from layeringdiff.wire import from_array, to_array

LOOSE = auto.AutoOptions(pred_iou_min=0.0, stability_min=0.0, min_area=0.001)  # random weights score low


@pytest.fixture(scope="module")
def manager(tiny_models):
    root, _ = tiny_models
    return ModelManager(ModelConfig.load().with_models_dir(str(root)))


@pytest.fixture(scope="module")
def picture():
    comp, _, _, _ = synthetic_composite(96, 128, seed=3)
    return comp


def test_objects_are_found_ordered_and_labelled(manager, picture):
    stages = []
    labels, order, info = auto.find_objects(manager, picture, LOOSE, lambda stage, f: stages.append((stage, f)))
    assert labels.shape == (96, 128) and labels.dtype == np.uint8
    present = sorted(int(k) for k in np.unique(labels) if k)
    assert sorted(order) == present and info["objects_found"] == len(present) >= 1
    assert info["prompts"] == auto.POINTS_PER_SIDE ** 2 and info["order"] == "depth and occlusion"
    assert [s for s, _ in stages][0] == "segment" and "depth" in [s for s, _ in stages]
    assert [f for _, f in stages] == sorted(f for _, f in stages)


def test_random_weights_find_nothing_by_sams_own_thresholds_and_say_so(manager, picture):
    with pytest.raises(InputError, match="SAM found no object to split off in the picture"):
        auto.find_objects(manager, picture)


def test_a_job_splits_every_object_found_front_to_back(manager, picture, monkeypatch):
    monkeypatch.setattr(auto, "AutoOptions", lambda: LOOSE)
    image = from_array(np.dstack([picture, np.ones((96, 128), np.float32)]), "u8", "BGRA")
    out = run_job(SplitLayers(image, auto=True), no_progress, manager)
    found = out.info["auto"]["objects_found"]
    assert len(out.info["objects"]) == found == 1 + len(out.behind) and out.info["order"] == "depth and occlusion"
    picture_back = to_array(out.background)[..., :3]
    for layer in reversed([to_array(x) for x in (out.foreground, *out.behind)]):
        a = layer[..., 3:]
        picture_back = a * layer[..., :3] + (1 - a) * picture_back
    assert np.abs(picture_back - to_array(image)[..., :3]).max() <= 1 / 255 + 1e-6


def test_without_the_depth_model_the_job_names_it(tiny_models, picture):
    root, folders = tiny_models
    only_sam = ModelManager(ModelConfig.load().with_overrides([f"sam={folders['sam']}"]))
    image = from_array(np.dstack([picture, np.ones((96, 128), np.float32)]), "u8", "BGRA")
    with pytest.raises(ModelMissing) as info:
        run_job(SplitLayers(image, auto=True), no_progress, only_sam)
    assert "depth-anything" in info.value.text and "models fetch" in info.value.detail


def test_the_cli_splits_with_auto_and_says_when_nothing_is_found(tiny_models, tmp_path, picture):
    from layeringdiff.io.images import save_png

    root, _ = tiny_models
    save_png(tmp_path / "p.png", picture)
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", str(tmp_path / "p.png"), "--auto",
                           "--models-dir", str(root), "-o", str(tmp_path / "p.ora")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "SAM found no object to split off in the picture" in proc.stderr, proc.stderr
    assert not (tmp_path / "p.ora").exists()
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", str(tmp_path / "p.png"), "--auto",
                           "--order", "auto", "-o", str(tmp_path / "q.ora")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--order applies to --labels only" in proc.stderr


def test_a_large_picture_is_searched_at_the_working_size_and_labelled_at_its_own(manager, monkeypatch):
    """SAM's masks for 256 prompts at 4096 px would take gigabytes: they are found at WORK_SIDE and the labels
    brought back up (nearest), so the objects keep their place."""
    monkeypatch.setattr(auto, "WORK_SIDE", 64)
    comp, _, _, _ = synthetic_composite(96, 192, seed=3)
    seen = []
    real = auto.point_masks
    monkeypatch.setattr(auto, "point_masks", lambda sam, proc, pil, *a, **k: seen.append(pil.size) or
                        real(sam, proc, pil, *a, **k))
    labels, order, info = auto.find_objects(manager, comp, LOOSE)
    assert seen == [(64, 32)] and labels.shape == (96, 192)
    assert sorted(order) == sorted(int(k) for k in np.unique(labels) if k) and info["objects_found"] == len(order)
