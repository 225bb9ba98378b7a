import pytest

pytest.importorskip("torch", reason="the ml extra is not installed")
pytest.importorskip("diffusers", reason="the ml extra is not installed")


@pytest.fixture(scope="module")
def model_backend(tiny_models):
    """The real backend process with the tiny models (stages 1-2 and the depth model), one per test module."""
    from tests.conftest import BackendProcess
    from tests.models.runtime import server_args

    root, _ = tiny_models
    server = BackendProcess("--models-dir", str(root), *server_args())
    yield server
    server.terminate()
