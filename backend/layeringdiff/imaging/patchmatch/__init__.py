"""Exemplar-based completion of a hole: multi-scale PatchMatch EM (Wexler et al. 2007, Barnes et al. 2009), the
method of Krita's Smart Patch tool and of content-aware fills.

The coarsest level starts by onion peeling (the hole filled ring by ring from its border, Newson et al. 2014); then,
coarse to fine, every hole pixel is rebuilt from the nearest 7x7 patches of the known region (nearest-neighbour
field by PatchMatch: propagation + random search), each pixel the weighted vote of the patches that cover it.
Large holes are solved at a reduced working size (MAX_WORK_PIXELS) and the full size is picked pixel by pixel from
the working level's offsets, scaled up (and its neighbours' picks): it copies full-resolution pixels of the known
region, so the detail is the texture's own, not an interpolation, and no per-pixel field is stored at full size.

Random numbers come from a hash of (seed, pass, pixel): the result is a pure function of the input and the seed,
whatever the thread count.

The package: completion.py (`complete` and its steps, the constants), field.py (numba kernels of the
nearest-neighbour field), vote.py (numba kernels that rebuild pixels from the field).
"""

# what other modules use (job_memory.py estimates the fill's memory from these constants)
from .completion import (
    FEATURE_LEVELS_FINER,
    MAX_WORK_PIXELS,
    MIN_SOURCE_CENTRES,
    PATCH_RADIUS,
    complete,
    texture_energy,
)

__all__ = ["FEATURE_LEVELS_FINER", "MAX_WORK_PIXELS", "MIN_SOURCE_CENTRES", "PATCH_RADIUS", "complete",
           "texture_energy"]
