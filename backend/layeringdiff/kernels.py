"""The numba kernels, compiled once ahead of time: by the installer, or by the first `layeringdiff` run.

Compiling them (pymatting's and this package's) takes 30-60 s on two cores, more under load; numba keeps the
machine code on disk (NUMBA_CACHE_DIR, else beside each module), so a prepared machine starts the backend in
seconds. Kernels are found generically, so ones added later are prepared too: every module of this package
whose source uses numba is imported (pymatting compiles its kernels on import), a small split of every kind
runs (kernels compiled on first call), and any cached kernel still without machine code is named.
"""

import hashlib
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import __version__

Say = Callable[[str], None]
SCANNED_PACKAGES = ("layeringdiff", "pymatting")
FILLS_WITHOUT_MODELS = ("smooth", "texture")
WARM_UP_LARGE = 320  # a hole this size is completed at reduced size and brought back up (more kernels)


def numba_modules() -> list[str]:
    """Modules of this package whose source defines numba kernels (read as text: nothing heavy imported)."""
    root = Path(__file__).resolve().parent
    names = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="ignore")
        if path.name != "kernels.py" and ("from numba import" in text or "import numba" in text):
            names.append(".".join(path.relative_to(root.parent).with_suffix("").parts))
    return names


def cached_kernels() -> Iterator[tuple[str, object]]:
    """(name, dispatcher) of every imported numba kernel of this package and pymatting that caches to disk."""
    from numba.core.dispatcher import Dispatcher

    seen = set()
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.split(".")[0] not in SCANNED_PACKAGES:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, Dispatcher) and id(value) not in seen and \
                    type(value._cache).__name__ != "NullCache" and \
                    value.targetoptions.get("inline") != "always":  # cache=True, compiled on its own
                seen.add(id(value))
                yield f"{module_name}.{attr}", value


def on_disk(kernel: object) -> bool:
    """Whether numba keeps machine code of this kernel on disk: a helper kernel called only by other kernels is
    not loaded when they come from the cache (its code is linked into theirs), yet it was cached when compiled."""
    try:
        return os.path.exists(kernel._cache._cache_file._index_path)  # type: ignore[attr-defined]
    except AttributeError:  # another numba's cache layout: count it as compiled only when loaded
        return False


def warm_up() -> None:
    """A tiny split of every kind, so that kernels compiled on their first call are compiled now."""
    from .stages.split import SplitOptions, split_layer

    for size, fills in ((48, FILLS_WITHOUT_MODELS), (WARM_UP_LARGE, ("texture",))):
        yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
        grain = 0.5 + 0.5 * np.sin(40 * xx) * np.cos(23 * yy)  # something for the texture fill to continue
        image = np.dstack([xx, yy, grain, np.ones_like(xx)]).astype(np.float32)
        mask = (((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.08).astype(np.float32)
        for fill in fills:
            for options in (SplitOptions(fill=fill), SplitOptions(band=3, quantize=255, fill=fill),
                            SplitOptions(alpha_mode="mask", fill=fill)):
                split_layer(image, mask=mask, options=options)
            # an RGB image whose crop is the whole frame hands contiguous arrays to the kernels: other signatures
            split_layer(np.ascontiguousarray(image[..., :3]), mask=mask, options=SplitOptions(fill=fill))


def prepare(say: Say = print) -> list[str]:
    """Compile every kernel; returns the names of cached kernels that are still not compiled."""
    start = time.perf_counter()
    say("compiling the image kernels (numba; once after installing)")
    for name in numba_modules():
        importlib.import_module(name)
    warm_up()
    missing = [name for name, kernel in cached_kernels() if not (kernel.signatures or on_disk(kernel))]
    say(f"image kernels ready ({time.perf_counter() - start:.0f} s)")
    return missing


def stamp_path() -> Path:
    """A file saying the kernels were prepared for this installation (package folder, Python, numba)."""
    import numba

    folder = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "layeringdiff")
    where = f"{Path(__file__).resolve().parent}|{sys.executable}|{numba.__version__}|{__version__}"
    return Path(folder) / f"kernels-{hashlib.sha256(where.encode()).hexdigest()[:16]}.ok"


def ensure_prepared(say: Say) -> None:
    """Prepare the kernels unless this version was prepared here before (the first run after installing)."""
    stamp = stamp_path()
    if stamp.exists():
        return
    missing = prepare(say)
    if missing:
        say(f"warning: not compiled ahead (they will compile on first use): {', '.join(missing)}")
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(f"prepared {time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")
    except OSError:  # a read-only cache only costs the check next time
        pass
