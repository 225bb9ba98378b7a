"""The plugin's folder as Krita loads it, built the same way for the release zip (package.py) and the developer's
install (install.py). Standard library only.

    layeringdiff_krita/                  the plugin (plugin/layeringdiff_krita)
        vendor/layering_protocol/        the protocol package, the same code the backend speaks
        vendor/deps/<wheel>/             pyzmq and msgpack for Krita's Python, vendor/deps/index.json names them
        bundle/backend_setup.py          what the docker runs to set up its backend (installer/backend_setup.py)
        bundle/<the backend wheel>       ... and what that installs; bundle/manifest.json names it
"""

import ast
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "layeringdiff_krita"
VENDOR = "vendor"
DEPS = f"{VENDOR}/deps"
BUNDLE = "bundle"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", VENDOR, BUNDLE)


def release() -> str:
    """RELEASE from protocol/layering_protocol/version.py, read without importing it."""
    source = (ROOT / "protocol" / "layering_protocol" / "version.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "RELEASE" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("RELEASE is not set in protocol/layering_protocol/version.py")


def tag_platform_key(tag: str) -> str:
    """A wheel's platform tag -> the plugin's platform key (vendor.platform_key): win_amd64 -> windows-x86_64."""
    system = "windows" if tag.startswith("win") else "macos" if tag.startswith("macosx") else "linux"
    arch = "x86_64" if tag.endswith(("amd64", "x86_64")) else "arm64" if system == "macos" else "aarch64"
    return f"{system}-{arch}"


def unpack_wheel(wheel: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(folder)


def build_plugin_tree(dest: Path, wheel: Path | None = None) -> None:
    """The plugin, its protocol copy and (with a wheel) the bundle for the docker's backend setup."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ROOT / "plugin" / PLUGIN, dest, ignore=IGNORED)
    shutil.copytree(ROOT / "protocol" / "layering_protocol", dest / VENDOR / "layering_protocol",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    bundle = dest / BUNDLE
    bundle.mkdir()
    shutil.copy2(ROOT / "installer" / "backend_setup.py", bundle / "backend_setup.py")
    manifest = {"release": release(), "wheel": "", "sha256": ""}
    if wheel is not None:
        shutil.copy2(wheel, bundle / wheel.name)
        manifest.update(wheel=wheel.name, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
