"""Generate and split-by-phrase through the real backend process and the CLI, with tiny models."""

import subprocess
import sys
import time

import numpy as np
from layering_protocol import Cancel, Cancelled, Error, ErrorCode, Generate, Progress, Result, Split, SplitLayers
from layeringdiff.client import Client, result_arrays
from layeringdiff.examples import synthetic_composite
from layeringdiff.io.ora import ora_groups, read_ora
from layeringdiff.wire import from_array

from tests.conftest import BackendProcess
from tests.models.runtime import server_args

LOOSE = {"box_threshold": 0.0, "text_threshold": 0.0}


def test_generate_through_the_server(model_backend):
    with Client(model_backend.endpoint) as c:
        final, events = c.run(Generate("[a cat] on a sofa", width=64, height=48, steps=3, seed=1,
                                       options={**LOOSE, "dtype": "u8", "order": "BGRA"}), timeout=120)
        result = final.message
        assert isinstance(result, Result), result
        stages = [e.message.stage for e in events if isinstance(e.message, Progress)]
        assert "generate" in stages and "detect" in stages and "matting" in stages and "layers" in stages
        fractions = [e.message.fraction for e in events if isinstance(e.message, Progress)]
        assert fractions == sorted(fractions)
        assert (result.foreground.width, result.foreground.height, result.foreground.order) == (64, 48, "BGRA")
        arrays = result_arrays(result)
        assert arrays["alpha"].shape == (48, 64) and 0 <= arrays["alpha"].min() and arrays["alpha"].max() <= 1
        assert np.all(arrays["background"][..., 3] == 1.0)
        assert result.info["phrase"] == "a cat" and result.info["prompt"] == "a cat on a sofa"
        assert result.info["recomposition_error"] <= 1 / 255
        # the first job of this backend loads the models and says so; the next one finds them loaded
        assert {"loading sdxl", "loading grounding-dino", "loading sam", "loading vitmatte"} <= set(stages)
        _, again = c.run(Generate("[a cat] on a sofa", width=64, height=48, steps=2, seed=2,
                                  options={**LOOSE, "dtype": "u8", "order": "BGRA"}), timeout=120)
        assert not [e for e in again if isinstance(e.message, Progress) and e.message.stage.startswith("loading")]


def test_split_by_phrase_through_the_server(model_backend):
    comp, _, _, _ = synthetic_composite(80, 96, seed=4)
    image = from_array(np.dstack([comp, np.ones(comp.shape[:2], np.float32)]), "u8", "BGRA")
    with Client(model_backend.endpoint) as c:
        final, _ = c.run(Split(image, phrase="a cat", options=LOOSE), timeout=120)
        result = final.message
        assert isinstance(result, Result), result
        assert (result.foreground.width, result.foreground.height) == (96, 80)
        assert result.info["foreground"]["phrase"] == "a cat" and result.info["alpha_mode"] == "mask"


def test_split_into_layers_by_phrases_through_the_server(model_backend):
    """Phrases instead of labels: stage 2 finds each object on the whole picture, front first, and the peel gives
    one layer each (tiny random models find arbitrary regions: the stack still recomposes the layer)."""
    comp, _, _, _ = synthetic_composite(80, 96, seed=5)
    rgba = np.dstack([comp, np.ones(comp.shape[:2], np.float32)])
    with Client(model_backend.endpoint) as c:
        final, events = c.run(SplitLayers(from_array(rgba, "u8", "BGRA"), phrases=["a cat", "a vase"], options=LOOSE),
                              timeout=180)
        result = final.message
        assert isinstance(result, Result), result
        assert result.info["objects"] == [1, 2] and len(result.behind) == 1
        assert [f["phrase"] for f in result.info["foregrounds"]] == ["a cat", "a vase"]
        assert result.info["alpha_mode"] == "mask" and result.info["recomposition_error"] <= 2.5 / 255
        progress = [e.message for e in events if isinstance(e.message, Progress)]
        assert [p.stage for p in progress].count("detect") == 2  # stage 2 for each object, shown
        assert {"a cat: done", "a vase: done"} <= {p.stage for p in progress}  # each split named by its phrase
        assert [p.fraction for p in progress] == sorted(p.fraction for p in progress)
        # a wrong phrase option is refused before the job is accepted
        final, events = c.run(SplitLayers(from_array(rgba, "u8", "BGRA"), phrases=["a cat"],
                                          options={"policy": "all"}), timeout=30)
        assert isinstance(final.message, Error) and final.message.code == ErrorCode.BAD_INPUT and len(events) == 1


def test_cancel_during_generation(model_backend):
    with Client(model_backend.endpoint) as c:
        job = c.send(Generate("[a cat] on a sofa", width=64, height=64, steps=150, options=LOOSE))
        for env in c.events(job, 180):  # the first job of a fresh backend loads the models: minutes on a busy machine
            if isinstance(env.message, Progress) and env.message.stage == "generate" and env.message.fraction > 0:
                c.send(Cancel(job))
                break
        rest = [e.message for e in c.events(job, 60)]
        assert isinstance(rest[-1], Cancelled) and not any(isinstance(m, Result) for m in rest)


def test_missing_model_error_is_immediate_and_names_it(tmp_path):
    server = BackendProcess("--model", f"sam={tmp_path / 'no-sam'}")
    try:
        with Client(server.endpoint) as c:
            t = time.monotonic()
            final, _ = c.run(Generate("[a cat] on a sofa", width=64, height=64), timeout=60)
            assert time.monotonic() - t < 15
            err = final.message
            assert isinstance(err, Error) and err.code == ErrorCode.NOT_AVAILABLE
            assert "sam" in err.text and "sdxl" in err.text and "models fetch" in err.detail
    finally:
        server.terminate()


def test_cli_generate_writes_layers(tiny_models, tmp_path):
    root, _ = tiny_models
    out = tmp_path / "fox.ora"
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "generate", "[a red fox] in the snow", "-o", str(out),
                           "--models-dir", str(root), "--width", "64", "--height", "64", "--steps", "2", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    layers, w, h = read_ora(out)
    assert (w, h) == (64, 64) and [la.name for la in layers] == ["a red fox foreground", "background"]
    assert [group for group, _ in ora_groups(out)] == ["", ""]  # one object: no group, as a split's


def test_cli_generate_of_two_objects_writes_one_group_into_a_psd(tiny_models, tmp_path):
    from layeringdiff.io.psd import read_psd

    root, _ = tiny_models
    out = tmp_path / "two.psd"
    prompt = "[a red fox] by [a tree] in the snow"
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "generate", prompt, "-o", str(out),
                           "--models-dir", str(root), "--width", "64", "--height", "64", "--steps", "2", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:4] == b"8BPS"  # a Photoshop file, not an .ora under that name
    layers, w, h = read_psd(out)
    assert (w, h) == (64, 64)
    assert [(g, la.name) for g, la in layers] == [(prompt, "a red fox foreground"), (prompt, "a tree foreground"),
                                                  (prompt, "background")]


def test_layered_generate_with_fbdd_through_the_server(tiny_layering_models):
    root, _ = tiny_layering_models
    server = BackendProcess("--models-dir", str(root), *server_args())
    try:
        with Client(server.endpoint) as c:
            final, events = c.run(Generate("[a cat] and [a dog] on a sofa", width=64, height=64, steps=2, seed=2,
                                           options={**LOOSE, "layering": "fbdd", "layering_steps": 2}),
                                  timeout=180)
            result = final.message
            assert isinstance(result, Result), result
            assert result.info["method"] == "fbdd+hfa" and len(result.behind) == 1
            assert result.info["stack_error"] <= 1 / 255
            stages = {e.message.stage for e in events if isinstance(e.message, Progress)}
            assert {"generate", "fbdd foreground", "fbdd background"} <= stages
    finally:
        server.terminate()
