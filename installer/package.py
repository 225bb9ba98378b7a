#!/usr/bin/env python3
"""Build the release zip that Krita imports (Tools > Scripts > Import Python Plugin from File...).

    python3 installer/package.py                  # -> dist/layeringdiff-krita-<release>.zip
    python3 installer/package.py --wheels DIR     # take pyzmq/msgpack wheels from DIR, not the package index

The zip holds layeringdiff_krita.desktop and the layeringdiff_krita/ module folder, which is all Krita's importer
copies. Inside it: the plugin, the protocol package (vendor/layering_protocol), pyzmq and msgpack for Krita's own
Python on every platform Krita ships for (vendor/deps, one folder per wheel, vendor/deps/index.json names the
folders for each platform and Python 3.10 to 3.14), and bundle/ with the backend as a wheel and the setup script
the docker runs. pyzmq and msgpack ride in the zip (not fetched during setup) because the docker needs them before
any setup, also to reach a studio server from a machine that has no Python of its own.
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_tree import DEPS, PLUGIN, ROOT, build_plugin_tree, release, unpack_wheel  # noqa: E402

MAX_BYTES = 60 * 1024 * 1024
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
# platform key (plugin/layeringdiff_krita/vendor.py) -> the wheel platform tags pip may take for it
PLATFORMS = {
    "windows-x86_64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_10_15_universal2"),
    "macos-x86_64": ("macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2"),
    "linux-x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "linux-aarch64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}
RUNTIME_DEPS = ("pyzmq", "msgpack")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # every entry's date: the same sources give the same zip


def build_wheel(out: Path) -> Path:
    """The backend (layeringdiff + layering_protocol) as a pure-Python wheel."""
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools reuses it: a removed module would ride along
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT)]
    print("  $ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheels = sorted(out.glob(f"layeringdiff-{release()}-*.whl"))
    if not wheels:
        raise SystemExit(f"error: pip wrote no layeringdiff {release()} wheel into {out}")
    return wheels[0]


def download_deps(python: str, tags: tuple, dest: Path, wheels_dir: str | None) -> list[Path]:
    """pyzmq and msgpack wheels for one Python version and platform (binary only, newest that fits)."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--dest", str(dest),
           "--python-version", python, "--implementation", "cp", *[a for t in tags for a in ("--platform", t)]]
    if wheels_dir:
        cmd += ["--no-index", "--find-links", wheels_dir]
    found = []
    for dep in RUNTIME_DEPS:
        before = set(dest.glob("*.whl"))
        out = subprocess.run([*cmd, dep], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"error: no {dep} wheel for Python {python} ({', '.join(tags)}):\n{out.stderr[-2000:]}")
        name = next((ln.split("Saved ")[-1] for ln in out.stdout.splitlines() if "Saved " in ln), "")
        path = dest / Path(name.strip()).name if name else None
        if path is None or not path.is_file():  # pip said "File was already downloaded"
            hits = [ln for ln in out.stdout.splitlines() if "already downloaded" in ln]
            path = dest / Path(hits[0].split()[-1]).name if hits else None
        if path is None or not path.is_file():
            new = sorted(set(dest.glob("*.whl")) - before)
            if not new:
                raise SystemExit(f"error: pip did not say which {dep} wheel it took for Python {python}")
            path = new[0]
        found.append(path)
    return found


def vendor_deps(tree: Path, wheels_dir: str | None) -> dict:
    """Unpack every wheel once into vendor/deps/<wheel>/ and index which folders each platform and Python uses
    (pyzmq's abi3 wheels serve several Python versions from one folder)."""
    deps = tree / DEPS
    index: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, tags in PLATFORMS.items():
            for python in PYTHONS:
                folders = []
                for wheel in download_deps(python, tags, Path(tmp), wheels_dir):
                    folder = deps / wheel.stem.split("-py")[0][:60]
                    if not folder.exists():
                        unpack_wheel(wheel, folder)
                    folders.append(folder.name)
                index.setdefault(key, {})[python] = folders
    (deps / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    return index


def write_zip(tree: Path, desktop: Path, out: Path) -> None:
    """Folders get their own entries: Krita 5.1's importer finds the module folder only by its entry."""
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(zipfile.ZipInfo(desktop.name, FIXED_TIME), desktop.read_bytes())
        for path in sorted([tree, *tree.rglob("*")]):
            name = path.relative_to(tree.parent).as_posix()
            if path.is_dir():
                info = zipfile.ZipInfo(name + "/", FIXED_TIME)
                info.external_attr = 0o40755 << 16
                zf.writestr(info, b"")
            else:
                info = zipfile.ZipInfo(name, FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "dist"), help="folder for the zip (default: dist/)")
    parser.add_argument("--wheels", help="take the pyzmq/msgpack wheels from this folder (offline build)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"layeringdiff-krita-{release()}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building layeringdiff-krita {release()}", flush=True)
        wheel = build_wheel(Path(tmp) / "wheel")
        tree = Path(tmp) / "zip" / PLUGIN
        build_plugin_tree(tree, wheel)
        index = vendor_deps(tree, args.wheels)
        print(f"  pyzmq and msgpack for {', '.join(index)} x Python {', '.join(PYTHONS)}: "
              f"{len(list((tree / DEPS).iterdir())) - 1} wheel folders", flush=True)
        write_zip(tree, ROOT / "plugin" / f"{PLUGIN}.desktop", zip_path)
    size = zip_path.stat().st_size
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    print(f"{zip_path} ({size / 1e6:.1f} MB, sha256 {digest})")
    if size > MAX_BYTES:
        print(f"error: the zip is over {MAX_BYTES // 2**20} MB", file=sys.stderr)
        return 1
    shutil.rmtree(out_dir / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
