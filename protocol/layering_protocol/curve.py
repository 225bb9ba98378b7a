"""CURVE keys as the plugin and the backend read them (a backend served beyond loopback requires them).

A server's public key is given as its 40-character Z85 text or as its server.key file; a machine's key pair
comes from the .key_secret file that `layeringdiff keys client` writes (the certificate format of pyzmq /
czmq). Plain text parsing, so Krita's Python needs nothing beyond pyzmq to use the keys.
"""

import re
from pathlib import Path
from typing import Dict, Tuple

Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_KEY_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"\s*$')


def read_key_file(path: str) -> Dict[str, bytes]:
    """{'public': ..., 'secret': ...} (secret only in .key_secret files), keys as Z85 bytes."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the key file {path}: {exc}") from None
    keys = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match:
            if not Z85_KEY.match(match.group(2)):
                raise ValueError(f"{path}: the {match.group(1)} key is not 40 characters of Z85 text")
            keys[match.group(1)] = match.group(2).encode("ascii")
    if "public" not in keys:
        raise ValueError(f"{path} is not a key file (no public-key line)")
    return keys


def server_public_key(value: str) -> bytes:
    """The server's public key from its Z85 text or from its server.key file."""
    value = value.strip()
    if Z85_KEY.match(value):
        return value.encode("ascii")
    if Path(value).expanduser().is_file():
        return read_key_file(value)["public"]
    raise ValueError("the server key must be the 40-character key that `layeringdiff keys init` prints, "
                     "or the path of the server.key file")


def client_key_pair(path: str) -> Tuple[bytes, bytes]:
    """(public, secret) of this machine from its .key_secret file."""
    keys = read_key_file(path)
    if "secret" not in keys:
        raise ValueError(f"{path} holds only a public key: use the NAME.key_secret file made for this machine")
    return keys["public"], keys["secret"]
