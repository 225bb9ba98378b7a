"""Versions: the wire protocol's, and the release's (the one place the release number lives: the backend's
package version, the plugin's, the release zip's name and the backend's hello all read RELEASE)."""

from typing import Optional, Tuple

PROTOCOL_VERSION = 1  # bumped on any incompatible change of the envelope or of a message's fields
RELEASE = "0.2.0"
SERVER_NAME = "layeringdiff"  # Capabilities.server is "<SERVER_NAME> <RELEASE>"


def release_tuple(text: str) -> Optional[Tuple[int, ...]]:
    """'0.2.0' -> (0, 2, 0); None for anything that is not dotted numbers (a pre-release suffix is cut)."""
    parts = []
    for piece in text.strip().split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            return None
        parts.append(int(digits))
        if len(digits) < len(piece):
            break
    return tuple(parts) if parts else None


def server_release(server: str) -> str:
    """The release a backend names in Capabilities.server ('layeringdiff 0.2.0' -> '0.2.0'; '' when absent)."""
    name, _, release = server.strip().partition(" ")
    return release.strip() if name == SERVER_NAME and release_tuple(release) else ""


def compare_releases(backend: str, plugin: str = RELEASE) -> int:
    """-1 when the backend is older than the plugin, 1 when newer, 0 when the same (or either is unknown)."""
    b, p = release_tuple(backend), release_tuple(plugin)
    if b is None or p is None:
        return 0
    width = max(len(b), len(p))
    b, p = b + (0,) * (width - len(b)), p + (0,) * (width - len(p))
    return (b > p) - (b < p)
