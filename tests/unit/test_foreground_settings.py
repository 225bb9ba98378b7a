"""Stage 2's settings follow MatteAnything, which the paper defers to (Sec. 3.2): its transparency query and box
threshold, and its trimap; this project's choices stay as named options."""

import numpy as np
import pytest
from layeringdiff.errors import InputError
from layeringdiff.stages.foreground import ForegroundOptions, matte_anything_trimap


def test_the_defaults_are_matteanythings():
    """MatteAnything's text-input version: foreground box and text thresholds 0.25, the transparency query as its UI
    passes it (full stops) at box threshold 0.5."""
    options = ForegroundOptions()
    assert (options.box_threshold, options.text_threshold) == (0.25, 0.25)
    assert options.transparent_query == "glass.lens.crystal.diamond.bubble.bulb.web.grid"
    assert options.transparent_threshold == 0.5 and options.trimap == "matteanything"
    assert ForegroundOptions.from_dict({"trimap": "scaled"}).trimap == "scaled"
    with pytest.raises(InputError, match="trimap must be one of"):
        ForegroundOptions.from_dict({"trimap": "wide"})


def test_matteanythings_trimap_is_five_erosions_and_dilations_by_a_10_px_square():
    """A 10x10 kernel's anchor is its pixel (5, 5): each erosion takes 5 px off the top and left and 4 off the
    bottom and right, each dilation adds 4 above and left and 5 below and right; five of each."""
    mask = np.zeros((200, 200), np.float32)
    mask[60:140, 60:140] = 1.0
    trimap = matte_anything_trimap(mask)
    column = trimap[:, 100]
    assert (column[85:120] == 1.0).all() and column[84] == 0.5 and column[120] == 0.5
    assert (column[40:85] == 0.5).all() and (column[120:165] == 0.5).all()
    assert column[39] == 0.0 and column[165] == 0.0
    assert np.array_equal(trimap, trimap.T)  # the same across
    # the band is the same ~25 px whatever the object's size: a small object keeps no sure foreground
    small = np.zeros((200, 200), np.float32)
    small[90:130, 90:130] = 1.0
    assert 1.0 not in matte_anything_trimap(small) and (matte_anything_trimap(small) == 0.5).sum() > 40 * 40
