"""LayeringDiff backend: layered image synthesis and layer splitting for Krita."""

from layering_protocol.version import RELEASE as __version__  # the release number lives in one place

__all__ = ["__version__"]
