"""LayeringDiff docker for Krita 5.1+ (PyQt5) and Krita 6 (PyQt6).

Krita imports this package and expects the docker to be registered here; outside Krita (tests) the
package imports without side effects.
"""

from . import vendor

vendor.activate()


def _register() -> None:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita

    from .docker import DOCKER_ID, LayeringDiffDocker

    Krita.instance().addDockWidgetFactory(
        DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockPosition.DockRight, LayeringDiffDocker)
    )


try:
    import krita as _krita
except ImportError:  # not inside Krita
    _krita = None
if _krita is not None and hasattr(_krita, "DockWidgetFactory"):
    _register()
