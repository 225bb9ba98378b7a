"""LayeringDiff backend: layered image synthesis and layer splitting for Krita."""

__version__ = "0.1.0"
