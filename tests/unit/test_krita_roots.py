"""The parts of tests/krita/roots.py that need no Krita: which mirror, which Krita version, when a root is rebuilt,
and that a root with mounts inside is found out (real mounts, in a private mount namespace) and never deleted."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.krita import roots

DEB822 = """Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
# http://archive.example/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
"""


def test_the_mirror_is_the_debian_archive_of_the_host_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "other.list").write_text("deb [arch=amd64] https://vendor.example/apt stable main\n")
    assert roots.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_one_line_sources_and_disabled_entries(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "off.sources").write_text(
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n")
    (tmp_path / "sources.list").write_text("# deb http://old.example/debian bookworm main\n"
                                           "deb http://security.example/debian-security bookworm-security main\n"
                                           "deb [signed-by=/k.gpg] http://one.example/debian bookworm main\n")
    assert roots.debian_mirror(tmp_path) == "http://one.example/debian"


def test_no_debian_archive_is_a_clear_error(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(roots.RootError, match="no Debian archive"):
        roots.debian_mirror(tmp_path)


MADISON = """     krita | 1:6.0.4.1+dfsg-1+b1 | http://mirror.example/debian experimental/main amd64 Packages
     krita | 1:5.3.4.1+dfsg-1+b1 | http://mirror.example/debian sid/main amd64 Packages
     krita | 1:5.3.2+dfsg-1 | http://mirror.example/debian sid/main amd64 Packages
"""


def test_the_newest_krita_of_the_series_in_its_suite():
    assert roots.pick_version(MADISON, roots.FLAVOURS["6.0"]) == "1:6.0.4.1+dfsg-1+b1"
    assert roots.pick_version(MADISON, roots.FLAVOURS["5.3"]) == "1:5.3.4.1+dfsg-1+b1"
    assert roots.upstream("1:6.0.4.1+dfsg-1+b1") == "6.0.4.1" and roots.upstream("5.3.2-1") == "5.3.2"


def test_a_suite_without_the_series_names_what_it_has():
    moved_on = MADISON.replace("6.0.4.1", "6.1.0")
    with pytest.raises(roots.RootError, match=r"experimental .* no Krita 6\.0\.x \(it has: 6\.1\.0\)"):
        roots.pick_version(moved_on, roots.FLAVOURS["6.0"])


def test_only_a_stamped_root_of_the_current_recipe_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(roots, "ROOTS_DIR", tmp_path)
    root = tmp_path / "6.0"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "krita").write_text("")
    assert roots.check("6.0") is None  # no stamp: a build that did not finish
    stamp = {"series": "6.0", "recipe": roots.recipe(roots.FLAVOURS["6.0"]), "package": "1:6.0.4.1"}
    (root / roots.STAMP).write_text(json.dumps(stamp))
    monkeypatch.setattr(roots, "_installed_version", lambda r: "1:6.0.4.1")
    assert roots.check("6.0") == stamp
    monkeypatch.setattr(roots, "_installed_version", lambda r: "")  # dpkg says krita is gone: broken
    assert roots.check("6.0") is None
    monkeypatch.setattr(roots, "_installed_version", lambda r: "1:6.0.4.1")
    (root / roots.STAMP).write_text(json.dumps({**stamp, "recipe": "sid krita"}))  # built from another recipe
    assert roots.check("6.0") is None


def test_detected_mounts_inside_a_root_stop_its_deletion(tmp_path, monkeypatch):
    (tmp_path / "root" / "tmp").mkdir(parents=True)
    monkeypatch.setattr(roots, "_mounts_under", lambda path: [str(path / "tmp")])
    with pytest.raises(roots.RootError, match="has mounts inside"):
        roots._remove(tmp_path / "root")
    assert (tmp_path / "root" / "tmp").is_dir()


# Run inside the namespace, after its mounts: the real detection and the real _remove.
PROBE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.krita import roots
root, beside = Path(sys.argv[2]), Path(sys.argv[3])
try:
    roots._remove(root)
    refused = ""
except roots.RootError as exc:
    refused = str(exc)
print(json.dumps({"root": roots._mounts_under(root), "beside": roots._mounts_under(beside), "refused": refused}))
"""
MOUNTS = """set -e
mount -t tmpfs layeringdiff-test "$2/tmp"
mkdir "$2/tmp/deeper"
mount -t tmpfs layeringdiff-test "$2/tmp/deeper"
mount -t tmpfs layeringdiff-test "$3"
exec "$4" -c "$5" "$1" "$2" "$3"
"""


def private_mount_namespace() -> list[str]:
    """unshare's command line for a mount namespace of one's own (its mounts never reach the host and vanish
    with its last process); skips where this machine allows none."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare (util-linux) for a private mount namespace")
    command = [unshare, *([] if os.geteuid() == 0 else ["--map-root-user"]), "--mount", "--propagation", "private"]
    probe = subprocess.run([*command, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    return command


@pytest.mark.parametrize("name", ["root", "a root"])  # mountinfo writes a space as \040
def test_real_mounts_inside_a_root_are_detected_and_stop_its_deletion(tmp_path, name):
    root, beside = tmp_path.resolve() / name, tmp_path.resolve() / f"{name}-beside"  # beside: the same prefix
    (root / "tmp").mkdir(parents=True)
    beside.mkdir()
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([*private_mount_namespace(), "sh", "-c", MOUNTS, "sh", repo, str(root), str(beside),
                           sys.executable, PROBE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert sorted(seen["root"]) == [str(root / "tmp"), str(root / "tmp" / "deeper")]
    assert seen["beside"] == [str(beside)]  # a mount on the path itself counts; the root's prefix does not
    assert "has mounts inside" in seen["refused"]
    # the host never saw those mounts, and the refusal deleted nothing; without mounts the root goes
    assert roots._mounts_under(root) == [] and (root / "tmp").is_dir()
    roots._remove(root)
    assert not root.exists()
