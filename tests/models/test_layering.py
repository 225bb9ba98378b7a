"""Stage 3: FBDD + HFA, the losses, the zero-shot fallback and multi-phrase peeling, on tiny models."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from layering_protocol import Generate, Split
from layeringdiff.examples import synthetic_composite
from layeringdiff.models import ModelConfig, ModelManager
from layeringdiff.pipeline import layering_method, run_job
from layeringdiff.progress import no_progress
from layeringdiff.stages.generate import GenerateParams, generate_composite
from layeringdiff.stages.layering import (
    FBDD,
    FBDD_IN_CHANNELS,
    HFA,
    copy_through,
    fbdd_input,
    fbdd_method,
    fbdd_unet_from_inpainting,
    widen_conv_in,
)
from layeringdiff.train.losses import ban_loss, fan_loss, haar_dwt, high_frequency_loss
from layeringdiff.wire import from_array, to_array

from tests.models.runtime import model_config

from .tiny import sd2_inpaint_pipeline, sd2_unet

LOOSE = {"box_threshold": 0.0, "text_threshold": 0.0}


# ---- conv_in widening -------------------------------------------------------------------------------
def test_widened_conv_in_keeps_the_inpainting_behaviour():
    torch.manual_seed(0)
    old = sd2_unet().conv_in
    new = widen_conv_in(old)
    assert (new.in_channels, new.out_channels) == (FBDD_IN_CHANNELS, old.out_channels)
    latent, masked = torch.randn(2, 4, 6, 5), torch.randn(2, 4, 6, 5)
    with torch.no_grad():
        # new alpha channels zero == the old mask channel zero
        want = old(torch.cat([latent, torch.zeros(2, 1, 6, 5), masked], 1))
        got = new(torch.cat([latent, masked, torch.zeros(2, 64, 6, 5)], 1))
        assert torch.allclose(got, want, atol=1e-5)
        # an alpha constant over each 8x8 block acts as the old mask
        mask = (torch.rand(2, 1, 6, 5) > 0.5).float()
        alpha = F.interpolate(mask, scale_factor=8, mode="nearest")
        want = old(torch.cat([latent, mask, masked], 1))
        got = new(fbdd_input(latent, masked, alpha))
        assert torch.allclose(got, want, atol=1e-5)


def test_fbdd_unet_takes_72_channels():
    unet = fbdd_unet_from_inpainting(sd2_unet())
    assert unet.config.in_channels == 72
    x = fbdd_input(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.rand(1, 1, 64, 64))
    assert x.shape == (1, 72, 8, 8)
    out = unet(x, 10, encoder_hidden_states=torch.randn(1, 77, 32)).sample
    assert out.shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="9 channels"):
        widen_conv_in(unet.conv_in)


def test_widened_conv_in_stays_on_the_device_and_dtype_of_the_old_one():
    old = torch.nn.Conv2d(9, 16, 3, padding=1, device="meta", dtype=torch.bfloat16)
    new = widen_conv_in(old)
    assert new.weight.device.type == "meta" and new.weight.dtype == torch.bfloat16
    assert new.bias.device.type == "meta" and new.in_channels == FBDD_IN_CHANNELS


# ---- the noise schedule ------------------------------------------------------------------------------
# As stabilityai/stable-diffusion-2-inpainting ships scheduler/scheduler_config.json: PNDM, epsilon by default,
# and no clip_sample, prediction_type or timestep_spacing keys (diffusers fills in its own defaults for those).
SD2_INPAINTING_SCHEDULER = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
                            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
                            "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
                            "trained_betas": None}
EXPLICIT = {"prediction_type": "v_prediction", "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
            "timestep_spacing": "leading", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
            "num_train_timesteps": 1000, "thresholding": False}


def sd2_inpainting_like_pipeline(tmp_path):
    """The tiny inpainting pipeline with SD2-inpainting's real scheduler config, loaded as diffusers loads it."""
    import json

    from diffusers import PNDMScheduler

    folder = tmp_path / "scheduler"
    folder.mkdir()
    (folder / "scheduler_config.json").write_text(json.dumps(SD2_INPAINTING_SCHEDULER))
    pipe = sd2_inpaint_pipeline()
    pipe.scheduler = PNDMScheduler.from_pretrained(folder)
    assert pipe.scheduler.config.prediction_type == "epsilon"  # what the hub model predicts
    return pipe


def test_sampler_and_training_schedulers_set_every_field_from_an_sd2_inpainting_config(tmp_path):
    from diffusers import DDIMScheduler, DDPMScheduler
    from layeringdiff.stages.layering import fbdd_scheduler

    torch.manual_seed(0)
    fbdd = FBDD.from_inpainting(sd2_inpainting_like_pipeline(tmp_path))
    assert isinstance(fbdd.scheduler, DDIMScheduler)
    assert {k: fbdd.scheduler.config[k] for k in EXPLICIT} == EXPLICIT
    fbdd.save(tmp_path / "fbdd")  # and after a save and load
    loaded = FBDD.from_folder(tmp_path / "fbdd")
    assert {k: loaded.scheduler.config[k] for k in EXPLICIT} == EXPLICIT
    training = fbdd_scheduler(fbdd.scheduler.config, DDPMScheduler)
    assert isinstance(training, DDPMScheduler)
    assert {k: training.config[k] for k in EXPLICIT if k != "set_alpha_to_one"} == {
        k: v for k, v in EXPLICIT.items() if k != "set_alpha_to_one"}
    # a predicted clean latent far outside +-1 is not clipped by the sampler
    sched = fbdd.scheduler
    sched.set_timesteps(5)
    t = sched.timesteps[-1]
    x0 = torch.full((1, 4, 2, 2), 3.0)
    noise = torch.zeros_like(x0)
    sample = sched.add_noise(x0, noise, t[None])
    v = sched.get_velocity(x0, noise, t[None])
    out = sched.step(v, t, sample)
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-4)
    # the same v target in training
    assert torch.allclose(training.get_velocity(x0, noise, t[None]), v)


# ---- FBDD sampling ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fbdd():
    torch.manual_seed(1)
    return FBDD.from_inpainting(sd2_inpaint_pipeline())


def test_v_prediction_sampling_is_seeded(fbdd):
    assert fbdd.scheduler.config.prediction_type == "v_prediction"
    assert fbdd.null_embedding.shape == (1, 77, 32)
    comp, alpha, _, _ = synthetic_composite(44, 60, seed=1)  # not a multiple of 8: padded, then cropped
    seen = []
    fg, bg = fbdd.decompose(comp, alpha, steps=3, seed=5, progress=lambda s, f: seen.append((s, f)))
    fg2, bg2 = fbdd.decompose(comp, alpha, steps=3, seed=5)
    fg3, _ = fbdd.decompose(comp, alpha, steps=3, seed=6)
    assert fg.shape == bg.shape == (44, 60, 3) and 0 <= fg.min() and fg.max() <= 1
    assert np.array_equal(fg, fg2) and np.array_equal(bg, bg2) and not np.array_equal(fg, fg3)
    assert [s for s, _ in seen] == ["fbdd foreground"] * 3 + ["fbdd background"] * 3
    assert seen[-1][1] == 1.0


def test_fbdd_save_and_load_round_trip(fbdd, tmp_path):
    fbdd.save(tmp_path / "fbdd")
    loaded = FBDD.from_folder(tmp_path / "fbdd")
    comp, alpha, _, _ = synthetic_composite(32, 32, seed=2)
    a = fbdd.decompose(comp, alpha, steps=2, seed=0)
    b = loaded.decompose(comp, alpha, steps=2, seed=0)
    assert np.allclose(a[0], b[0], atol=1e-5) and np.allclose(a[1], b[1], atol=1e-5)


# ---- HFA and copy-through -------------------------------------------------------------------------------
def test_untrained_hfa_is_the_identity_and_round_trips(tmp_path):
    torch.manual_seed(0)
    hfa = HFA.new(base_channels=8, levels=2)
    rng = np.random.default_rng(0)
    comp, fg, bg = (rng.uniform(0, 1, (30, 22, 3)).astype(np.float32) for _ in range(3))
    alpha = rng.uniform(0, 1, (30, 22)).astype(np.float32)
    f, b = hfa.refine(comp, alpha, fg, bg)
    assert f.shape == (30, 22, 3) and np.allclose(f, fg, atol=1e-6) and np.allclose(b, bg, atol=1e-6)
    with torch.no_grad():  # a trained net: give the output layer weights, then save/load keeps them
        hfa.ban.out.weight.normal_()
    hfa.save(tmp_path / "hfa")
    again = HFA.from_folder(tmp_path / "hfa")
    assert np.allclose(again.refine(comp, alpha, fg, bg)[1], hfa.refine(comp, alpha, fg, bg)[1], atol=1e-6)


def test_copy_through_is_exact():
    rng = np.random.default_rng(1)
    comp, fg, bg = (rng.uniform(0, 1, (8, 8, 3)).astype(np.float32) for _ in range(3))
    alpha = np.full((8, 8), 0.5, np.float32)
    alpha[:2] = 1.0
    alpha[-2:] = 0.0
    f, b = copy_through(comp, alpha, fg, bg)
    assert np.array_equal(f[:2], comp[:2]) and np.array_equal(b[-2:], comp[-2:])
    assert np.array_equal(f[2:], fg[2:]) and np.array_equal(b[:-2], bg[:-2])


# ---- losses ---------------------------------------------------------------------------------------------
def test_haar_of_a_single_pixel():
    x = torch.zeros(1, 1, 2, 2)
    x[..., 0, 0] = 1.0
    ll, h, v, d = haar_dwt(x)
    assert [float(t) for t in (ll, h, v, d)] == [0.5, 0.5, 0.5, 0.5]


def test_high_frequency_loss_hand_computed():
    # one pixel off by delta in an 8x8 image: each of the scales 0, 1, 2 contributes 3 (delta / 2^(s+1))^2
    # over 16, 4 and 1 pixels = 3 delta^2 / 64, so L_H = 9 delta^2 / 64
    target = torch.rand(1, 1, 8, 8)
    pred = target.clone()
    pred[0, 0, 0, 0] += 2.0
    assert float(high_frequency_loss(pred, target)) == pytest.approx(9 * 4 / 64, rel=1e-5)
    assert float(high_frequency_loss(target, target)) == 0.0
    assert float(fan_loss(pred, target)) == pytest.approx(4 / 64, rel=1e-5)
    assert float(ban_loss(pred, target, target)) == pytest.approx(4 / 64 + 0.2 * 9 * 4 / 64, rel=1e-5)
    with pytest.raises(ValueError, match="divisible by 8"):
        high_frequency_loss(torch.zeros(1, 1, 12, 12), torch.zeros(1, 1, 12, 12))
    # N_s counts pixels, as Eq. 3 says: the same error in each of three channels triples L_H, while the MSE term,
    # a mean over values, stays as it was (losses.py says why this reading)
    rgb_target = target.expand(1, 3, 8, 8).clone()
    rgb_pred = rgb_target.clone()
    rgb_pred[0, :, 0, 0] += 2.0
    assert float(high_frequency_loss(rgb_pred, rgb_target)) == pytest.approx(3 * 9 * 4 / 64, rel=1e-5)
    assert float(fan_loss(rgb_pred, rgb_target)) == pytest.approx(4 / 64, rel=1e-5)


def test_ban_loss_takes_high_frequencies_from_the_fbdd_output_not_the_truth():
    """Eq. 2: L_BAN = MSE(B, B_gt) + 0.2 L_H(B, B^), B^ the decoded background, here != B_gt."""
    target = torch.zeros(1, 1, 8, 8)
    pred = target.clone()
    pred[0, 0, 0, 0] = 2.0  # MSE(B, B_gt) = 4 / 64
    decoded = torch.full((1, 1, 8, 8), 0.25)  # a colour shift alone has no high frequencies
    decoded[0, 0, 5, 5] += 2.0
    # B - B^: +2 at (0, 0), -2 at (5, 5), -0.25 everywhere. Scales 0 and 1 see each delta in its own block:
    # 2 x 3 * 4 / 64 each; scale 2 sees LL1 values +0.5 and -0.5 on a diagonal: H = V = 0.5, D = 0 -> 0.5.
    assert float(high_frequency_loss(pred, decoded)) == pytest.approx(12 * 4 / 64 + 0.5, rel=1e-5)
    assert float(ban_loss(pred, target, decoded)) == pytest.approx(4 / 64 + 0.2 * (48 / 64 + 0.5), rel=1e-5)
    # B^ with the same details as B: only the MSE term is left, whatever B^'s colour
    assert float(ban_loss(pred, target, pred + 0.3)) == pytest.approx(4 / 64, rel=1e-5)


def test_hfa_batch_loss_uses_the_decoded_background_for_l_h():
    from layeringdiff.train.hfa import hfa_losses

    torch.manual_seed(0)
    hfa = HFA.new(base_channels=8, levels=2)  # untrained: each net returns its decoded input
    b_gt = torch.rand(1, 16, 16, 3)
    decoded_bg = b_gt.clone()
    decoded_bg[0, 3, 3] += 0.5  # B^ differs from B_gt; BAN's output is B^, so L_H(B, B^) = 0
    batch = {"composite": torch.rand(1, 16, 16, 3), "alpha": torch.rand(1, 16, 16),
             "foreground": torch.rand(1, 16, 16, 3), "background": b_gt, "decoded_fg": torch.rand(1, 16, 16, 3),
             "decoded_bg": decoded_bg.clamp(0, 1)}
    from layeringdiff.train.fbdd import _batch_tensors

    _, parts = hfa_losses(hfa.fan, hfa.ban, _batch_tensors(batch, "cpu"))
    want = float(((batch["decoded_bg"] - b_gt) ** 2).mean())
    assert float(parts["loss_ban"]) == pytest.approx(want, rel=1e-5)


# ---- which layering runs, and peeling ---------------------------------------------------------------------
def test_layering_path_follows_the_weights_present(tiny_layering_models, tiny_models, monkeypatch):
    all_root, _ = tiny_layering_models
    stage12_root, _ = tiny_models

    def chosen(manager, options):
        method = layering_method(manager, options, "", 0)
        return "classical" if method is None else method.name

    everything = ModelManager(ModelConfig(device="cpu").with_models_dir(str(all_root)))
    assert chosen(everything, {}) == "classical"  # no GPU: auto stays fast
    monkeypatch.setattr(ModelManager, "accelerated", lambda self: True)  # as on a GPU machine
    assert chosen(ModelManager(ModelConfig().with_models_dir(str(stage12_root))), {}) == "classical"
    only_sd2 = ModelConfig(device="cpu", paths={"sd2-inpaint": str(all_root / "sd2-inpaint")})
    assert chosen(ModelManager(only_sd2), {}) == "zero-shot (sd2-inpaint)"
    assert chosen(everything, {}) == "fbdd+hfa"
    assert chosen(everything, {"layering": "classical"}) == "classical"


@pytest.mark.parametrize("choice,method", [("fbdd", "fbdd+hfa"), ("zero-shot", "zero-shot (sd2-inpaint)")])
def test_split_with_each_layering_path_recomposites(tiny_layering_models, choice, method):
    root, _ = tiny_layering_models
    manager = ModelManager(model_config().with_models_dir(str(root)))
    comp, alpha, _, _ = synthetic_composite(48, 64, seed=3)
    image = from_array(np.dstack([comp, np.ones(alpha.shape, np.float32)]), "f32", "RGBA")
    mask = from_array((alpha > 0.5).astype(np.float32), "u8", "L")
    out = run_job(Split(image, mask=mask, options={"layering": choice, "layering_steps": 2}), no_progress, manager)
    assert out.info["method"] == method and out.info["recomposition_error"] < 1e-4
    fg, bg = to_array(out.foreground), to_array(out.background)
    a = fg[..., 3:4]
    visible = a[..., 0] < 1
    assert np.abs(a * fg[..., :3] + (1 - a) * bg[..., :3] - comp)[visible].max() < 1e-4


def test_vae_tiling_reaches_the_fbdd_vae_when_configured(tiny_layering_models):
    root, _ = tiny_layering_models
    tiled = ModelManager(model_config(vae_tiling=True).with_models_dir(str(root)))
    plain = ModelManager(model_config().with_models_dir(str(root)))
    assert tiled.layering()[0].vae.use_tiling and not plain.layering()[0].vae.use_tiling


def test_evaluation_gives_every_method_vitmattes_alpha(tiny_models):
    from layeringdiff.evaluate import evaluate, germer, vitmatte_alpha
    from layeringdiff.train.dataset import DatasetConfig, LayerDataset

    root, _ = tiny_models
    manager = ModelManager(model_config().with_models_dir(str(root)))
    alphas = []

    def method(comp, alpha):
        alphas.append(alpha)
        return germer(comp, alpha)

    ds = LayerDataset(DatasetConfig(size=64, length=2, seed=0, split="test"))
    result = evaluate(ds, {"germer": method}, alpha_fn=vitmatte_alpha(*manager.vitmatte()),
                      alpha_source="ViTMatte alpha", lpips=None)
    assert result["alpha"] == "ViTMatte alpha" and np.isfinite(result["methods"]["germer"]["fg_MAD"])
    # the alpha of the composite's own trimap (evaluate draws it seeded): its 0 and 1 kept, ViTMatte's in between
    from layeringdiff.evaluate import trimap_like_xu

    trimap = trimap_like_xu(ds[0]["alpha"], np.random.default_rng(0))
    assert len(alphas) == 2 and not np.array_equal(alphas[0], ds[0]["alpha"])
    assert np.all(alphas[0][trimap == 1.0] == 1.0) and np.all(alphas[0][trimap == 0.0] == 0.0)


def test_layering_size_option_is_checked_before_any_model_loads(tiny_models):
    from layeringdiff.errors import InputError

    root, _ = tiny_models
    manager = ModelManager(ModelConfig().with_models_dir(str(root)))
    for bad, words in ((100, "multiple of 8"), (32, "64..4096"), ("big", "integer")):
        with pytest.raises(InputError, match=words):
            layering_method(manager, {"layering": "fbdd", "layering_size": bad}, "", 0)


def test_missing_fbdd_weights_named_when_asked_for(tiny_models):
    root, _ = tiny_models
    manager = ModelManager(ModelConfig().with_models_dir(str(root)))
    with pytest.raises(Exception, match="no public weights"):
        layering_method(manager, {"layering": "fbdd"}, "", 0)


def test_prompt_with_two_phrases_peels_three_layers(tiny_layering_models):
    root, _ = tiny_layering_models
    manager = ModelManager(model_config().with_models_dir(str(root)))
    message = Generate("[a cat] and [a dog] on a sofa", width=64, height=64, steps=2, seed=3,
                       options={**LOOSE, "layering": "fbdd", "layering_steps": 2, "dtype": "f32"})
    out = run_job(message, no_progress, manager)
    assert out.info["phrases"] == ["a cat", "a dog"] and len(out.behind) == 1
    assert out.info["method"] == "fbdd+hfa" and out.info["stack_error"] < 1e-4
    front, middle, back = to_array(out.foreground), to_array(out.behind[0]), to_array(out.background)
    assert front.shape == middle.shape == back.shape == (64, 64, 4)
    stacked = back[..., :3]
    for layer in (middle, front):
        stacked = layer[..., 3:] * layer[..., :3] + (1 - layer[..., 3:]) * stacked
    # generation is seeded: regenerate the composite and compare the recomposited stack with it
    composite = generate_composite(manager.sdxl(), GenerateParams("a cat and a dog on a sofa", 64, 64, 2, seed=3))
    assert np.abs(stacked - composite).max() < 1e-4


def u8(x):
    return np.round(np.clip(x, 0, 1) * 255) / 255


def test_the_foreground_decoder_shapes_the_final_foreground_and_the_layers_still_recomposite(fbdd):
    """The least-change composition step keeps what FBDD's foreground UNet made: another foreground output gives
    another final F, and the stored 8-bit layers still recomposite to the composite within 1/255."""
    import copy

    from layeringdiff.stages.layering import fbdd_method
    from layeringdiff.stages.split import SplitOptions, split_layer

    comp, alpha, _, _ = synthetic_composite(72, 88, seed=4)
    comp, alpha = u8(comp), u8(alpha)
    other_fg = copy.deepcopy(fbdd.unet_fg)
    with torch.no_grad():
        other_fg.conv_out.bias += 0.7
    other = FBDD(other_fg, fbdd.unet_bg, fbdd.vae, fbdd.scheduler, fbdd.null_embedding)
    torch.manual_seed(0)
    hfa = HFA.new(base_channels=8, levels=2)
    results = [split_layer(comp, mask=alpha, options=SplitOptions(alpha_mode="mask", quantize=255),
                           method=fbdd_method(model, hfa, steps=2, seed=0, size=64)) for model in (fbdd, other)]
    mixed = (alpha > 0.05) & (alpha < 0.95)
    f1, f2 = (r.foreground[..., :3] for r in results)
    assert np.abs(f1 - f2)[mixed].mean() > 0.01
    for r in results:
        assert r.info["composition"] == "least-change" and 0 <= r.info["composition_fallback"] < 0.5
        a = u8(r.foreground[..., 3:4])
        visible = a[..., 0] < 1
        stored = a * u8(r.foreground[..., :3]) + (1 - a) * u8(r.background[..., :3])
        assert np.abs(stored - comp)[visible].max() <= 1 / 255 + 1e-6
        assert np.array_equal(r.foreground[..., :3][alpha >= 1], comp[alpha >= 1])  # copy-through
        assert np.array_equal(r.background[..., :3][alpha <= 0], comp[alpha <= 0])


def test_fbdd_runs_at_its_working_size_whatever_the_crop():
    from layeringdiff.stages.layering import decompose_at_working_size, tile_starts, working_shape

    assert working_shape(4096, 4096, 512) == (512, 512) and working_shape(100, 400, 512) == (256, 1024)
    assert working_shape(3000, 1000, 512) == (888, 296)
    assert tile_starts(500, 512, 64) == [0] and tile_starts(900, 512, 64) == [0, 388]
    starts = tile_starts(4096, 512, 64)
    assert starts[0] == 0 and starts[-1] == 4096 - 512
    assert all(b - a <= 512 - 64 for a, b in zip(starts, starts[1:], strict=False))

    seen = []

    class Recorder:
        size = 64

        def decompose(self, rgb, alpha, steps, seed, progress):
            seen.append(alpha.shape)
            return rgb, rgb

    comp, alpha, _, _ = synthetic_composite(300, 200, seed=1)
    fg, bg = decompose_at_working_size(Recorder(), comp, alpha, 2, 0)
    assert seen == [(80, 56)] and fg.shape == bg.shape == (300, 200, 3)
    with pytest.raises(ValueError, match="multiple of 8"):
        decompose_at_working_size(Recorder(), comp, alpha, 2, 0, size=100)


def test_hfa_in_tiles_matches_hfa_on_the_whole_where_it_is_local():
    """An untrained HFA is the identity: tiles blend back exactly; with weights, tiles stay close to the whole
    (GroupNorm sees each tile's own statistics, as in training on 512 px samples)."""
    from layeringdiff.stages.layering import refine_tiled

    torch.manual_seed(0)
    hfa = HFA.new(base_channels=8, levels=2)
    rng = np.random.default_rng(0)
    comp, fg, bg = (rng.uniform(0, 1, (150, 130, 3)).astype(np.float32) for _ in range(3))
    alpha = rng.uniform(0, 1, (150, 130)).astype(np.float32)
    f, b = refine_tiled(hfa, comp, alpha, fg, bg, tile=64, overlap=16)
    assert np.allclose(f, fg, atol=1e-5) and np.allclose(b, bg, atol=1e-5)
    with torch.no_grad():
        hfa.fan.out.weight.normal_(0, 0.01)
    f_tiled, _ = refine_tiled(hfa, comp, alpha, fg, bg, tile=96, overlap=32)
    f_whole, _ = hfa.refine(comp, alpha, fg, bg)
    assert np.abs(f_tiled - f_whole).mean() < 0.25 * np.abs(f_whole - fg).mean()


def test_a_4096_canvas_splits_with_fbdd_in_bounded_memory():
    """FBDD at its working size on the object's crop and HFA in tiles: a 4096x4096 split in a fresh process stays
    within a fixed memory bound (at the canvas's native size the diffusion models alone would need tens of GB)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_layering.py"
    proc = subprocess.run([sys.executable, str(script), "--one", "4096", "--radius", "0.15", "--steps", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["stored_error_255"] <= 1.0 + 1e-3
    x0, y0, x1, y1 = r["crop"]
    assert x1 - x0 > 2000 and y1 - y0 > 2000  # the crop is big: the working size does the bounding
    # measured 2.3 GB with the object covering the canvas (benchmarks/bench_layering.py); the canvas's own float32
    # arrays (image, two RGBA layers, alpha) are 0.8 GB of it
    assert r["peak_rss_mb"] < 3500, r


def test_fbdd_cancels_between_steps(fbdd):
    from layeringdiff.errors import JobCancelled

    calls = []

    def progress(stage, fraction):
        calls.append(stage)
        if len(calls) == 2:
            raise JobCancelled()

    comp, alpha, _, _ = synthetic_composite(16, 16, seed=0)
    with pytest.raises(JobCancelled):
        fbdd.decompose(comp, alpha, steps=5, progress=progress)
    assert calls == ["fbdd foreground", "fbdd foreground"]


def test_hfa_learns_on_the_very_inputs_a_split_gives_it(fbdd):
    """HFA's training layers (train/hfa.decoded_layers) are what a split with FBDD + HFA hands HFA for the same
    image and alpha: the object's crop with FBDD's context, FBDD at its working size, the same resampling back;
    outside the crop, the composite (as the split leaves it there)."""
    from layeringdiff.options import SplitOptions
    from layeringdiff.stages.layering import fbdd_method
    from layeringdiff.stages.split import split_layer
    from layeringdiff.train.hfa import decoded_layers

    h, w = 240, 300
    comp, _, _, _ = synthetic_composite(h, w, seed=7)
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip(22 - np.hypot(yy - 90, xx - 190), 0, 1).astype(np.float32)  # a small soft disc: a real crop
    seen = {}
    hfa = HFA.new(base_channels=8, levels=2)

    def refine(composite, a, fg, bg):
        seen.update(composite=composite.copy(), alpha=a.copy(), fg=fg.copy(), bg=bg.copy())
        return fg, bg

    hfa.refine = refine
    image = np.dstack([comp, np.ones((h, w), np.float32)])
    result = split_layer(image, mask=alpha, options=SplitOptions(alpha_mode="mask", quantize=None),
                         method=fbdd_method(fbdd, hfa, steps=2, seed=5))
    x0, y0, x1, y1 = result.info["crop"]
    assert (x1 - x0) * (y1 - y0) < 0.6 * h * w  # the split worked on a crop, not the canvas
    fg, bg = decoded_layers({"composite": comp, "alpha": alpha}, fbdd, 2, 5)
    inside = (slice(y0, y1), slice(x0, x1))
    assert np.array_equal(seen["alpha"], alpha[inside]) and np.array_equal(seen["composite"], comp[inside])
    assert np.array_equal(seen["fg"], fg[inside]) and np.array_equal(seen["bg"], bg[inside])
    outside = np.ones((h, w), bool)
    outside[inside] = False
    assert np.array_equal(fg[outside], comp[outside]) and np.array_equal(bg[outside], comp[outside])
    # and not what FBDD makes of the whole sample at its native size (the training input before this change)
    whole_fg, _ = fbdd.decompose(comp, alpha, 2, 5)
    assert not np.allclose(whole_fg[inside], fg[inside], atol=1e-3)


def test_table_4_has_ours_with_the_papers_composition_and_with_the_least_change_step(fbdd, monkeypatch):
    from layeringdiff.evaluate import OURS_COMPOSITION, PAPER_COMPOSITION, fbdd_hfa_methods
    from layeringdiff.imaging.compose import LEAST_CHANGE, compose_layers

    calls = []
    real = FBDD.decompose
    monkeypatch.setattr(FBDD, "decompose", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    comp, alpha, _, _ = synthetic_composite(64, 64, seed=2)
    methods = fbdd_hfa_methods(fbdd, HFA.new(base_channels=8, levels=2), 2, 0)
    assert list(methods) == [PAPER_COMPOSITION, OURS_COMPOSITION]
    paper_f, paper_b = methods[PAPER_COMPOSITION](comp, alpha)
    ours_f, ours_b = methods[OURS_COMPOSITION](comp, alpha)
    assert len(calls) == 1  # one FBDD run shared by both rows
    expected_f, expected_b, _ = compose_layers(comp, alpha, paper_f, paper_b, LEAST_CHANGE)
    assert np.array_equal(ours_f, expected_f) and np.array_equal(ours_b, expected_b)
    a = alpha[..., None]
    assert np.abs(a * ours_f + (1 - a) * ours_b - comp).max() < 1e-4  # ours recomposes the composite
    assert np.abs(a * paper_f + (1 - a) * paper_b - comp).max() > 1e-2  # the untrained FBDD's layers as they come
    methods[PAPER_COMPOSITION](comp.copy(), alpha)
    assert len(calls) == 2  # another sample: run again


def test_table_4_runs_ours_as_a_split_does_on_the_objects_crop(fbdd):
    """Table 4's "Ours" is the split's layering: FBDD and HFA on the object's crop (what HFA is trained on), the
    composite outside it; the least-change row is what split_layer makes from the same alpha."""
    from layeringdiff.evaluate import OURS_COMPOSITION, PAPER_COMPOSITION, fbdd_hfa_methods
    from layeringdiff.options import SplitOptions
    from layeringdiff.stages.layering import decompose_at_working_size
    from layeringdiff.stages.split import split_layer

    small, small_alpha, _, _ = synthetic_composite(32, 32, seed=3)
    comp = np.full((160, 160, 3), 0.3, np.float32)  # a small object in a corner of a bigger canvas
    alpha = np.zeros((160, 160), np.float32)
    comp[4:36, 124:156], alpha[4:36, 124:156] = small, small_alpha
    hfa = HFA.new(base_channels=8, levels=2)
    methods = fbdd_hfa_methods(fbdd, hfa, 2, 0)
    paper_f, paper_b = methods[PAPER_COMPOSITION](comp, alpha)
    far = (slice(110, 160), slice(0, 50))  # outside the crop (64 px around the object): the composite
    assert np.array_equal(paper_f[far], comp[far]) and np.array_equal(paper_b[far], comp[far])
    whole_f, _ = decompose_at_working_size(fbdd, comp, alpha, 2, 0)  # the whole canvas at the working size
    assert np.abs(paper_f - whole_f)[alpha > 0].mean() > 1e-3
    ours_f, ours_b = methods[OURS_COMPOSITION](comp, alpha)
    split = split_layer(comp, mask=alpha, options=SplitOptions(alpha_mode="mask"),
                        method=fbdd_method(fbdd, hfa, 2, 0))
    assert np.abs(split.foreground[..., :3] - ours_f).max() < 1e-5
    assert np.abs(split.background[..., :3] - ours_b).max() < 1e-5
