"""CURVE keys for a backend that serves beyond loopback (a studio server).

A keys folder holds the server's key pair (server.key, server.key_secret), the public keys of the machines
allowed in (clients/NAME.key) and, until they are handed out, those machines' secret keys
(secrets/NAME.key_secret). The allowed list is read at every handshake: adding or deleting a file in
clients/ takes effect without restarting the server.
"""

import logging
import re
import shutil
from pathlib import Path

import zmq
import zmq.auth
from layering_protocol.curve import client_key_pair, read_key_file

log = logging.getLogger(__name__)

SERVER = "server"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def require_curve() -> None:
    if not zmq.has("curve"):
        raise RuntimeError("this pyzmq/libzmq was built without CURVE security; install pyzmq from PyPI")


def init_keys(folder: str | Path) -> Path:
    """Create the folder with the server's key pair (kept if already there); returns server.key."""
    require_curve()
    folder = Path(folder)
    for sub in (folder, folder / "clients", folder / "secrets"):
        sub.mkdir(parents=True, exist_ok=True)
    (folder / "secrets").chmod(0o700)
    if not (folder / f"{SERVER}.key_secret").is_file():
        _, secret = zmq.auth.create_certificates(str(folder), SERVER)
        Path(secret).chmod(0o600)
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
    public, secret = zmq.auth.create_certificates(str(folder / "secrets"), name)
    Path(secret).chmod(0o600)
    shutil.move(public, folder / "clients" / f"{name}.key")
    return Path(secret)


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
