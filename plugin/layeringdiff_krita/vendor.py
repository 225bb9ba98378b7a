"""What the plugin brings for Krita's own Python (built by installer/plugin_tree.py): the protocol package in
vendor/, and pyzmq and msgpack for every platform and Python version the release zip supports in vendor/deps
(vendor/deps/index.json names the folders for each). Those go first on sys.path: the same, tested versions on
every system; Krita's Python's own pyzmq and msgpack serve where the zip has none for it (a developer install,
another Python version or processor)."""

import json
import os
import platform
import sys
from typing import List

VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
DEPS = os.path.join(VENDOR, "deps")


def platform_key(system: str = sys.platform, machine: str = "") -> str:
    """'windows-x86_64', 'macos-arm64', 'linux-aarch64', ... as installer/package.py names them."""
    machine = (machine or platform.machine()).lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "arm64", "aarch64": "aarch64"}.get(machine, machine)
    if system.startswith("win"):
        return f"windows-{arch}"
    if system == "darwin":
        return f"macos-{'arm64' if arch in ('arm64', 'aarch64') else arch}"
    return f"linux-{'aarch64' if arch in ('arm64', 'aarch64') else arch}"


def deps_folders(deps: str = DEPS, key: str = "", python: str = "") -> List[str]:
    """The vendored wheel folders for this platform and Python ([] when the plugin has none for them)."""
    try:
        with open(os.path.join(deps, "index.json"), encoding="utf-8") as fh:
            index = json.load(fh)
    except (OSError, ValueError):
        return []
    names = index.get(key or platform_key(), {}).get(python or "{}.{}".format(*sys.version_info[:2]), [])
    return [os.path.join(deps, name) for name in names if os.path.isdir(os.path.join(deps, name))]


def activate() -> None:
    wanted = [VENDOR, *deps_folders()] if os.path.isdir(VENDOR) else []
    for folder in reversed(wanted):
        if folder not in sys.path:
            sys.path.insert(0, folder)
