#!/usr/bin/env python3
"""Install the LayeringDiff plugin into Krita (Linux, Windows, macOS). Standard library only.

    python3 installer/install.py                      # find Krita's pykrita folder, install, enable
    python3 installer/install.py --pykrita DIR        # or name the folder
    python3 installer/install.py --uninstall
    python3 installer/install.py --fetch-models all --models-dir ~/layeringdiff-models   # + model weights

It copies plugin/layeringdiff_krita (+ its .desktop file) and the protocol package, makes pyzmq and
msgpack importable for Krita's Python (the system ones when importable, else wheels for Krita's Python
version unpacked into the plugin's vendor/ folder), enables the plugin in kritarc, and records which
Python runs the backend, and has that Python compile the image kernels now (`layeringdiff prepare`, up to a
minute or two once) so that the docker's first start is quick. With --fetch-models it downloads model weights
through that Python (`layeringdiff models fetch`, with its progress bars). It prints every step.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # beside it, also when imported by path
from plugin_tree import DEPS, ROOT, build_plugin_tree, tag_platform_key  # noqa: E402

PLUGIN = "layeringdiff_krita"
RUNTIME_DEPS = ("pyzmq", "msgpack")
IMPORT_NAMES = {"pyzmq": "zmq", "msgpack": "msgpack"}


def krita_data_dir() -> Path:
    system = platform.system()
    home = Path.home()
    if system == "Windows":
        return Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "krita"
    if system == "Darwin":
        return home / "Library" / "Application Support" / "krita"
    flatpak = home / ".var" / "app" / "org.kde.krita" / "data" / "krita"
    if flatpak.is_dir() and not (home / ".local" / "share" / "krita").is_dir():
        return flatpak
    return Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share")) / "krita"


def kritarc_path() -> Path:
    system = platform.system()
    home = Path.home()
    if system == "Windows":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "kritarc"
    if system == "Darwin":
        return home / "Library" / "Preferences" / "kritarc"
    flatpak = home / ".var" / "app" / "org.kde.krita" / "config" / "kritarc"
    if flatpak.is_file() and not (home / ".config" / "kritarc").is_file():
        return flatpak
    return Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "kritarc"


def set_ini_value(text: str, section: str, key: str, value: str | None) -> str:
    """Set (or with None remove) key in [section] of a KConfig file, leaving every other line alone."""
    lines = text.splitlines()
    header = f"[{section}]"
    try:
        start = lines.index(header)
    except ValueError:
        if value is None:
            return text
        if lines and lines[-1].strip():
            lines.append("")
        lines += [header, f"{key}={value}"]
        return "\n".join(lines) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].split("=", 1)[0].strip() == key:
            if value is None:
                del lines[i]
            else:
                lines[i] = f"{key}={value}"
            return "\n".join(lines) + "\n"
    if value is not None:
        insert = end
        while insert > start + 1 and not lines[insert - 1].strip():
            insert -= 1
        lines.insert(insert, f"{key}={value}")
    return "\n".join(lines) + "\n"


def update_kritarc(path: Path, edits: list[tuple[str, str, str | None]]) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for section, key, value in edits:
        text = set_ini_value(text, section, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def python_version_of(python: str) -> str | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def has_modules(python: str, modules: list[str]) -> bool:
    try:
        out = subprocess.run([python, "-I", "-c", "import " + ", ".join(modules)], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def default_krita_python() -> str | None:
    """Linux distribution Krita uses the system Python; Windows/macOS builds bundle their own."""
    if platform.system() == "Linux":
        # the pykrita plugin library links the libpython Krita runs; its version names the interpreter
        for lib_dir in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
            lib = Path(lib_dir) / "kritaplugins" / "kritapykrita.so"
            if not lib.exists():
                continue
            try:
                ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.TimeoutExpired):
                ldd = ""
            match = re.search(r"libpython(3\.\d+)", ldd)
            if match and Path(f"/usr/bin/python{match.group(1)}").exists():
                return f"/usr/bin/python{match.group(1)}"
        return shutil.which("python3", path="/usr/bin:/bin")
    return None


def default_platform_tag() -> str:
    system, machine = platform.system(), platform.machine().lower()
    if system == "Windows":
        return "win_amd64"
    if system == "Darwin":  # 11.0 also takes the 10.x wheels (pyzmq's need 10.15)
        return "macosx_11_0_arm64" if machine == "arm64" else "macosx_11_0_x86_64"
    arch = "aarch64" if machine in ("aarch64", "arm64") else "x86_64"
    return f"manylinux_2_28_{arch}"


def has_pip() -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0


def vendor_wheels(dest: Path, python_version: str, platform_tag: str) -> list[str]:
    """Download binary wheels of the runtime deps for Krita's Python (any CPython 3.10 to 3.14: its own
    cpXY wheels, or abi3 ones built for an older version), unpack each into vendor/deps/<wheel>/ of the plugin
    at dest and index them for that Python (the layout of the release zip, which has every platform)."""
    deps = dest / DEPS
    with tempfile.TemporaryDirectory() as tmp:
        platforms = [platform_tag]
        if platform_tag.startswith("manylinux"):  # older manylinux tags are compatible too
            arch = platform_tag.split("_", 3)[-1]
            platforms += [f"manylinux2014_{arch}", f"manylinux_2_17_{arch}"]
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--dest", tmp,
               "--python-version", python_version, "--implementation", "cp",
               *[arg for p in platforms for arg in ("--platform", p)], *RUNTIME_DEPS]
        print("  $ " + " ".join(cmd))
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeError(f"pip found no wheels of {' and '.join(RUNTIME_DEPS)} for Python {python_version} "
                               f"({platform_tag}); see pip's message above (network, or check --python-version and "
                               "--platform)")
        unpacked = []
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(deps / wheel.stem)
            unpacked.append(wheel.stem)
    index = {tag_platform_key(platform_tag): {python_version: unpacked}}
    (deps / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return unpacked


def install(args: argparse.Namespace) -> int:
    pykrita = Path(args.pykrita) if args.pykrita else krita_data_dir() / "pykrita"
    dest = pykrita / PLUGIN
    print(f"Krita plugin folder: {pykrita}")
    pykrita.mkdir(parents=True, exist_ok=True)
    build_plugin_tree(dest)  # the backend comes from this checkout's environment: no wheel in its bundle
    shutil.copy2(ROOT / "plugin" / f"{PLUGIN}.desktop", pykrita / f"{PLUGIN}.desktop")
    print(f"  copied the plugin to {dest} and the protocol package to {dest / 'vendor'}")

    krita_python = args.krita_python or default_krita_python()
    modules = [IMPORT_NAMES[d] for d in RUNTIME_DEPS]
    if not args.vendor_deps and krita_python and has_modules(krita_python, modules):
        print(f"  pyzmq and msgpack: using the ones Krita's Python ({krita_python}) already has")
    else:
        version = args.python_version or (python_version_of(krita_python) if krita_python else None)
        if not version:
            print("error: cannot tell Krita's Python version: pass --python-version (Help > System information "
                  "in Krita shows it)", file=sys.stderr)
            return 2
        tag = args.platform or default_platform_tag()
        if not has_pip():
            print(f"error: Krita's Python lacks pyzmq and msgpack, and this Python ({sys.executable}) has no pip to "
                  "download them: install them for Krita's Python (Debian/Ubuntu: apt install python3-zmq "
                  "python3-msgpack), or run the installer with a Python that has pip (e.g. a venv's)",
                  file=sys.stderr)
            return 2
        print(f"  pyzmq and msgpack: installing wheels for Python {version} ({tag}) into {dest / 'vendor' / 'deps'}")
        try:
            wheels = vendor_wheels(dest, version, tag)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for name in wheels:
            print(f"    unpacked {name}")

    rc = Path(args.kritarc) if args.kritarc else kritarc_path()
    edits: list[tuple[str, str, str | None]] = [("python", f"enable_{PLUGIN}", "true")]
    backend_python = args.backend_python or (sys.executable if has_modules(sys.executable, ["layeringdiff"])
                                             else "")
    settings: dict = {"python": backend_python, "autostart": True}
    if args.models_dir:
        settings["models_dir"] = str(Path(args.models_dir).expanduser().resolve())
    if backend_python:
        edits.append(("layeringdiff", "settings", json.dumps(settings)))
    update_kritarc(rc, edits)
    print(f"  enabled the plugin in {rc}")
    if backend_python:
        print(f"  the docker will start the backend with {backend_python} -m layeringdiff serve")
    else:
        print("  no Python with the layeringdiff backend found: set it in the docker's Settings "
              "(or rerun with --backend-python)")
    prepared = prepare_kernels(backend_python) if backend_python and not args.no_prepare else 0
    fetched = fetch_models(backend_python, args.fetch_models, args.models_dir) if args.fetch_models else 0
    print("Done. Restart Krita, then Settings > Dockers > LayeringDiff.")
    return fetched or prepared


def prepare_kernels(backend_python: str) -> int:
    """`layeringdiff prepare` in the backend's Python: the docker's first start would compile them otherwise."""
    cmd = [backend_python, "-m", "layeringdiff", "prepare"]
    print(f"  compiling the image kernels once (up to a minute or two): {' '.join(cmd)}", flush=True)
    code = subprocess.run(cmd).returncode
    if code != 0:
        print(f"error: the image kernels were not prepared (see above); the docker's first start compiles them "
              f"instead. To retry: {' '.join(cmd)}", file=sys.stderr)
        return 1
    return 0


def fetch_models(backend_python: str, names: list[str], models_dir: str | None) -> int:
    """`layeringdiff models fetch` in the backend's Python, its progress shown as it runs."""
    if not backend_python:
        print("error: --fetch-models needs the Python with the layeringdiff backend (--backend-python)",
              file=sys.stderr)
        return 2
    cmd = [backend_python, "-m", "layeringdiff", "models", "fetch", *names]
    if models_dir:
        cmd += ["--models-dir", str(Path(models_dir).expanduser().resolve())]
    print(f"  fetching model weights: {' '.join(cmd)}", flush=True)
    code = subprocess.run(cmd).returncode
    if code != 0:
        print(f"error: some model weights were not fetched (see above). The plugin is installed and splits "
              f"offline without them; run the same command again to retry: {' '.join(cmd)}", file=sys.stderr)
        return 1
    print("  model weights fetched")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    pykrita = Path(args.pykrita) if args.pykrita else krita_data_dir() / "pykrita"
    for path in (pykrita / PLUGIN, pykrita / f"{PLUGIN}.desktop"):
        if path.is_dir():
            shutil.rmtree(path)
            print(f"removed {path}")
        elif path.exists():
            path.unlink()
            print(f"removed {path}")
    rc = Path(args.kritarc) if args.kritarc else kritarc_path()
    if rc.exists():
        update_kritarc(rc, [("python", f"enable_{PLUGIN}", None), ("layeringdiff", "settings", None)])
        print(f"disabled the plugin in {rc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pykrita", help="Krita's pykrita folder (default: found for this system)")
    parser.add_argument("--kritarc", help="Krita's kritarc file (default: found for this system)")
    parser.add_argument("--krita-python", help="the Python Krita runs (Linux default: found from the krita binary)")
    parser.add_argument("--python-version", help="Krita's Python version for vendored wheels, e.g. 3.10")
    parser.add_argument("--platform", help="wheel platform tag for vendored wheels, e.g. win_amd64")
    parser.add_argument("--vendor-deps", action="store_true", help="always vendor pyzmq/msgpack wheels")
    parser.add_argument("--backend-python",
                        help="Python with the layeringdiff backend (default: this one if it has it)")
    parser.add_argument("--fetch-models", nargs="+", metavar="NAME",
                        help="also download model weights (names from `layeringdiff models list`, or all)")
    parser.add_argument("--models-dir", help="folder for the fetched weights (one sub-folder per model); the docker "
                                             "is set to use it (default: the Hugging Face cache)")
    parser.add_argument("--no-prepare", action="store_true",
                        help="do not compile the image kernels now (the docker's first start then does)")
    parser.add_argument("--uninstall", action="store_true", help="remove the plugin and disable it")
    args = parser.parse_args(argv)
    return uninstall(args) if args.uninstall else install(args)


if __name__ == "__main__":
    sys.exit(main())
