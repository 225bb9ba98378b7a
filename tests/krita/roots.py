"""Debian roots that hold other Krita versions for the end-to-end matrix (Krita 5.3 from sid, Krita 6 from
experimental), next to the host's own Krita.

A root is built once with mmdebstrap from the Debian mirror that the host's apt sources name (read at run
time, never written down), kept in a fixed folder outside the clone and reused by later runs; a stamp file
written after a successful build and smoke check marks it as good. Programs run in it through a private
mount namespace: the bind mounts (/proc, /dev, /sys, /tmp, the checkout, its venv and the venv's base
Python) exist only there and vanish with the namespace's last process, even when a run is killed.

    python -m tests.krita.roots build 5.3 6.0     # build what is missing or broken, print the versions
    python -m tests.krita.roots status
"""

import argparse
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

ROOTS_DIR = Path(os.environ.get("LAYERINGDIFF_KRITA_ROOTS", "/var/cache/layeringdiff/krita-roots"))
REPO = Path(__file__).resolve().parents[2]
STAMP = ".layeringdiff-root.json"
APT_OPTIONS = ('Acquire::Check-Valid-Until "false"', 'Acquire::Check-Date "false"')  # the mirror's files are old
BASE_PACKAGES = ("ca-certificates", "xvfb", "xauth", "python3-zmq", "python3-msgpack", "fonts-dejavu-core",
                 "python3-venv")  # the docker's own backend setup makes a venv with the system's python3
# a package that is dropped or renamed upstream fails the build, which CI reports: say so clearly
SMOKE_TIMEOUT_S = 120
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"  # by path: commands run with PATH=/usr/bin:/bin
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle of the trusted certificate authorities


class RootError(RuntimeError):
    """A root cannot be built or used; the text says why and what to do."""


@dataclass(frozen=True)
class Flavour:
    series: str  # the Krita release series the root must carry, e.g. "6.0"
    suite: str  # Debian suite that has it
    extra: tuple[str, ...] = ()  # packages apt does not pull in by itself (mmdebstrap skips recommends)


FLAVOURS = {
    # PyQt5 is only "recommended" by Krita 5.3; PyQt6 beside it is the trap the plugin must not fall into
    # (a Linux system often has both; PyQt6 loaded into Krita 5 can crash it). GIMP 3 comes along for the check of
    # the CLI's layered files in it (tests/krita/test_gimp3.py): sid is where Debian has it
    "5.3": Flavour("5.3", "sid", ("python3-pyqt5", "python3-pyqt6", "gimp")),
    # PyQt6 is only "recommended" by Krita 6; the SVG image plugin draws its icons
    "6.0": Flavour("6.0", "experimental", ("python3-pyqt6", "qt6-svg-plugins")),
}


def recipe(flavour: Flavour) -> str:
    """What a root is built from; a root built from another recipe is rebuilt."""
    return " ".join([flavour.suite, *BASE_PACKAGES, *flavour.extra])


# ---- the host's Debian mirror ------------------------------------------------------------------------
def _source_entries(text: str, deb822: bool) -> list[tuple[list[str], list[str]]]:
    """(URIs, suites) of the `deb` entries of one apt sources file."""
    entries = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                entries.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    else:
        for line in text.splitlines():
            parts = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
            if len(parts) >= 3 and parts[0] == "deb":
                entries.append(([parts[1]], [parts[2]]))
    return entries


def debian_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The URI of the Debian archive the host's apt sources name (the one for the release itself, not
    security or a third-party repository)."""
    files = [(etc_apt / "sources.list", False)]
    files += [(p, p.suffix == ".sources") for p in sorted((etc_apt / "sources.list.d").glob("*"))
              if p.suffix in (".sources", ".list")]
    for path, deb822 in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for uris, suites in _source_entries(text, deb822):
            if not any("-" not in s for s in suites):  # bookworm-security, bookworm-updates: not the archive
                continue
            for uri in uris:
                if uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    raise RootError(f"no Debian archive in the host's apt sources ({etc_apt}/sources.list*): the Krita roots are "
                    "built from that mirror")


# ---- a root in a private mount namespace -------------------------------------------------------------
def default_binds() -> list[Path]:
    """Host folders a root needs at the same paths: the checkout, its venv and the venv's base Python
    (the docker starts the backend with that Python), and the temporary folder (tests' HOME and files)."""
    paths = [REPO, Path(sys.prefix), Path(os.path.realpath(sys.base_prefix)), Path(tempfile.gettempdir())]
    out: list[Path] = []
    for p in paths:
        p = p.resolve()
        if not any(p == q or q in p.parents for q in out):
            out = [q for q in out if p not in q.parents] + [p]
    return out


class Mounted:
    """Holds a private mount namespace with the root's mounts while in use; commands enter it with
    `prefix()`. The holder exits when its parent (this process) is gone, so a killed run leaves nothing."""

    def __init__(self, root: Path, binds: Optional[Iterable[Path]] = None) -> None:
        self.root = root
        self.binds = list(binds) if binds is not None else default_binds()
        self.proc: Optional[subprocess.Popen] = None

    def _script(self) -> str:
        r = shlex.quote(str(self.root))
        lines = ["set -e",
                 f"mount --rbind /dev {r}/dev", f"mount --bind /proc {r}/proc", f"mount --rbind /sys {r}/sys",
                 f"mkdir -p {r}/tmp && mount --bind /tmp {r}/tmp"]
        for path in self.binds:
            q, target = shlex.quote(str(path)), shlex.quote(str(self.root) + str(path))
            lines.append(f"mkdir -p {target} && mount --bind {q} {target}")
        # the root trusts the certificate authorities this machine trusts (a network's own TLS proxy included), as
        # this machine's programs do: pip in a root reaches the package index the same way as on the host
        bundle = Path(CA_BUNDLE)
        if bundle.is_file() and (self.root / CA_BUNDLE.lstrip("/")).is_file():
            lines.append(f"mount --bind {shlex.quote(CA_BUNDLE)} {shlex.quote(str(self.root) + CA_BUNDLE)}")
        lines += ["echo ready", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done"]
        return "\n".join(lines)

    def __enter__(self) -> "Mounted":
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", self._script()],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.wait(30)
            raise RootError(f"cannot set up the mounts for the Krita root {self.root}: {self.proc.stderr.read()}")
        return self

    def prefix(self, cwd: str = "/") -> list[str]:
        """Command prefix that runs a program inside the root (in the namespace), in cwd."""
        assert self.proc is not None
        return ["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", "--", CHROOT, str(self.root),
                "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd]

    def run(self, cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix() + cmd, timeout=timeout, **kwargs)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


# ---- building ---------------------------------------------------------------------------------------------
def root_path(series: str) -> Path:
    return ROOTS_DIR / series


def read_stamp(root: Path) -> Optional[dict]:
    try:
        return json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as fh:
        # the kernel writes a space, tab, newline or backslash in a mount point as an octal escape (\040)
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in fh]
    return [p for p in points if (p + "/").startswith(prefix)]


def _remove(path: Path) -> None:
    if not path.exists():
        return
    mounted = _mounts_under(path)
    if mounted:  # never delete through a bind mount (it could be the checkout or /tmp)
        raise RootError(f"{path} has mounts inside ({', '.join(mounted)}): unmount them, then run again")
    shutil.rmtree(path)


def _installed_version(root: Path) -> str:
    out = subprocess.run([CHROOT, str(root), "dpkg-query", "-W", "-f", "${Version}", "krita"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else ""


def upstream(package_version: str) -> str:
    """'1:6.0.4.1+dfsg-1' -> '6.0.4.1'."""
    return re.split(r"[+~-]", package_version.split(":", 1)[-1], maxsplit=1)[0]


def pick_version(madison: str, flavour: Flavour) -> str:
    """The newest krita package version of the flavour's series in its suite, from `apt-cache madison`."""
    found = []
    for line in madison.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[0] == "krita" and f" {flavour.suite}/" in f" {parts[2]}":
            found.append(parts[1])
    matching = [v for v in found if upstream(v).startswith(flavour.series + ".")]
    if not matching:
        raise RootError(f"Debian {flavour.suite} in the host's mirror carries no Krita {flavour.series}.x (it has: "
                        f"{', '.join(upstream(v) for v in found) or 'no krita'}); the matrix in tests/krita/roots.py "
                        "names the series to test")
    return matching[0]  # madison lists the newest first


def _log(message: str) -> None:
    print(f"[krita-roots] {message}", file=sys.stderr, flush=True)


def build(flavour: Flavour, mirror: str) -> dict:
    """Build the root into a new folder, install the pinned Krita, smoke-check it, then move it in place."""
    work = ROOTS_DIR / f"{flavour.series}.building"
    _remove(work)
    started = time.monotonic()
    # Krita goes in from a hook: mmdebstrap has set up /proc, /dev and the network inside the root then
    hook = f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} install-hook " \
           f"{flavour.series} \"$1\""
    cmd = ["mmdebstrap", "--variant=apt", "--include=" + ",".join(BASE_PACKAGES),
           *[f"--aptopt={o}" for o in APT_OPTIONS], f"--customize-hook={hook}", "sid", str(work),
           f"deb {mirror} sid main", f"deb {mirror} experimental main"]
    _log(f"Krita {flavour.series}: building a Debian root in {work} with mmdebstrap (about 4 minutes)")
    # in a namespace of its own, so that no mount can outlive a failed build
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RootError(f"building the Krita {flavour.series} root failed (mmdebstrap):\n{proc.stderr[-3000:]}")
    return finish(work, flavour, started)


def finish(work: Path, flavour: Flavour, started: float) -> dict:
    """Clean, smoke-check and stamp a freshly built root, then move it in place."""
    final = root_path(flavour.series)
    # the root keeps no trace of the mirror (mmdebstrap already removed the package lists)
    for path in [work / "etc/apt/sources.list", *(work / "etc/apt/sources.list.d").glob("*")]:
        if path.is_file():
            path.unlink()
    version = _installed_version(work)
    reported = smoke(work)
    if not reported.startswith(flavour.series + "."):
        raise RootError(f"the Krita in the new {flavour.series} root says it is {reported!r}")
    stamp = {"series": flavour.series, "recipe": recipe(flavour), "package": version, "krita": reported,
             "python": _python_version(work),
             "built": time.strftime("%Y-%m-%d %H:%M:%S"), "build_seconds": round(time.monotonic() - started)}
    _remove(final)
    work.rename(final)
    (final / STAMP).write_text(json.dumps(stamp, indent=1))  # last: only a complete, checked root has one
    _log(f"Krita {flavour.series}: built in {stamp['build_seconds']} s: {stamp}")
    return stamp


def install_hook(series: str, root: Path) -> int:
    """mmdebstrap's customize hook: install the newest Krita of the series from its suite."""
    flavour = FLAVOURS[series]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    madison = subprocess.run([CHROOT, str(root), "apt-cache", "madison", "krita"], capture_output=True, text=True,
                             env=env)
    try:
        version = pick_version(madison.stdout, flavour)
    except RootError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _log(f"Krita {series}: apt-get install -t {flavour.suite} krita={version} {' '.join(flavour.extra)}")
    return subprocess.run([CHROOT, str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends",
                           "-t", flavour.suite, f"krita={version}", *flavour.extra], env=env).returncode


def _python_version(root: Path) -> str:
    out = subprocess.run([CHROOT, str(root), "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def smoke(root: Path) -> str:
    """Run `krita --version` under the root's own Xvfb; -> the version Krita reports, e.g. '6.0.4.1'."""
    script = ('f=$(mktemp); Xvfb -displayfd 3 -screen 0 640x480x24 -nolisten tcp 3>"$f" 2>/dev/null & x=$!; '
              'for i in $(seq 100); do [ -s "$f" ] && break; sleep 0.2; done; h=$(mktemp -d); '
              'DISPLAY=:$(cat "$f") HOME="$h" timeout 90 krita --version; rc=$?; kill $x; rm -rf "$f" "$h"; exit $rc')
    with Mounted(root, binds=[]) as m:
        proc = m.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
                     env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    match = re.search(r"krita\s+(\d+\.\d+[\w.\-]*)", proc.stdout)
    if proc.returncode != 0 or not match:
        raise RootError(f"the Krita in {root} does not start (krita --version, exit {proc.returncode}):\n"
                        f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    return match.group(1)


def check(series: str) -> Optional[dict]:
    """The stamp of a good root of that series, or None when it is missing or broken."""
    root = root_path(series)
    stamp = read_stamp(root)
    if stamp is None or not (root / "usr/bin/krita").exists() or stamp.get("recipe") != recipe(FLAVOURS[series]):
        return None
    if _installed_version(root) != stamp.get("package"):
        return None
    return stamp


class RootLock:
    """Exclusive while a root is built or checked, shared while tests use it (several sessions may)."""

    def __init__(self, series: str) -> None:
        ROOTS_DIR.mkdir(parents=True, exist_ok=True)
        self.fh = open(ROOTS_DIR / f"{series}.lock", "w")

    def exclusive(self) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def shared(self) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_SH)

    def release(self) -> None:
        self.fh.close()


def ensure(series: str, lock: Optional[RootLock] = None) -> dict:
    """A good root of the series (built when missing or broken); -> its stamp. With lock, it is held
    shared on return so no other run rebuilds the root while it is in use."""
    if series not in FLAVOURS:
        raise RootError(f"unknown Krita root {series!r}: known are {', '.join(FLAVOURS)}")
    own = lock is None
    lock = lock or RootLock(series)
    try:
        lock.exclusive()
        stamp = check(series)
        if stamp is None:
            missing = [tool for tool in ("mmdebstrap", "unshare", "nsenter", "chroot") if shutil.which(tool) is None]
            if missing:
                raise RootError(f"{', '.join(missing)} not installed (apt-get install mmdebstrap util-linux "
                                "coreutils): needed to build the Krita roots")
            stamp = build(FLAVOURS[series], debian_mirror())
        lock.shared()
        return stamp
    finally:
        if own:
            lock.release()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("build", "status", "install-hook"))
    parser.add_argument("series", nargs="*", default=list(FLAVOURS))
    args = parser.parse_args(argv)
    if args.action == "install-hook":  # internal: SERIES ROOT
        return install_hook(args.series[0], Path(args.series[1]))
    code = 0
    for series in args.series:
        try:
            stamp = ensure(series) if args.action == "build" else check(series)
        except RootError as exc:
            print(f"Krita {series}: error: {exc}", file=sys.stderr)
            code = 1
            continue
        print(f"Krita {series}: " + (json.dumps(stamp) if stamp else "missing or broken"))
    return code


if __name__ == "__main__":
    sys.exit(main())
