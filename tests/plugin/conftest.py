import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugin"
if str(PLUGIN_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGIN_DIR))


@pytest.fixture
def fake_krita(monkeypatch):
    from tests.plugin import mock_krita

    mock_krita.Krita.reset()
    monkeypatch.setitem(sys.modules, "krita", mock_krita.module())
    sys.modules.pop("layeringdiff_krita.krita_bridge", None)
    yield mock_krita
    sys.modules.pop("layeringdiff_krita.krita_bridge", None)
