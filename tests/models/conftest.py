import pytest

pytest.importorskip("torch", reason="the ml extra is not installed")
pytest.importorskip("diffusers", reason="the ml extra is not installed")
