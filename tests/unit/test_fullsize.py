"""benchmarks/fullsize.py: every registry model built at its published size on the meta device (no weights, no
memory), its parameter count against the one its publishers state, and the weight-memory table's sums.

Each model builds in under 0.3 s on two cores (the SDXL UNet about 0.1 s, Grounding DINO 0.26 s); the first
build pays about 3 s for diffusers' and transformers' lazy imports: some 3.5 s in all, built once per module."""

import math

import pytest

pytest.importorskip("torch", reason="the ml extra is not installed")
pytest.importorskip("diffusers", reason="the ml extra is not installed")
pytest.importorskip("transformers", reason="the ml extra is not installed")
from layeringdiff.models import REGISTRY  # noqa: E402

from benchmarks import fullsize  # noqa: E402
from benchmarks.fullsize import COMBINED, MODELS, PEAKS, STEPS, Published  # noqa: E402

FIGURES = [(key, i) for key, model in MODELS.items() for i in range(len(model.published))]


@pytest.fixture(scope="module")
def built() -> dict:
    """Each model built once for the whole module (the builds are cheap, the imports behind them are not)."""
    return {key: model.build() for key, model in MODELS.items()}


def test_every_registry_model_is_listed():
    listed = {name for model in MODELS.values() for name in model.registry.split(", ")} | {"lama"}
    assert listed == set(REGISTRY)


@pytest.mark.parametrize("key", list(MODELS))
def test_built_on_meta_at_the_recorded_size(key, built):
    model = built[key]
    assert [n for n, p in model.named_parameters() if p.device.type != "meta"] == []
    assert [n for n, b in model.named_buffers() if b.device.type != "meta"] == []
    assert fullsize.params_of(model) == MODELS[key].counted
    assert type(model).__name__ == MODELS[key].cls.rsplit(".", 1)[1]


def check(pub: Published, ours: int) -> None:
    """A figure against our count of what it covers: within 1%, or for a figure of 2 significant digits or fewer its
    rounding of our (exact, recorded) count; a figure marked as not agreeing must still not agree."""
    quantity = pub.quantity(ours)
    rounds = math.isclose(fullsize.round_sig(quantity, pub.digits), pub.value, rel_tol=1e-9)
    if not pub.agrees:
        assert not rounds and abs(quantity / pub.value - 1) > 0.01, f"{pub.figure} now agrees: update its note"
    elif pub.digits <= 2:
        assert rounds, f"{ours:,} does not round to {pub.figure}"
    else:
        assert abs(quantity / pub.value - 1) <= 0.01, f"{ours:,} is not within 1% of {pub.figure}"


@pytest.mark.parametrize(("key", "index"), FIGURES, ids=[f"{k}-{i}" for k, i in FIGURES])
def test_published_figures(key, index, built):
    pub = MODELS[key].published[index]
    check(pub, fullsize.params_of(built[key], pub.parts))


@pytest.mark.parametrize("what", list(COMBINED))
def test_combined_published_figures(what, built):
    names, pub = COMBINED[what]
    check(pub, sum(fullsize.params_of(built[n]) for n in names))


def test_the_sam_image_encoder_is_the_papers_loose_figure(built):
    assert fullsize.params_of(built["sam"], ("vision_encoder",)) == 89_670_912  # the count SAM_NOTE states


def test_rounding():
    assert fullsize.round_sig(2_567_463_684, 2) == 2.6e9
    assert fullsize.round_sig(89_670_912, 2) == 90e6
    assert fullsize.round_sig(4_064_816, 1) == 4e6


@pytest.mark.parametrize("key", ["sdxl-unet", "sdxl-vae", "controlnet", "sd2-inpaint-unet", "sd2-vae", "fbdd-unet"])
def test_diffusers_models_took_every_config_field(key, built):
    """from_config ignores a field it does not know: a misspelt one would pass unnoticed."""
    config = getattr(fullsize, MODELS[key].config)
    got = {k: built[key].config[k] for k in config}
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in got.items()} == config


@pytest.mark.parametrize("key", ["sdxl-text-encoder", "sdxl-text-encoder-2", "sd2-text-encoder"])
def test_text_encoders_took_every_config_field(key, built):
    config = getattr(fullsize, MODELS[key].config)
    assert {k: getattr(built[key].config, k) for k in config} == config


def test_fbdd_is_sd2_inpainting_widened_to_72_channels(built):
    from layeringdiff.stages.layering import FBDD_IN_CHANNELS

    unet = built["fbdd-unet"]
    assert unet.config.in_channels == unet.conv_in.in_channels == FBDD_IN_CHANNELS == 72
    widened = (FBDD_IN_CHANNELS - fullsize.SD2_INPAINT_UNET["in_channels"]) * 320 * 3 * 3
    assert MODELS["fbdd-unet"].counted == MODELS["sd2-inpaint-unet"].counted + widened
    # the config written out builds the same model as the project's own widening
    direct = fullsize._diffusers("UNet2DConditionModel", fullsize.FBDD_UNET)
    assert fullsize.params_of(direct) == fullsize.params_of(unet)


def test_hfa_at_the_size_training_makes(built):
    assert fullsize.hfa_size() == (32, 3)  # what HFA_NOTE says
    assert fullsize.params_of(built["fan"]) == fullsize.params_of(built["ban"])


def test_lama_is_listed_at_its_published_size():
    spec = REGISTRY["lama"]
    assert "lama_fp32.onnx" in spec.files
    assert abs(spec.size_gb * 1e9 / fullsize.LAMA_ONNX_BYTES - 1) < 0.02
    assert abs(fullsize.LAMA_ONNX_BYTES / 4 / fullsize.LAMA_PUBLISHED_PARAMS - 1) < 0.03  # the file is its weights


def test_table_totals_add_up():
    fps = fullsize.footprints()
    assert set(fps) == set(MODELS)
    for key, fp in fps.items():
        assert fp.params == MODELS[key].counted
        assert fp.nbytes("fp16") == fp.nbytes("bf16")
        assert fp.nbytes("fp32") - 2 * fp.nbytes("fp16") == -fp.other_buffer_bytes
    for names in STEPS.values():
        for dtype in ("fp32", "fp16", "bf16"):
            assert fullsize.step_bytes(names, dtype, fps) == sum(fps[n].nbytes(dtype) for n in names)
        assert fullsize.step_bytes(names, "as loaded", fps) == sum(fps[n].nbytes(MODELS[n].loaded) for n in names)
    generate_split = PEAKS["Generate + split, 1024 x 1024"]
    for dtype in ("fp32", "fp16", "as loaded"):
        resident = fullsize.peak_bytes(generate_split, dtype, fps, offload=False)
        assert resident == (fullsize.step_bytes(STEPS["Generate"], dtype, fps)
                            + fullsize.step_bytes(STEPS["Phrase split"], dtype, fps))
        offloaded = fullsize.peak_bytes(generate_split, dtype, fps, offload=True)
        assert offloaded == fullsize.step_bytes(("sdxl-unet",), dtype, fps) < resident  # the UNet is the largest
    # two FBDD UNets, each its own weights
    assert fullsize.step_bytes(STEPS["Layering (FBDD + HFA)"], "fp16", fps) > 2 * fps["fbdd-unet"].nbytes("fp16")


def test_markdown_lists_every_model_and_total():
    fps = fullsize.footprints()
    text = fullsize.markdown()
    for key in [*MODELS, "lama", *STEPS, *PEAKS]:
        assert f"| {key} |" in text
    for names in STEPS.values():
        assert fullsize.gib(fullsize.step_bytes(names, "fp16", fps)) in text


def test_the_registrys_gpu_figures_are_this_files():
    """ModelSpec.gpu_gib, which the docker's Models list shows and warns by, is the weight memory counted here."""
    fps = fullsize.footprints()
    parts = {"sdxl": STEPS["Generate"], "controlnet-canny": ("controlnet",), "controlnet-depth": ("controlnet",),
             "grounding-dino": ("grounding-dino",), "sam": ("sam",), "vitmatte": ("vitmatte",),
             "sd2-inpaint": STEPS["Layering zero-shot (SD2 inpainting)"], "layering": STEPS["Layering (FBDD + HFA)"],
             "depth-anything": ("depth-anything",)}
    for key, names in parts.items():
        assert REGISTRY[key].gpu_gib == pytest.approx(fullsize.step_bytes(names, "as loaded", fps) / 2**30,
                                                      abs=0.006), key
    assert REGISTRY["lama"].gpu_gib == 0 and REGISTRY["lama"].on_cpu
    # with cpu_offload a diffusers pipeline holds its largest part at a time: the UNet (a ControlNet on its own)
    largest = {"sdxl": "sdxl-unet", "sd2-inpaint": "sd2-inpaint-unet", "controlnet-canny": "controlnet",
               "controlnet-depth": "controlnet"}
    for key, spec in REGISTRY.items():
        expected = fullsize.step_bytes((largest[key],), "as loaded", fps) / 2**30 if key in largest else 0.0
        assert spec.offload_gib == pytest.approx(expected, abs=0.006), key
