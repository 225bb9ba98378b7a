"""The LaMa fill through the real backend process, as the docker asks for it: it needs onnxruntime and its model,
not the ml extra (this runs in the base-install tier too, where torch is not installed)."""

import numpy as np
import pytest
from layering_protocol import Error, ErrorCode, Result, Split
from layeringdiff.client import Client, result_arrays
from layeringdiff.wire import from_array

from tests.conftest import BackendProcess

pytest.importorskip("onnx", reason="the test extra is not installed")
pytest.importorskip("onnxruntime", reason="the test extra is not installed")
from tests.lama_model import FILL, tiny_lama  # noqa: E402


@pytest.fixture(scope="module")
def lama_backend(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    tiny_lama(models / "lama" / "lama_fp32.onnx")
    server = BackendProcess("--models-dir", str(models))
    yield server
    server.terminate()


def job(fill: str) -> Split:
    rng = np.random.default_rng(1)
    image = rng.uniform(0.3, 0.7, (160, 200, 4)).astype(np.float32)
    image[..., 3] = 1.0
    mask = np.zeros((160, 200), np.float32)
    mask[40:120, 50:150] = 1.0
    return Split(from_array(image, "u8", "BGRA"), mask=from_array(mask, "u8", "L"),
                 options={"fill": fill, "alpha_mode": "mask"})


def test_a_split_with_the_lama_fill_through_the_server(lama_backend):
    with Client(lama_backend.endpoint) as client:
        final, _ = client.run(job("lama"), timeout=120)
    assert isinstance(final.message, Result), final.message
    assert final.message.info["fill"] == "lama"
    bg = result_arrays(final.message)["background"]
    assert np.abs(bg[80, 100, :3] - FILL).max() < 2 / 255  # the middle of the hole is the model's colour


def test_lama_without_its_model_names_the_fetch_command(backend):
    with Client(backend.endpoint) as client:
        final, _ = client.run(job("lama"), timeout=60)
    error = final.message
    assert isinstance(error, Error) and error.code == ErrorCode.NOT_AVAILABLE, error
    assert "lama" in error.text and "models fetch lama" in error.detail
