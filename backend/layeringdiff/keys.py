"""CURVE keys for a backend that serves beyond loopback (a studio server).

A keys folder holds the server's key pair (server.key, server.key_secret), the public keys of the machines
allowed in (clients/NAME.key) and, until they are handed out, those machines' secret keys
(secrets/NAME.key_secret). The allowed list is read at every handshake: adding or deleting a file in
clients/ takes effect without restarting the server.
"""

import logging
import os
import re
import shutil
import time
from pathlib import Path

import zmq
from layering_protocol.curve import client_key_pair, read_key_file

log = logging.getLogger(__name__)

SERVER = "server"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


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


def init_keys(folder: str | Path) -> Path:
    """Create the folder with the server's key pair (kept if already there); returns server.key. A new
    folder and secrets/ are 0700, secret key files 0600."""
    require_curve()
    folder = Path(folder)
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    (folder / "clients").mkdir(exist_ok=True)
    (folder / "secrets").mkdir(mode=0o700, exist_ok=True)
    (folder / "secrets").chmod(0o700)
    if not (folder / f"{SERVER}.key_secret").is_file():
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
    public, secret = create_key_pair(folder / "secrets", name)
    shutil.move(public, folder / "clients" / f"{name}.key")
    return secret


def server_keys(folder: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) of the server, with a readable error when the folder is not a keys folder."""
    require_curve()
    path = Path(folder) / f"{SERVER}.key_secret"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; create the keys with `layeringdiff keys init {folder}`")
    return client_key_pair(str(path))


def allowed_clients(folder: str | Path) -> dict[bytes, str]:
    """Public key -> client name, from clients/*.key (unreadable files are skipped and logged)."""
    allowed = {}
    for path in sorted((Path(folder) / "clients").glob("*.key")):
        try:
            allowed[read_key_file(str(path))["public"]] = path.stem
        except ValueError as exc:
            log.warning("skipping client key %s: %s", path, exc)
    return allowed


class ClientList:
    """Credentials provider for pyzmq's authenticator: a client is let in when its key is in clients/."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def callback(self, domain: str, key: bytes) -> bool:
        name = allowed_clients(self.folder).get(key)
        if name is None:
            log.warning("refused a client whose key is not in %s", self.folder / "clients")
            return False
        log.info("client %s connected", name)
        return True


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")
