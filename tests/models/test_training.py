"""FBDD and HFA training on tiny models and a few synthetic samples (CPU)."""

import csv

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from layering_protocol import Split
from layeringdiff.models import ModelManager
from layeringdiff.pipeline import run_job
from layeringdiff.progress import no_progress
from layeringdiff.stages.layering import FBDD, HFA
from layeringdiff.train.dataset import DatasetConfig, LayerDataset
from layeringdiff.train.fbdd import (
    FBDDTrainConfig,
    _batch_tensors,
    _ema_update,
    fbdd_loss,
    load_fbdd,
    prepare_training,
    train_fbdd,
)
from layeringdiff.train.hfa import DecodedLayers, HFATrainConfig, decode_to_disk, hfa_losses, train_hfa
from layeringdiff.wire import from_array

from tests.models.runtime import model_config

DATA = DatasetConfig(size=64, length=4, seed=1)


def fixed_fbdd_loss(fbdd: FBDD, dataset) -> float:
    """The v-prediction loss on all samples with fixed noise and timesteps, to compare runs."""
    scheduler = DDPMScheduler.from_config(fbdd.scheduler.config, prediction_type="v_prediction")
    batch = _batch_tensors(torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))]), "cpu")
    with torch.no_grad():
        return float(fbdd_loss(fbdd, fbdd.unet_fg, fbdd.unet_bg, scheduler, batch, torch.Generator().manual_seed(0))[0])


def steps_logged(run):
    with (run / "losses.csv").open() as fh:
        return [int(float(r["step"])) for r in csv.DictReader(fh)]


def test_fbdd_training_lowers_the_loss_resumes_and_exports(tiny_layering_models, tmp_path):
    root, _ = tiny_layering_models
    data = LayerDataset(DATA)
    before = fixed_fbdd_loss(load_fbdd(str(root / "sd2-inpaint")), data)
    run = tmp_path / "fbdd-run"
    config = FBDDTrainConfig(init=str(root / "sd2-inpaint"), out=str(run), steps=20, batch_size=2, lr=1e-3,
                             checkpoint_every=10, log_every=5, ema_decay=0.5)
    seen = []
    export = train_fbdd(config, data, lambda step, values: seen.append(step))
    assert seen == list(range(1, 21)) and (run / "checkpoints" / "step-0000020" / "ema.pt").is_file()
    assert (run / "losses.png").is_file() and steps_logged(run) == [5, 10, 15, 20]
    trained = FBDD.from_folder(export)
    assert trained.unet_fg.config.in_channels == 72
    after = fixed_fbdd_loss(trained, data)
    assert after < 0.8 * before, (before, after)
    # resume: a longer run continues from step 20, not from 0
    seen.clear()
    config.steps = 30
    train_fbdd(config, data, lambda step, values: seen.append(step))
    assert seen == list(range(21, 31)) and steps_logged(run) == [5, 10, 15, 20, 25, 30]


class GPUAccelerator:
    """Stands in for accelerate on a GPU machine, where `prepare` moves the models to the accelerator's device.
    The meta device plays the GPU here: a tensor on it can no more be added into a CPU tensor than a CUDA one."""

    device = torch.device("meta")

    def prepare(self, *objects):
        return tuple(o.to(self.device) if isinstance(o, torch.nn.Module) else o for o in objects)

    def unwrap_model(self, model):
        return model


def test_more_processes_than_gpus_is_refused_before_the_group_forms(monkeypatch, tmp_path):
    """Seen on a one-GPU machine: two processes fail deep in NCCL ("Duplicate GPU detected"). Refused plainly."""
    from layeringdiff.errors import InputError
    from layeringdiff.train.checkpoints import make_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    with pytest.raises(InputError, match="2 training processes on this machine but 1 GPU.*--num_processes 1"):
        make_accelerator("no", tmp_path)


def test_ema_copies_live_on_the_accelerators_device(tiny_layering_models, tmp_path):
    root, _ = tiny_layering_models
    fbdd = load_fbdd(str(root / "sd2-inpaint"))
    config = FBDDTrainConfig(init="", out=str(tmp_path), batch_size=2, ema_decay=0.999)
    unet_fg, unet_bg, _, _, ema = prepare_training(GPUAccelerator(), fbdd, config, LayerDataset(DATA))
    assert ema is not None and len(ema) == 2
    for copy, model in zip(ema, (unet_fg, unet_bg), strict=True):
        pairs = list(zip(copy.parameters(), model.parameters(), strict=True))
        assert pairs and all(e.device == m.device and e.dtype == m.dtype for e, m in pairs)
        assert all(not e.requires_grad for e, _ in pairs)
    _ema_update(ema, (unet_fg, unet_bg), 0.999)  # the first step's update does not mix devices


def test_hfa_training_lowers_the_loss_and_exports(tmp_path):
    data = LayerDataset(DATA)
    decode_to_disk(data, None, tmp_path / "decoded", 0, 0)
    decoded = DecodedLayers(data, tmp_path / "decoded")
    batch = _batch_tensors({k: torch.as_tensor(np.stack([decoded[i][k] for i in range(4)])) for k in decoded[0]},
                           "cpu")
    torch.manual_seed(0)
    fresh = HFA.new(base_channels=8, levels=2)
    with torch.no_grad():
        before = float(hfa_losses(fresh.fan, fresh.ban, batch)[0])
    torch.manual_seed(0)
    config = HFATrainConfig(out=str(tmp_path / "hfa-run"), source="classical", steps=30, batch_size=4, lr=2e-3,
                            base_channels=8, levels=2, checkpoint_every=15, log_every=5)
    export = train_hfa(config, data)
    trained = HFA.from_folder(export)
    assert trained.training["source"] == "classical" and not trained.training["paper"]
    assert "not the paper's" in trained.training["inputs"]
    with torch.no_grad():
        after = float(hfa_losses(trained.fan, trained.ban, batch)[0])
    assert after < before, (before, after)
    seen = []
    config.steps = 33
    train_hfa(config, data, lambda step, values: seen.append(step))
    assert seen == [31, 32, 33]


def test_decoded_layers_are_written_once_and_streamed_with_flat_memory(tmp_path):
    import tracemalloc

    data = LayerDataset(DatasetConfig(size=96, length=16, seed=2))
    calls = []
    decode_to_disk(data, None, tmp_path / "decoded", 0, 0, progress=lambda done, total: calls.append(done))
    assert calls == list(range(1, 17))
    decode_to_disk(data, None, tmp_path / "decoded", 0, 0, progress=lambda done, total: calls.append(done))
    assert len(calls) == 16  # a second run decodes nothing again
    layers = DecodedLayers(data, tmp_path / "decoded")
    assert layers.reader.bytes_per_sample() < 96 * 96 * 6  # 8-bit, PNG-coded
    first = layers[3]
    tracemalloc.start()
    for i in range(len(layers)):
        sample = layers[i]
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert held < 2 * sum(v.nbytes for v in sample.values())  # the last sample, not all of them
    assert np.array_equal(layers[3]["decoded_bg"], first["decoded_bg"])
    assert first["decoded_bg"].dtype == np.float32 and first["decoded_bg"].shape == (96, 96, 3)
    with pytest.raises(ValueError, match="lacks the decoded layers of 4 samples"):
        DecodedLayers(LayerDataset(DatasetConfig(size=96, length=20, seed=2)), tmp_path / "decoded")


def test_exported_weights_load_in_the_backend_and_run(tiny_layering_models, tmp_path):
    root, _ = tiny_layering_models
    data = LayerDataset(DATA)
    fbdd_export = train_fbdd(FBDDTrainConfig(init=str(root / "sd2-inpaint"), out=str(tmp_path / "f"), steps=2,
                                             batch_size=2, checkpoint_every=2), data)
    hfa_export = train_hfa(HFATrainConfig(out=str(tmp_path / "h"), fbdd=str(fbdd_export), fbdd_steps=2, steps=2,
                                          batch_size=2, base_channels=8, levels=2, checkpoint_every=2), data)
    layering = tmp_path / "layering"
    layering.mkdir()
    (layering / "fbdd").symlink_to(fbdd_export)
    (layering / "hfa").symlink_to(hfa_export)
    manager = ModelManager(model_config(paths={"layering": str(layering)}))
    sample = data[0]
    image = from_array(np.dstack([sample["composite"], np.ones((64, 64), np.float32)]), "f32", "RGBA")
    mask = from_array(sample["alpha"], "f32", "L")
    out = run_job(Split(image, mask=mask, options={"layering": "fbdd", "layering_steps": 2, "alpha_mode": "mask"}),
                  no_progress, manager)
    assert out.info["method"] == "fbdd+hfa" and out.info["recomposition_error"] < 1e-4


def test_cli_dataset_train_and_evaluate(tiny_layering_models, tmp_path):
    import subprocess
    import sys

    root, _ = tiny_layering_models

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "layeringdiff", *map(str, args)], capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    run("dataset", "--count", "4", "--size", "64", "-o", tmp_path / "data", "--num-workers", "2", "-q")
    assert (tmp_path / "data" / "manifest.json").is_file()
    fbdd = run("train", "fbdd", "--init", root / "sd2-inpaint", "--data", tmp_path / "data", "--steps", "2",
               "--batch-size", "2", "-o", tmp_path / "run", "-q").strip()
    refused = subprocess.run([sys.executable, "-m", "layeringdiff", "train", "hfa", "--data", tmp_path / "data",
                              "-o", tmp_path / "no-fbdd"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "give the trained FBDD folder (--fbdd)" in refused.stderr, refused.stderr
    assert "--source classical (not the paper's)" in refused.stderr and not (tmp_path / "no-fbdd").exists()
    hfa = run("train", "hfa", "--fbdd", fbdd, "--data", tmp_path / "data", "--steps", "2", "--batch-size", "2", "-o",
              tmp_path / "run-hfa", "-q").strip()
    layering = tmp_path / "layering"
    layering.mkdir()
    (layering / "fbdd").symlink_to(fbdd)
    (layering / "hfa").symlink_to(hfa)
    generated = tmp_path / "generated"
    generated.mkdir()
    run("split", "--example", "coffee", "-o", generated / "coffee.ora", "-q", "--no-png")
    run("evaluate", "--data", tmp_path / "data", "--layering", layering, "--layering-steps", "2", "-o",
        tmp_path / "eval", "--generated", generated, "--scales", "SAD=1", "--alpha", "true", "-q")
    table = (tmp_path / "eval" / "results.md").read_text()
    assert "| Germer et al. |" in table and "1 generated layers" in table
    # Table 4's "Ours" twice: the paper's composition and this project's; the "+ Inp." row's inpainter named
    assert "| LayeringDiff FBDD + HFA, copy-through (the paper's composition) |" in table
    assert "| LayeringDiff FBDD + HFA + least-change composition (ours) |" in table
    assert "| Germer et al. + Inp. (push-pull: a fallback, no generative inpainter's weights here) |" in table
    assert "Table 2, 0 to 100" in table
    assert "MAD x 1000, MSE x 1000, SAD x 1, LPIPS x 100;" in table and "given the true alpha" in table


def test_layers_decoded_by_an_fbdd_trained_further_are_not_reused(tmp_path):
    """The decoded folder remembers the FBDD's files: training it further into the same folder makes them stale."""
    from layeringdiff.train.hfa import check_decoded_folder, weights_stamp

    fbdd = tmp_path / "export" / "fbdd"
    (fbdd / "unet_bg").mkdir(parents=True)
    weights = fbdd / "unet_bg" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"\0" * 10)

    def fingerprint():
        return {"fbdd": str(fbdd), "fbdd_weights": weights_stamp(fbdd), "fbdd_steps": 25, "seed": 0, "count": 4}

    decoded = tmp_path / "runs" / "hfa" / "decoded"
    check_decoded_folder(decoded, fingerprint())
    check_decoded_folder(decoded, fingerprint())  # the same FBDD: resumed
    weights.write_bytes(b"\1" * 12)  # trained further
    with pytest.raises(ValueError, match="decoded for another run"):
        check_decoded_folder(decoded, fingerprint())
