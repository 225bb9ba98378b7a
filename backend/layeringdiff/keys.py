"""CURVE keys for a backend that serves beyond loopback (a studio server).

A keys folder holds the server's key pair (server.key, server.key_secret), the public keys of the machines
allowed in (clients/NAME.key) and, until they are handed out, those machines' secret keys
(secrets/NAME.key_secret). The allowed list is read at every handshake: adding or deleting a file in
clients/ takes effect without restarting the server.

Whoever can write to clients/ (or the folder above it) can let a key of their own in, and whoever can read
server.key_secret can pose as the server: as ssh does with private keys, the folders are kept 0700 and
secret files 0600, and `serve` refuses keys that other users could read or change (POSIX only: Windows
has no such modes).
"""

import logging
import os
import re
import shlex
import shutil
import stat
import time
from pathlib import Path

import zmq
from layering_protocol.curve import client_key_pair, read_key_file

log = logging.getLogger(__name__)

SERVER = "server"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
PRIVATE_DIR = 0o700
SECRET_FILE = 0o600
CHECK_MODES = os.name == "posix"


def require_curve() -> None:
    if not zmq.has("curve"):
        raise RuntimeError("this pyzmq/libzmq was built without CURVE security; install pyzmq from PyPI")


def _write_file(path: Path, text: str, mode: int) -> None:
    """Write a new file that has `mode` from its first byte: made under a temporary name with that mode
    (never chmod-ed after writing) and renamed over any older file, whose looser mode it does not inherit."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _certificate(public: bytes, secret: bytes | None) -> str:
    """The ZeroMQ certificate format (as pyzmq's zmq.auth writes it; read by layering_protocol.curve)."""
    kind = "Secret" if secret else "Public"
    lines = [f"#   ZeroMQ CURVE **{kind}** Certificate, made by layeringdiff on {time.strftime('%Y-%m-%d %H:%M')}"]
    if secret:
        lines.append("#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.")
    lines += ["", "metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def create_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """folder/NAME.key (public, 0644) and folder/NAME.key_secret (0600 from its first byte)."""
    public, secret = zmq.curve_keypair()
    secret_path = folder / f"{name}.key_secret"
    _write_file(secret_path, _certificate(public, secret), 0o600)
    public_path = folder / f"{name}.key"
    _write_file(public_path, _certificate(public, None), 0o644)
    return public_path, secret_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _make_private(path: Path, mode: int) -> None:
    """Take group and other users' rights away from `path` (a folder found 0777 is not kept so); one we may
    not chmod (another user's) is refused rather than used."""
    if not CHECK_MODES or not _mode(path) & 0o077:
        return
    try:
        path.chmod(mode)
    except PermissionError:
        raise PermissionError(f"{path} is open to other users (mode {_mode(path):04o}) and not ours to chmod: "
                              "use a keys folder of your own") from None


def _private_dir(path: Path) -> None:
    path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    _make_private(path, PRIVATE_DIR)


def init_keys(folder: str | Path) -> Path:
    """Create the folder with the server's key pair (kept if already there); returns server.key. The folder,
    clients/ and secrets/ are made 0700 (also when they were there already), secret key files 0600."""
    require_curve()
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for path in (folder, folder / "clients", folder / "secrets"):
        _private_dir(path)
    if (folder / f"{SERVER}.key_secret").is_file():
        _make_private(folder / f"{SERVER}.key_secret", SECRET_FILE)
    else:
        create_key_pair(folder, SERVER)
    return folder / f"{SERVER}.key"


def add_client(folder: str | Path, name: str) -> Path:
    """A key pair for one machine: its public key goes to clients/ (allowed at once), its secret key to
    secrets/NAME.key_secret, which is handed to that machine. Returns the secret file."""
    folder = Path(folder)
    if not NAME_RE.match(name):
        raise ValueError(f"client name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    if not (folder / f"{SERVER}.key_secret").is_file():
        raise FileNotFoundError(f"{folder} has no server keys; run `layeringdiff keys init {folder}` first")
    if (folder / "clients" / f"{name}.key").exists():
        raise FileExistsError(f"a client named {name!r} exists; delete clients/{name}.key to revoke it first")
    for path in (folder, folder / "clients", folder / "secrets"):
        _private_dir(path)
    public, secret = create_key_pair(folder / "secrets", name)
    shutil.move(public, folder / "clients" / f"{name}.key")
    return secret


def server_keys(folder: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) of the server, with a readable error when the folder is not a keys folder or other
    users could read its secret or change its list of clients."""
    require_curve()
    path = Path(folder) / f"{SERVER}.key_secret"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; create the keys with `layeringdiff keys init {folder}`")
    check_private(Path(folder))
    return client_key_pair(str(path))


def check_private(folder: Path) -> None:
    """PermissionError (one line: what, and the chmod that fixes it) for a server secret key that other users
    can read or change, or a keys folder or clients/ they can write to."""
    if not CHECK_MODES:
        return
    checks = ((folder / f"{SERVER}.key_secret", 0o077, "other users can read or change it", SECRET_FILE),
              (folder, 0o022, "other users can write to it", PRIVATE_DIR),
              (folder / "clients", 0o022, "other users can write to it (and allow keys of their own)", PRIVATE_DIR))
    for path, loose, what, fix in checks:
        if path.exists() and _mode(path) & loose:
            raise PermissionError(f"{path} has mode {_mode(path):04o}: {what}; not serving with it. Fix: "
                                  f"chmod {fix:o} {shlex.quote(str(path))}")


def allowed_clients(folder: str | Path) -> dict[bytes, str]:
    """Public key -> client name, from clients/*.key (unreadable files, and files other users can write to, are
    skipped and logged)."""
    allowed = {}
    for path in sorted((Path(folder) / "clients").glob("*.key")):
        try:
            loose = CHECK_MODES and _mode(path) & 0o022
        except OSError:  # deleted since the listing
            continue
        if loose:  # other users could put a key of their own in it
            log.warning("skipping client key %s: other users can write to it (chmod 644 it)", path)
            continue
        try:
            allowed[read_key_file(str(path))["public"]] = path.stem
        except ValueError as exc:
            log.warning("skipping client key %s: %s", path, exc)
    return allowed


REREAD_S = 1.0  # the handshakes read clients/ at most this often, and whenever its listing changed
REFUSED_LOG_BURST = 5  # refused handshakes logged a minute; the rest are counted in one line


class ClientList:
    """Credentials provider for pyzmq's authenticator: a client is let in when its key is in clients/. A flood of
    handshakes with made-up keys (anyone with the server's public key can send them) costs one read of the folder a
    second and a few log lines a minute, not a read and a line each."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._allowed: dict[bytes, str] | None = None
        self._stamp: int | None = None  # clients/'s mtime when read: a key added or deleted changes it
        self._read_at = 0.0
        self._minute, self._logged, self._skipped = -1, 0, 0

    def allowed(self) -> dict[bytes, str]:
        now = time.monotonic()
        try:
            stamp: int | None = (self.folder / "clients").stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if self._allowed is None or stamp != self._stamp or now - self._read_at >= REREAD_S:
            self._allowed, self._stamp, self._read_at = allowed_clients(self.folder), stamp, now
        return self._allowed

    def callback(self, domain: str, key: bytes) -> bool:
        name = self.allowed().get(key)
        if name is None:
            self._log_refused()
            return False
        log.info("client %s connected", name)
        return True

    def _log_refused(self) -> None:
        minute = int(time.monotonic() // 60)
        if minute != self._minute:
            if self._skipped:
                log.warning("... and %d more clients refused in that minute", self._skipped)
            self._minute, self._logged, self._skipped = minute, 0, 0
        if self._logged < REFUSED_LOG_BURST:
            self._logged += 1
            log.warning("refused a client whose key is not in %s", self.folder / "clients")
        else:
            self._skipped += 1


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")
