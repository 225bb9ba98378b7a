"""The installer puts the protocol package (and pyzmq/msgpack wheels when Krita's Python lacks them)
into vendor/ beside this file; make them importable, the protocol copy first so it matches the plugin."""

import os
import sys

VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")


def activate() -> None:
    if os.path.isdir(VENDOR) and VENDOR not in sys.path:
        sys.path.insert(0, VENDOR)
