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
EXPECTED_TIME = "30 s to 3 min on a 2-core machine"


def numba_modules() -> list[str]:
    """Modules of this package whose source defines numba kernels (read as text: nothing heavy imported)."""
    here = Path(__file__).resolve()
    root = here.parent
    names = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="ignore")
        if path != here and ("from numba import" in text or "import numba" in text):
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


WARM_UPS = [(size, fill, kind) for size, fills in ((48, FILLS_WITHOUT_MODELS), (WARM_UP_LARGE, ("texture",)))
            for fill in fills for kind in ("matting", "matting, fixed band", "exact alpha", "RGB")]


def warm_up_split(size: int, fill: str, kind: str) -> None:
    """A tiny split of one kind, so that the kernels compiled on their first call are compiled now."""
    from .stages.split import SplitOptions, split_layer

    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    grain = 0.5 + 0.5 * np.sin(40 * xx) * np.cos(23 * yy)  # something for the texture fill to continue
    image = np.dstack([xx, yy, grain, np.ones_like(xx)]).astype(np.float32)
    mask = (((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.08).astype(np.float32)
    options = {"matting": SplitOptions(fill=fill), "matting, fixed band": SplitOptions(band=3, quantize=255, fill=fill),
               "exact alpha": SplitOptions(alpha_mode="mask", fill=fill), "RGB": SplitOptions(fill=fill)}[kind]
    if kind == "RGB":  # an RGB image whose crop is the whole frame hands contiguous arrays to the kernels
        image = np.ascontiguousarray(image[..., :3])
    split_layer(image, mask=mask, options=options)


def compiled_now() -> int:
    """How many kernel signatures were compiled in this process rather than loaded from numba's disk cache."""
    misses = 0
    for _, kernel in cached_kernels():
        try:
            misses += sum(kernel.stats.cache_misses.values())  # type: ignore[attr-defined]
        except AttributeError:
            misses += len(kernel.signatures)  # another numba: count what it holds as compiled here
    return misses


def prepare(say: Say = print) -> list[str]:
    """Compile every kernel, saying which step of how many it is on; returns the names of cached kernels that
    are still not compiled."""
    start = time.perf_counter()
    say(f"compiling the image kernels (numba): {EXPECTED_TIME} the first time after installing, seconds after that")
    steps: list[tuple[str, Callable[[], object]]] = [
        (f"importing {name}", lambda n=name: importlib.import_module(n)) for name in numba_modules()]
    steps.insert(0, ("importing pymatting (it compiles its kernels on import)",
                     lambda: importlib.import_module("pymatting")))
    steps += [(f"a {size} px split ({kind}, {fill} fill)", lambda a=(size, fill, kind): warm_up_split(*a))
              for size, fill, kind in WARM_UPS]
    for i, (what, call) in enumerate(steps, 1):
        say(f"compiling the image kernels {i}/{len(steps)}: {what} ({time.perf_counter() - start:.0f} s)")
        call()
    missing = [name for name, kernel in cached_kernels() if not (kernel.signatures or on_disk(kernel))]
    compiled = compiled_now()
    seconds = time.perf_counter() - start
    if compiled:
        say(f"image kernels ready: {compiled} compiled in {seconds:.0f} s")
    else:
        say(f"image kernels ready: nothing needed compiling, all were on disk already ({seconds:.0f} s)")
    return missing


def stamp_path() -> Path:
    """A file saying the kernels were prepared for this installation (package folder and its modules, Python,
    numba, version)."""
    import numba

    folder = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "layeringdiff")
    package = Path(__file__).resolve().parent
    # the modules' names and sizes too: a checkout updated in place (kernels moved or changed) prepares again
    sources = sorted(f"{p.relative_to(package)}:{p.stat().st_size}" for p in package.rglob("*.py"))
    where = f"{package}|{sys.executable}|{numba.__version__}|{__version__}|{','.join(sources)}"
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
