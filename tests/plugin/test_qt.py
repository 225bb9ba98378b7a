"""qt.py takes the Qt binding Krita uses, with stand-in modules for Krita and both bindings; the real
Krita 5.1/5.3 (PyQt5, with a system PyQt6 beside it in 5.3) and Krita 6 (PyQt6) run it in tests/krita."""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

import pytest

PARTS = ("QtCore", "QtGui", "QtWidgets")


def fake_binding(name: str) -> dict:
    """PyQt5 or PyQt6 as modules; QAction lives in QtWidgets on Qt5 and in QtGui on Qt6."""
    core, gui, widgets = (types.ModuleType(f"{name}.{part}") for part in PARTS)
    core.QTimer = type("QTimer", (), {"binding": name})
    core.Qt = type("Qt", (), {})
    widgets.QLabel = type("QLabel", (), {"binding": name})
    (gui if name == "PyQt6" else widgets).QAction = type("QAction", (), {"binding": name})
    package = types.ModuleType(name)
    package.__path__ = []
    return {name: package, f"{name}.QtCore": core, f"{name}.QtGui": gui, f"{name}.QtWidgets": widgets}


class Importable(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes fake bindings importable without loading them, and records what was imported."""

    def __init__(self, *names: str) -> None:
        self.modules = {k: v for name in names for k, v in fake_binding(name).items()}
        self.imported: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.modules:
            return importlib.machinery.ModuleSpec(fullname, self, is_package="." not in fullname)
        return None

    def create_module(self, spec):
        self.imported.append(spec.name)
        return self.modules[spec.name]

    def exec_module(self, module):
        pass


def fake_krita(version=None, binding=None, monkeypatch=None):
    """Krita's `krita` module: importing it imports Krita's binding, as the real one does."""
    krita = types.ModuleType("krita")
    if version is not None:
        instance = types.SimpleNamespace(version=lambda: version)
        krita.Krita = types.SimpleNamespace(instance=lambda: instance)
    if binding is not None:
        for key, module in fake_binding(binding).items():
            monkeypatch.setitem(sys.modules, key, module)
    monkeypatch.setitem(sys.modules, "krita", krita)
    return krita


@pytest.fixture
def load_qt(monkeypatch):
    """Import a fresh layeringdiff_krita.qt with only the fake bindings given (no real PyQt)."""
    for name in ("PyQt5", "PyQt6"):
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, key)
    monkeypatch.delitem(sys.modules, "layeringdiff_krita.qt", raising=False)
    monkeypatch.setitem(sys.modules, "krita", None)  # outside Krita unless a test puts one there

    def load(*importable: str):
        finder = Importable(*importable)
        monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
        blocked = [b for b in ("PyQt5", "PyQt6") if b not in importable and b not in sys.modules]
        for name in blocked:  # a real binding on this machine must not be found either
            monkeypatch.setitem(sys.modules, name, None)
        try:
            return importlib.import_module("layeringdiff_krita.qt"), finder
        finally:
            sys.modules.pop("layeringdiff_krita.qt", None)

    return load


def test_krita_6_gets_the_pyqt6_its_krita_module_imported(load_qt, monkeypatch):
    fake_krita("6.0.4.1", "PyQt6", monkeypatch)
    qt, finder = load_qt("PyQt5")  # a PyQt5 on the system is never touched (Krita 6 refuses it)
    assert qt.BINDING == "PyQt6" and qt.QT_MAJOR == 6 and finder.imported == []
    assert qt.QAction.binding == "PyQt6" and qt.QAction is sys.modules["PyQt6.QtGui"].QAction
    assert qt.QTimer.binding == "PyQt6" and qt.QLabel.binding == "PyQt6"


def test_krita_5_never_tries_a_system_pyqt6(load_qt, monkeypatch):
    fake_krita("5.3.4.1", "PyQt5", monkeypatch)
    qt, finder = load_qt("PyQt6")
    assert qt.BINDING == "PyQt5" and finder.imported == []
    assert qt.QAction is sys.modules["PyQt5.QtWidgets"].QAction


def test_a_krita_whose_module_imported_nothing_decides_by_its_version(load_qt, monkeypatch):
    fake_krita("6.0.0", None, monkeypatch)
    qt, finder = load_qt("PyQt5", "PyQt6")
    assert qt.BINDING == "PyQt6" and "PyQt5" not in finder.imported


def test_krita_5_without_pyqt5_fails_clearly_instead_of_loading_pyqt6(load_qt, monkeypatch):
    fake_krita("5.1.5", None, monkeypatch)
    with pytest.raises(ImportError, match="needs the Qt binding of Krita \\(PyQt5\\)"):
        load_qt("PyQt6")
    assert "PyQt6.QtCore" not in sys.modules


@pytest.mark.parametrize("importable, expected", [(("PyQt5", "PyQt6"), "PyQt5"), (("PyQt6",), "PyQt6")])
def test_outside_krita_pyqt5_then_pyqt6(load_qt, importable, expected):
    qt, _ = load_qt(*importable)
    assert qt.BINDING == expected


def test_outside_krita_an_imported_binding_wins(load_qt, monkeypatch):
    for key, module in fake_binding("PyQt6").items():
        monkeypatch.setitem(sys.modules, key, module)
    qt, finder = load_qt("PyQt5")
    assert qt.BINDING == "PyQt6" and finder.imported == []


def test_no_binding_at_all_fails_clearly(load_qt):
    with pytest.raises(ImportError, match="needs the Qt binding of Krita \\(PyQt5 or PyQt6\\)"):
        load_qt()


def test_unknown_names_are_attribute_errors(load_qt, monkeypatch):
    qt, _ = load_qt("PyQt5")
    with pytest.raises(AttributeError, match="QNoSuchWidget"):
        qt.QNoSuchWidget  # noqa: B018


@pytest.mark.parametrize("modules, major, expected", [
    ({"krita": 1, "PyQt6": 1}, 6, ["PyQt6"]),
    ({"krita": 1, "PyQt5": 1}, 5, ["PyQt5"]),
    ({"krita": 1, "PyQt5": 1, "PyQt6": 1}, 5, ["PyQt5"]),  # another plugin loaded PyQt6 into Krita 5
    ({"krita": 1, "PyQt6": 1}, 5, ["PyQt5"]),  # Krita 5 never gets PyQt6
    ({"krita": 1, "PyQt6": 1}, None, ["PyQt6"]),  # a Krita without a version: what its module imported
    ({"krita": 1}, 6, ["PyQt6"]),
    ({"krita": 1}, None, ["PyQt5"]),
    ({"krita": None}, None, ["PyQt5", "PyQt6"]),  # import krita failed: not inside Krita
    ({"PyQt6": 1}, None, ["PyQt6", "PyQt5"]),
])
def test_choice(load_qt, modules, major, expected):
    qt, _ = load_qt("PyQt5")
    assert qt.choose_binding(modules, major) == expected
