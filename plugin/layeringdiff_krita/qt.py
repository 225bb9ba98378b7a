"""The Qt binding Krita itself uses: PyQt5 in Krita 5, PyQt6 in Krita 6. Everything in the plugin imports
Qt from here (`from .qt import QTimer, QLabel, Qt`), so one code base runs in both.

Inside Krita the binding is the one Krita's own `krita` module has already imported (Krita 6's refuses a
plugin that imports PyQt5, and a system PyQt6 loaded into Krita 5 can crash it), else the one Krita's
version implies; PyQt6 is never tried first inside Krita 5. Outside Krita (tests, tools) a binding that
is already imported wins, then PyQt5, then PyQt6. Names resolve from QtWidgets, QtGui, then QtCore, so
`QAction` is QtWidgets.QAction on Qt5 and QtGui.QAction on Qt6.
"""

import importlib
import sys
from types import ModuleType
from typing import Mapping, Optional

BINDINGS = ("PyQt5", "PyQt6")


def krita_major(krita_module: Optional[ModuleType]) -> Optional[int]:
    """Krita's major version from its API (Krita.instance().version(), e.g. '6.0.4.1'), None if unknown."""
    try:
        version = krita_module.Krita.instance().version()  # type: ignore[union-attr]
        return int(str(version).split(".", 1)[0])
    except Exception:  # not inside Krita, or a stand-in without a version
        return None


def choose_binding(modules: Mapping[str, object], major: Optional[int]) -> list[str]:
    """The bindings to try, in order. modules: sys.modules after `import krita` was tried; major: Krita's
    major version (None outside Krita)."""
    in_krita = modules.get("krita") is not None
    loaded = [b for b in BINDINGS if modules.get(b) is not None]
    if in_krita:
        if major is not None and major < 6:
            return ["PyQt5"]  # Krita 5, whatever else got imported
        if len(loaded) == 1:
            return loaded  # the one Krita's own module imported
        if major is not None:
            return ["PyQt6"]
        return loaded[:1] or ["PyQt5"]  # a Krita that says nothing: never PyQt6 by guess
    return loaded + [b for b in BINDINGS if b not in loaded]


def _load() -> tuple[str, ModuleType, ModuleType, ModuleType]:
    try:
        import krita  # noqa: F401  (Krita's module imports its binding first)
    except ImportError:
        krita = None
    candidates = choose_binding(sys.modules, krita_major(krita) if krita is not None else None)
    errors = []
    for name in candidates:
        try:
            core, gui, widgets = (importlib.import_module(f"{name}.{part}") for part in ("QtCore", "QtGui",
                                                                                        "QtWidgets"))
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return name, core, gui, widgets
    raise ImportError("LayeringDiff needs the Qt binding of Krita (" + " or ".join(candidates) + "): "
                      + "; ".join(errors))


BINDING, QtCore, QtGui, QtWidgets = _load()
QT_MAJOR = 6 if BINDING == "PyQt6" else 5


def __getattr__(name: str):
    for module in (QtWidgets, QtGui, QtCore):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"{BINDING} has no {name} in QtWidgets, QtGui or QtCore")
