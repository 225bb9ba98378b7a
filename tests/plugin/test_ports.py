"""The controller's two sides keep the Protocols of ports.py: every method the controller may call exists, with
the same parameters, on the docker, the ViewGroup, the Krita bridge and the tests' stand-ins."""

import ast
import inspect
from pathlib import Path

from layeringdiff_krita import ports
from layeringdiff_krita.views import ViewGroup

from .fakes import FakeBridge, FakeView

PLUGIN = Path(ports.__file__).parent


def protocol_methods(proto) -> dict:
    return {name: list(inspect.signature(fn).parameters) for name, fn in vars(proto).items()
            if callable(fn) and not name.startswith("_")}


def class_methods(path: Path, name: str) -> dict:
    """A class's methods and parameters read from its source (the docker and the bridge import `krita`)."""
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return {f.name: [a.arg for a in f.args.args] for f in cls.body if isinstance(f, ast.FunctionDef)}


def test_every_view_has_every_method_the_controller_calls():
    wanted = protocol_methods(ports.View)
    docker = class_methods(PLUGIN / "docker.py", "LayeringDiffDocker")
    for name, params in wanted.items():
        assert docker.get(name) == params, f"the docker's {name}"
        assert list(inspect.signature(getattr(ViewGroup, name)).parameters) == params, f"ViewGroup.{name}"
        assert callable(getattr(FakeView(), name, None)), f"FakeView.{name}"


def test_every_bridge_has_every_method_the_controller_calls():
    wanted = protocol_methods(ports.Bridge)
    bridge = class_methods(PLUGIN / "krita_bridge.py", "KritaBridge")
    for name, params in wanted.items():
        assert bridge.get(name) == params, f"KritaBridge.{name}"
        assert callable(getattr(FakeBridge(), name, None)), f"FakeBridge.{name}"


def test_the_controller_calls_nothing_else_on_them():
    source = (PLUGIN / "controller.py").read_text()
    for attr, proto in (("view", ports.View), ("bridge", ports.Bridge)):
        called = {node.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Attribute) and node.value.attr == attr}
        assert called <= set(protocol_methods(proto)) | {"last"}, called - set(protocol_methods(proto))
