"""The release zip as installer/package.py builds it: what Krita's importer needs, the backend wheel and the
setup script, pyzmq and msgpack for every platform and Python Krita ships with, the size limit, the release
number in its name. (Krita's own importer accepts it in every Krita of the matrix: tests/krita/test_release_zip.py.)"""

import json
import zipfile

import pytest
from layering_protocol import RELEASE

PLATFORMS = ("windows-x86_64", "macos-arm64", "macos-x86_64", "linux-x86_64", "linux-aarch64")
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")

pytestmark = pytest.mark.slow


def test_the_zip_holds_what_krita_and_the_setup_need(release_zip):
    assert release_zip.name == f"layeringdiff-krita-{RELEASE}.zip"
    assert release_zip.stat().st_size <= 60 * 1024 * 1024
    with zipfile.ZipFile(release_zip) as zf:
        names = set(zf.namelist())
        desktop = zf.read("layeringdiff_krita.desktop").decode()
        index = json.loads(zf.read("layeringdiff_krita/vendor/deps/index.json"))
        manifest = json.loads(zf.read("layeringdiff_krita/bundle/manifest.json"))
    assert "X-KDE-Library=layeringdiff_krita" in desktop
    # Krita 5.1's importer finds the module by its folder entry, and needs its __init__.py
    assert {"layeringdiff_krita/", "layeringdiff_krita/__init__.py", "layeringdiff_krita/vendor/"} <= names
    assert "layeringdiff_krita/vendor/layering_protocol/version.py" in names
    assert manifest["release"] == RELEASE and manifest["wheel"] == f"layeringdiff-{RELEASE}-py3-none-any.whl"
    assert f"layeringdiff_krita/bundle/{manifest['wheel']}" in names
    assert "layeringdiff_krita/bundle/backend_setup.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    for platform in PLATFORMS:
        for python in PYTHONS:
            folders = index[platform][python]
            assert sorted(f.split("-")[0] for f in folders) == ["msgpack", "pyzmq"], (platform, python)
            for folder, package in zip(sorted(folders), ("msgpack", "zmq"), strict=True):
                assert f"layeringdiff_krita/vendor/deps/{folder}/{package}/__init__.py" in names


def test_the_vendored_modules_import_in_this_python(release_zip, tmp_path):
    """The plugin package, unpacked as Krita's importer leaves it, imports pyzmq and msgpack from the zip."""
    import subprocess
    import sys

    with zipfile.ZipFile(release_zip) as zf:
        zf.extractall(tmp_path)
    probe = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import layeringdiff_krita, zmq, msgpack; print(zmq.__file__); print(msgpack.__file__)",
                            str(tmp_path)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.count(str(tmp_path / "layeringdiff_krita" / "vendor" / "deps")) == 2, probe.stdout
