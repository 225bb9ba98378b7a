"""installer/install.py run as a user runs it, into temporary Krita folders."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "installer" / "install.py"
sys.path.insert(0, str(ROOT / "installer"))
import install  # noqa: E402
from plugin_tree import tag_platform_key  # noqa: E402

sys.path.pop(0)


def run(*args, env=None):
    return subprocess.run([sys.executable, str(INSTALLER), *map(str, args)], capture_output=True, text=True,
                          timeout=900, env=env)


def test_kritarc_edits_keep_every_other_line():
    text = "[General]\nfoo=1\n\n[python]\nenable_other=true\n\n[Zzz]\nx=y\n"
    out = install.set_ini_value(text, "python", "enable_layeringdiff_krita", "true")
    assert out == "[General]\nfoo=1\n\n[python]\nenable_other=true\nenable_layeringdiff_krita=true\n\n[Zzz]\nx=y\n"
    assert install.set_ini_value(out, "python", "enable_layeringdiff_krita", "false").count("=false") == 1
    removed = install.set_ini_value(out, "python", "enable_layeringdiff_krita", None)
    assert "enable_layeringdiff_krita" not in removed and "enable_other=true" in removed
    assert install.set_ini_value("", "python", "k", "v") == "[python]\nk=v\n"


def test_install_and_uninstall(tmp_path):
    pykrita, rc = tmp_path / "pykrita", tmp_path / "kritarc"
    rc.write_text("[General]\nkeep=me\n")
    proc = run("--pykrita", pykrita, "--kritarc", rc, "--backend-python", sys.executable,
               "--krita-python", sys.executable, "--no-prepare")
    assert proc.returncode == 0, proc.stderr
    assert (pykrita / "layeringdiff_krita.desktop").is_file()
    assert (pykrita / "layeringdiff_krita" / "docker.py").is_file()
    assert (pykrita / "layeringdiff_krita" / "vendor" / "layering_protocol" / "codec.py").is_file()
    text = rc.read_text()
    assert "keep=me" in text and "enable_layeringdiff_krita=true" in text
    settings = json.loads(text.split("settings=", 1)[1].splitlines()[0])
    assert settings["python"] == sys.executable
    assert "using the ones Krita's Python" in proc.stdout  # this Python has pyzmq and msgpack
    # the installed copy imports the vendored protocol first
    probe = subprocess.run([sys.executable, "-I", "-c",
                            "import sys; sys.path.insert(0, sys.argv[1]); import layeringdiff_krita, layering_protocol;"
                            "print(layering_protocol.__file__)", str(pykrita)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert str(pykrita / "layeringdiff_krita" / "vendor") in probe.stdout
    # reinstall replaces, uninstall removes and disables
    assert run("--pykrita", pykrita, "--kritarc", rc, "--krita-python", sys.executable).returncode == 0
    proc = run("--uninstall", "--pykrita", pykrita, "--kritarc", rc)
    assert proc.returncode == 0
    assert not (pykrita / "layeringdiff_krita").exists() and not (pykrita / "layeringdiff_krita.desktop").exists()
    assert "enable_layeringdiff_krita" not in rc.read_text() and "keep=me" in rc.read_text()


def test_default_locations_follow_the_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(install.platform, "system", lambda: "Linux")
    assert install.krita_data_dir() == tmp_path / ".local" / "share" / "krita"
    assert install.kritarc_path() == tmp_path / ".config" / "kritarc"
    monkeypatch.setattr(install.platform, "system", lambda: "Darwin")
    assert install.krita_data_dir() == tmp_path / "Library" / "Application Support" / "krita"
    monkeypatch.setattr(install.platform, "system", lambda: "Windows")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert install.krita_data_dir() == tmp_path / "Roaming" / "krita"
    assert install.kritarc_path() == tmp_path / "Local" / "kritarc"


KRITA_PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")  # Krita 5.1/5.2 bundle 3.10, 5.3 and 6 3.13, Debian 3.14


def interpreter(version: str) -> str | None:
    """A CPython of that version on this machine (Debian's, or pyenv's), or None."""
    candidates = [f"/usr/bin/python{version}",
                  *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))]
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def wheel_fits(name: str, version: str) -> bool:
    """name-version-pytag-abitag-platform.whl fits CPython `version`: its own cpXY, or abi3 from an older one."""
    _, _, pytag, abi, _ = name[:-4].split("-")
    own = "cp" + version.replace(".", "")
    return (pytag == own and abi == own) or (abi == "abi3" and int(pytag[3:]) <= int(own[3:]))


@pytest.mark.parametrize("version, platform_tag", [
    *[(v, "manylinux_2_28_x86_64") for v in KRITA_PYTHONS],  # distribution Kritas and the AppImage
    ("3.10", "win_amd64"), ("3.13", "win_amd64"), ("3.13", "macosx_11_0_arm64"), ("3.13", "macosx_11_0_x86_64"),
])
def test_pip_finds_wheels_for_every_krita_python(tmp_path, version, platform_tag):
    """Real downloads from the package index, as the installer makes them."""
    names = install.vendor_wheels(tmp_path, version, platform_tag)
    assert sorted(n.split("-")[0] for n in names) == ["msgpack", "pyzmq"], names
    assert all(wheel_fits(n + ".whl", version) for n in names), names
    deps = tmp_path / "vendor" / "deps"
    packages = dict(zip(sorted(names), ["msgpack", "zmq"], strict=True))
    assert all((deps / n / package / "__init__.py").is_file() for n, package in packages.items())
    index = json.loads((deps / "index.json").read_text())
    assert index == {tag_platform_key(platform_tag): {version: names}}


def test_default_platform_tags_have_wheels(monkeypatch):
    monkeypatch.setattr(install.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(install.platform, "machine", lambda: "x86_64")
    assert install.default_platform_tag() == "macosx_11_0_x86_64"  # pyzmq has no 10.9 wheels any more
    monkeypatch.setattr(install.platform, "machine", lambda: "arm64")
    assert install.default_platform_tag() == "macosx_11_0_arm64"
    monkeypatch.setattr(install.platform, "system", lambda: "Windows")
    assert install.default_platform_tag() == "win_amd64"


@pytest.mark.parametrize("version", KRITA_PYTHONS)
def test_vendored_wheels_import_in_kritas_python(tmp_path, version):
    """Without pyzmq/msgpack in Krita's Python the installer unpacks wheels for its version into vendor/
    (3.14, Debian's Krita 5.3/6, runs them in the real Krita in tests/krita)."""
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    pykrita = tmp_path / "pykrita"
    proc = run("--pykrita", pykrita, "--kritarc", tmp_path / "kritarc", "--vendor-deps", "--krita-python", python)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deps = pykrita / "layeringdiff_krita" / "vendor" / "deps"
    assert list(deps.glob("*/zmq")) and list(deps.glob("*/msgpack"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # the plugin package as Krita imports it (its __init__ puts the vendored folders first on sys.path)
    probe = subprocess.run([python, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import layeringdiff_krita, zmq, msgpack; print(zmq.__file__); print(msgpack.__file__); "
                            "print(zmq.zmq_version(), msgpack.unpackb(msgpack.packb([1, 'x'])))", str(pykrita)],
                           capture_output=True, text=True, env=env)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.count(str(deps)) == 2 and "[1, 'x']" in probe.stdout


def test_vendoring_without_pip_says_what_to_do(tmp_path):
    """A Python without pip cannot download the wheels: the installer says how to get them instead."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    proc = subprocess.run([str(bare / "bin" / "python"), str(INSTALLER), "--pykrita", str(tmp_path / "pykrita"),
                           "--kritarc", str(tmp_path / "kritarc"), "--vendor-deps", "--python-version", "3.13"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no pip" in proc.stderr and "python3-zmq" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_install_prepares_the_kernels_so_the_first_start_is_quick(tmp_path):
    """From an empty kernel cache: the installer compiles every kernel, and the backend then starts without
    compiling (no PREPARING line before READY)."""
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    proc = run("--pykrita", tmp_path / "pykrita", "--kritarc", tmp_path / "kritarc", "--backend-python",
               sys.executable, "--krita-python", sys.executable, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "compiling the image kernels" in proc.stdout and "image kernels ready" in proc.stdout
    assert list(cache.glob("kernels-*.ok")) and list(cache.rglob("*.nbi"))  # numba's index files: machine code kept
    serve = subprocess.Popen([sys.executable, "-m", "layeringdiff", "serve", "--port", "0"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first = serve.stdout.readline()
        assert first.startswith("READY "), first
    finally:
        serve.terminate()
        serve.wait(30)
