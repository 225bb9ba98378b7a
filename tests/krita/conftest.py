"""The Krita targets of the end-to-end tests: `--krita=host,5.3,6.0` (default: host, the README's command).

Every test here runs once per target; the target is made current for the harness, so make_home and
run_krita use it. A root that cannot be built or entered skips its tests, and fails them in CI (CI set).
"""

import json
import os
from pathlib import Path

import pytest

from . import harness, roots

ARTIFACTS = Path(__file__).parent / "artifacts"
VENDORED = {"6.0"}  # Krita 6 runs with pyzmq/msgpack wheels vendored by the installer, the others with Debian's
_targets: dict = {}


def requested(config) -> list[str]:
    names = [n.strip() for n in (config.getoption("--krita") or "host").split(",") if n.strip()]
    unknown = [n for n in names if n != "host" and n not in roots.FLAVOURS]
    if unknown:
        raise pytest.UsageError(f"--krita: unknown target {', '.join(unknown)} (host, {', '.join(roots.FLAVOURS)})")
    return names


def pytest_generate_tests(metafunc):
    if "krita_target" in metafunc.fixturenames:
        metafunc.parametrize("krita_target", requested(metafunc.config), indirect=True, scope="session")


def _unavailable(text: str):
    if os.environ.get("CI"):
        pytest.fail(text, pytrace=False)
    pytest.skip(text)


@pytest.fixture(scope="session", autouse=True)
def krita_target(request):
    """The target of this test, ready (a root built and its namespace open) and current for the harness."""
    name = request.param
    if name not in _targets:
        if name == "host":
            target = harness.HOST
        else:
            if os.geteuid() != 0:
                _unavailable(f"Krita {name} runs in a Debian root, which needs root (mmdebstrap, mounts)")
            lock = roots.RootLock(name)
            try:
                stamp = roots.ensure(name, lock)
            except Exception as exc:  # RootError says why; anything else (a timeout, a full disk) as it is
                lock.release()
                _targets[name] = f"Krita {name} could not be set up: {exc}"
                _unavailable(_targets[name])
            target = harness.KritaTarget(name, roots.root_path(name), stamp, vendor_deps=name in VENDORED)
            target.lock = lock
        _targets[name] = target
    target = _targets[name]
    if isinstance(target, str):  # set up failed earlier in this session
        _unavailable(target)
    missing = target.missing()
    if missing:
        _unavailable(missing)
    try:
        target.open()
    except roots.RootError as exc:
        _unavailable(f"Krita {name}: {exc}")
    harness.use_target(target)
    yield target
    harness.use_target(harness.HOST)


def artifacts_for(report: dict) -> Path:
    """tests/krita/artifacts/<Krita version>/ (ignored by git)."""
    folder = ARTIFACTS / report.get("krita", {}).get("version", report.get("target", "unknown"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pytest_sessionfinish(session):
    for target in _targets.values():
        if isinstance(target, harness.KritaTarget):
            target.close()
            lock = getattr(target, "lock", None)
            if lock is not None:
                lock.release()


def pytest_terminal_summary(terminalreporter):
    if harness.RAN:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / "versions.json"  # kept across runs: the host's, then the matrix's
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        path.write_text(json.dumps(known | harness.RAN, indent=1))
        terminalreporter.write_sep("-", "Krita versions that ran")
        for name, info in harness.RAN.items():
            stamp = _targets[name].stamp if isinstance(_targets.get(name), harness.KritaTarget) else {}
            package = f", Debian package {stamp['package']}" if stamp.get("package") else ""
            terminalreporter.write_line(f"{name}: Krita {info['version']} ({info['qt_binding']} {info['pyqt']}, "
                                        f"Qt {info['qt']}, Python {info['python']}{package})")
