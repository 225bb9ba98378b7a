"""benchmarks/bench_gpu_fullsize.py: the full-size GPU benchmark's own code on the CPU.

`--reduced` runs the whole script (the same stages, configurations, table and recommendation) on tiny models at
64 x 64; the full-size folders' configs and processors are written and checked without weights; the table, the
targets and the per-card recommendation are checked on hand-made rows. What only a CUDA GPU can show (the
figures themselves, OOM on a real card, the driver's memory figure) is not checked here."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the ml extra is not installed")
pytest.importorskip("diffusers", reason="the ml extra is not installed")
pytest.importorskip("transformers", reason="the ml extra is not installed")
from benchmarks import bench_gpu_fullsize as bench  # noqa: E402

SCRIPT = Path(bench.__file__)
GIB = bench.GIB


def table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(configuration, stage) -> the cells of the printed Markdown table."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Configuration"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[(cells[0], cells[1])] = cells
    return rows


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory) -> tuple[str, dict, Path]:
    """The whole script on tiny models (about 30 s on two cores once its imports are warm)."""
    work = tmp_path_factory.mktemp("bench-gpu-work")
    report = work / "rows.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--work", str(work), "--json", str(report)],
                          capture_output=True, text=True, timeout=420, cwd=SCRIPT.parents[1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(report.read_text()), work


def test_reduced_run_prints_every_stage_of_every_configuration(reduced_run):
    out, _, _ = reduced_run
    rows = table_rows(out)
    stages = [*bench.STAGES.values(), bench.JOB]
    assert set(rows) == {(c.name, s) for c in bench.ALL for s in stages}
    for (config, stage), cells in rows.items():
        status = cells[9]
        assert status.startswith("ok"), (config, stage, status)  # tiny models: nothing is NaN, partial or OOM
        assert float(cells[4]) >= 0, (config, stage)  # the stage's seconds
        assert cells[5:8] == ["n/a (CPU)"] * 3  # no GPU: no memory figures
        if stage in (bench.STAGES["generate"], bench.STAGES["layering"], bench.STAGES["peel"]):
            assert float(cells[3]) > 0, (config, stage)  # a denoising step's time
        if stage in (bench.STAGES[k] for k in bench.TIMED):
            assert cells[8] in ("≤10 s: met", "≤10 s: missed")
    assert rows[("fp16", bench.STAGES["generate"])][2] == "2"
    assert rows[("bf16 + offload", bench.STAGES["layering"])][2] == "2 x 2"
    assert rows[("fp16 + tiling", bench.JOB)][8].startswith("≤12 GiB: n/a (CPU); every stage ≤10 s:")


def test_reduced_run_ends_with_a_line_per_card_and_cleans_up(reduced_run):
    out, report, work = reduced_run
    recommendation = out.split("## Recommendation per card", 1)[1]
    for card in bench.CARDS_GB:
        assert f"- {card} GB card: n/a: no GPU memory was measured" in recommendation
    assert report["recommendation"] == [line for line in recommendation.splitlines() if line.startswith("- ")]
    assert len(report["rows"]) == len(bench.ALL) * (len(bench.STAGES) + 1)
    assert re.search(r"\[ *\d+\.\d s\] done", out)  # elapsed time as it goes
    assert "vae_tiling: the SDXL VAE tiles only images over 64 px a side (this canvas: 64)" in out
    assert work.is_dir() and not (work / "models-reduced").exists()  # its models deleted without --keep, --work kept


# ---- the full-size folders, without weights ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fullsize_folders(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("fullsize") / "models"
    bench.write_configs(models)
    return models


def test_full_size_configs_and_processors_check_out(fullsize_folders):
    """Every part builds (on the meta device) the published model from its folder's config, the product's
    ModelManager finds every folder, tokenizers and processors load as the product loads them."""
    assert bench.check_folders(fullsize_folders) == []
    assert not list(fullsize_folders.rglob("*.safetensors"))  # configs only


def test_check_folders_catches_a_wrong_config(fullsize_folders, tmp_path):
    import shutil

    broken = tmp_path / "models"
    shutil.copytree(fullsize_folders, broken)
    config = json.loads((broken / "sdxl" / "unet" / "config.json").read_text())
    config["transformer_layers_per_block"] = [1, 2, 2]  # SD 1.x-like depth: not the published UNet
    (broken / "sdxl" / "unet" / "config.json").write_text(json.dumps(config))
    shutil.rmtree(broken / "sam")
    problems = bench.check_folders(broken)
    assert any(p.startswith("sdxl/unet:") and "parameters" in p for p in problems)
    assert any("sam" in p for p in problems)


def test_small_full_size_parts_get_weights_the_product_loads(fullsize_folders, tmp_path):
    """The weight-writing code on the CPU for the parts that are cheap here (ViTMatte at 26M parameters, the FBDD
    VAE at 84M, HFA): loaded back by ModelManager and diffusers as a run loads them, in the stored dtype."""
    import shutil

    import numpy as np
    import torch
    from diffusers import AutoencoderKL
    from layeringdiff.models import ModelConfig, ModelManager
    from layeringdiff.stages.layering import HFA

    from benchmarks import fullsize

    models = tmp_path / "models"
    shutil.copytree(fullsize_folders, models)
    bench.write_weights(models, "cpu", only=("vitmatte", "layering/fbdd/vae"), log=lambda text: None)
    manager = ModelManager(ModelConfig(device="cpu").with_models_dir(str(models)))
    model, processor = manager.vitmatte()
    assert fullsize.params_of(model) == fullsize.MODELS["vitmatte"].counted
    assert next(model.parameters()).dtype == torch.float32  # as the hub's fp32 checkpoint loads
    weights = [p for p in model.parameters() if p.dim() >= 2]
    assert abs(float(torch.cat([w.detach().flatten() for w in weights]).std()) - bench.STD) < 0.002
    from layeringdiff.stages.learned_matte import learned_matte

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (64, 96, 3)).astype(np.float32)
    trimap = np.zeros((64, 96), np.float32)
    trimap[16:48, 24:72] = 0.5
    alpha = learned_matte(model, processor, image, trimap)
    assert alpha.shape == (64, 96) and np.all(np.isfinite(alpha))
    vae = AutoencoderKL.from_pretrained(models / "layering" / "fbdd" / "vae", dtype=torch.bfloat16,
                                        local_files_only=True)
    assert fullsize.params_of(vae) == fullsize.MODELS["sd2-vae"].counted and vae.dtype == torch.bfloat16
    hfa = HFA.from_folder(models / "layering" / "hfa")
    assert fullsize.params_of(hfa.fan) == fullsize.MODELS["fan"].counted
    assert (models / "layering" / "fbdd" / "null_embedding.safetensors").is_file()


def test_randomise_draws_weight_matrices_and_opens_sams_masks():
    import torch
    import transformers

    torch.manual_seed(0)

    config = transformers.SamConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 64,
                       "output_channels": 16, "mlp_dim": 32, "global_attn_indexes": [0], "num_pos_feats": 8},
        prompt_encoder_config={"hidden_size": 16, "image_size": 64}, mask_decoder_config={"hidden_size": 16})
    model = transformers.SamModel(config)
    norm_before = model.vision_encoder.neck.layer_norm1.weight.clone()
    bench.randomise(model, std=0.05)
    weight = model.vision_encoder.neck.conv1.weight
    assert abs(float(weight.detach().std()) - 0.05) < 0.01
    assert torch.equal(model.vision_encoder.neck.layer_norm1.weight, norm_before)  # 1-D: kept
    for mlp in model.mask_decoder.output_hypernetworks_mlps:
        assert torch.all(mlp.proj_out.bias == bench.SAM_HYPER_BIAS)


# ---- pure helpers: measuring, the table, the targets, the recommendation ---------------------------------------
def test_step_times_leave_out_each_loops_first_step():
    timer = bench.StepTimer()
    timer.events = [("generate", 0.0, 0.0), ("generate", 1 / 3, 5.0), ("generate", 2 / 3, 6.0),
                    ("generate", 1.0, 7.5), ("fbdd foreground", 0.62, 9.0), ("fbdd foreground", 0.64, 9.25),
                    ("fbdd background", 0.66, 11.0), ("fbdd background", 0.68, 11.5)]
    assert timer.step_times() == [1.0, 1.5, 0.25, 0.5]
    timer("detect", 0.1)  # not a denoising step
    assert len(timer.events) == 8
    timer("generate", 0.5)
    assert timer.events[-1][:2] == ("generate", 0.5)


def test_an_oom_ends_the_configuration_and_other_failures_do_not():
    import torch

    calls = []

    def ok(job):
        calls.append("ok")
        return bench.Done("3", "fine")

    def oom(job):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def broken(job):
        raise ValueError("cannot convert float NaN to integer\nmore")

    def nan(job):
        job.nan.append("the alpha")
        return bench.Done()

    def partial(job):
        return bench.Done(note="stopped", partial=True)

    job = bench.Job(None, bench.Settings("cpu", 64, 2, 2, 64, 0), bench.StepTimer())
    rows = bench.timed_stages("fp16", [("generate", broken), ("split", nan), ("layering", partial), ("peel", ok)],
                              job, lambda text: None)
    assert [r.status for r in rows] == ["error: ValueError: cannot convert float NaN to integer", "NaN", "partial",
                                        "ok"]
    assert rows[1].note == "NaN/inf in: the alpha" and rows[3].steps == "3" and rows[3].note == "fine"
    rows = bench.timed_stages("bf16", [("generate", ok), ("split", oom), ("layering", ok), ("peel", ok)], job,
                              lambda text: None)
    assert [r.status for r in rows] == ["ok", "OOM", "skipped: after OOM", "skipped: after OOM"]
    assert rows[1].seconds is not None and rows[2].seconds is None
    assert calls == ["ok", "ok"]  # nothing ran after the OOM


def gib(x: float) -> int:
    return int(x * GIB)


def config_rows(config: str, seconds: tuple[float, float, float, float], device_gib: float, alloc_gib: float,
                statuses: tuple[str, ...] = ("ok",) * 5) -> list[bench.Row]:
    """Hand-made rows of one configuration: load + the four stages, the highest peak in the layering stage; a
    skipped stage has no figures."""
    rows = [bench.Row(config, "load", statuses[0], 20.0, None, "", gib(alloc_gib - 1), gib(alloc_gib - 1),
                      gib(device_gib - 1))]
    for i, (stage, s) in enumerate(zip(bench.TIMED, seconds, strict=True)):
        top = stage == "layering"
        if statuses[i + 1].startswith("skipped"):
            rows.append(bench.Row(config, stage, statuses[i + 1]))
            continue
        rows.append(bench.Row(config, stage, statuses[i + 1], s, 0.1, "", gib(alloc_gib - (0 if top else 0.5)),
                              gib(alloc_gib), gib(device_gib - (0 if top else 0.5))))
    return rows


ROWS = (config_rows("fp16", (3.0, 1.0, 2.0, 3.0), 19.8, 17.0)
        + config_rows("fp16 + offload + tiling", (6.0, 1.5, 2.5, 3.5), 7.2, 6.1)
        + config_rows("bf16", (2.5, 1.0, 2.0, 3.0), 19.9, 17.1)
        + config_rows("bf16 + offload", (5.0, 1.0, 2.0, 3.0), 11.9, 10.8)  # over 11.5 by the driver only
        + config_rows("fp16 + offload", (5.5, 1.0, 2.0, 3.0), 7.1, 6.0, ("ok", "ok", "ok", "OOM", "skipped")))


def test_recommendation_per_card_from_measured_rows():
    lines = bench.recommend(ROWS, context=gib(0.5))
    eight, twelve, twenty_four, left_out = lines
    # 8 GB (7.5 usable): only the offloaded fp16 run fits by the driver's figure
    assert eight.startswith("- 8 GB card (7.5 GiB usable): fp16 + offload + tiling: peak 7.20 GiB on the device, "
                            "13.5 s") and "nothing else measured fits" in eight
    # 12 GB (11.5 usable): bf16 + offload is over by the driver's figure but under by allocations + context, and
    # slower than fp16 + offload + tiling, which fits outright
    assert twelve.startswith("- 12 GB card (11.5 GiB usable): fp16 + offload + tiling")
    assert "bf16 + offload" not in twelve
    # 24 GB: the fastest that fits is bf16; the fp16 alternative for cards without bf16 is named
    assert twenty_four.startswith("- 24 GB card (23.5 GiB usable): bf16: peak 19.90 GiB on the device, 8.5 s")
    assert "also fits: fp16, bf16 + offload, fp16 + offload + tiling" in twenty_four
    assert "bf16 needs an Ampere (RTX 30xx) or newer GPU; before that: fp16 (9.0 s)" in twenty_four
    assert left_out == "- not considered (OOM, error or skipped): fp16 + offload"


def test_recommendation_when_only_allocations_fit_or_nothing_does():
    tight = config_rows("fp16 + offload", (5.0, 1.0, 2.0, 3.0), 11.9, 10.8)
    [twelve] = bench.recommend(tight, cards=(12,), context=gib(0.5))
    assert twelve.startswith("- 12 GB card (11.5 GiB usable): fp16 + offload may fit: its tensors peak at 10.80 GiB")
    assert "check with --limit-gb 11.5" in twelve
    [eight] = bench.recommend(tight, cards=(8,), context=gib(0.5))
    assert eight == ("- 8 GB card (7.5 GiB usable): none of the measured configurations fits (the smallest, "
                     "fp16 + offload, peaks at 11.90 GiB on the device)")
    nan = config_rows("fp16", (3.0, 1.0, 2.0, 3.0), 7.0, 6.0, ("ok", "NaN", "partial", "ok", "ok"))
    [line] = bench.recommend(nan, cards=(8,))
    assert line.endswith("[with random weights: Generate (SDXL) NaN, Phrase split (DINO, SAM, ViTMatte) partial]")


def test_recommendation_without_gpu_figures():
    rows = [bench.Row("fp16", stage, "ok", 1.0) for stage in ("load", *bench.TIMED)]
    assert bench.recommend(rows) == [f"- {card} GB card: n/a: no GPU memory was measured (a CPU run); run this "
                                     "on a CUDA GPU" for card in (8, 12, 24)]


def test_job_row_and_targets():
    rows = ROWS
    job = bench.job_row("fp16", rows)
    assert job.seconds == pytest.approx(6.0) and job.peak_device == gib(19.8) and job.peak_alloc == gib(17.0)
    assert bench.targets(job) == "≤12 GiB: missed"
    offloaded = bench.job_row("fp16 + offload + tiling", rows)
    assert bench.targets(offloaded) == "≤12 GiB: met"
    tight = bench.job_row("bf16 + offload", rows)
    assert bench.targets(tight, context=gib(0.5)) == "≤12 GiB: met"  # 11.9 by the driver: within 12
    assert bench.memory_verdict(gib(12.4), gib(11.0), 12, gib(0.5)) == "met by allocations only (driver 12.40 GiB)"
    assert bench.memory_verdict(None, None, 12) == "n/a (CPU)"
    oom = bench.job_row("fp16 + offload", rows)
    assert oom.status == "OOM" and oom.seconds is None and bench.targets(oom) == "not measured"
    slow = bench.Row("x", "generate", "ok", 12.5)
    assert bench.targets(slow) == "≤10 s: missed" and bench.targets(bench.Row("x", "load", "ok", 30.0)) == ""
    assert bench.job_time_verdict("fp16", rows) == "every stage ≤10 s: met"
    table = bench.markdown(rows, gib(0.5))
    lines = table_rows(table)
    assert lines[("fp16", bench.JOB)][8] == "≤12 GiB: missed; every stage ≤10 s: met"
    assert lines[("fp16 + offload", bench.STAGES["layering"])][9] == "OOM"
    assert lines[("fp16 + offload", bench.STAGES["peel"])][4:8] == ["", "", "", ""]  # skipped: nothing measured
    assert lines[("fp16", bench.STAGES["layering"])][5:8] == ["17.00 GiB", "17.00 GiB", "19.80 GiB"]


def test_configurations():
    names = [c.name for c in bench.ALL]
    assert len(set(names)) == 8 and {"fp16", "bf16 + offload + tiling", "fp16 + tiling"} <= set(names)
    assert [c.name for c in bench.QUICK] == ["fp16", "fp16 + offload + tiling", "bf16"]
    args = bench.parse_args(["--quick"])
    assert args.deadline == 420 and bench.chosen_configs(args) == bench.QUICK
    assert bench.chosen_configs(bench.parse_args(["--only", "bf16 + offload, fp16"])) == (
        bench.Config("bf16", True), bench.Config("fp16"))
    with pytest.raises(SystemExit):
        bench.chosen_configs(bench.parse_args(["--only", "fp32"]))
