"""A split into layers as the server runs it (pipeline.run_job on a SplitLayers request): label images by value or
in flat colours, the order, the layers' recomposition, and the memory the server counts for it."""

import cv2
import numpy as np
import pytest
from layering_protocol import Image, SplitLayers, decode, encode
from layeringdiff.errors import InputError
from layeringdiff.examples import synthetic_composite
from layeringdiff.job_memory import estimate_job, label_boxes, split_bytes
from layeringdiff.models import ModelManager
from layeringdiff.pipeline import run_job
from layeringdiff.stages.peel import colour_labels, colour_order
from layeringdiff.wire import from_array, to_array

H, W = 96, 120
RED, BLUE, GREEN = (200, 40, 30), (20, 90, 220), (40, 180, 60)


def scene():
    """A photo-like layer (BGRA u8) and its labels: the synthetic object (1) and an ellipse over its lower right (2,
    drawn last: in front where they meet)."""
    comp, alpha, _, _ = synthetic_composite(H, W, seed=3)
    labels = np.zeros((H, W), np.uint8)
    labels[alpha > 0.5] = 1
    cv2.ellipse(labels, (95, 75), (18, 14), 0, 0, 360, 2, -1)
    ripples = 0.05 * np.sin(np.arange(W) / 3.0)[None, :, None]
    comp = np.where((labels == 2)[..., None], np.array([0.9, 0.75, 0.2], np.float32) + ripples, comp)
    comp = comp.astype(np.float32)
    image = from_array(np.dstack([comp, np.ones((H, W, 1), np.float32)]), "u8", "BGRA")
    return image, labels


def painted(labels):
    """The labels as an artist paints them on a layer: flat straight colours, alpha soft at the strokes' edges, and
    a blend of the two colours where they meet (RGBA u8)."""
    rgba = np.zeros((H, W, 4), np.uint8)
    for k, colour in ((1, RED), (2, BLUE)):  # a soft edge keeps its stroke's colour
        grown = cv2.dilate((labels == k).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        rgba[grown & ((labels == k) | (labels == 0)), :3] = colour
    rgba[..., 3] = cv2.GaussianBlur(((labels > 0) * 255).astype(np.uint8), (5, 5), 0)
    meet = (cv2.dilate((labels == 1).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & (labels == 2)
    rgba[meet, :3] = (110, 65, 125)
    return rgba


def holds(alpha, region, front=None):
    """An alpha that is its region's: nearly opaque well inside it, nearly clear well outside (a furry edge between),
    but for the objects in front of it (`front`), under which a back object's layer may run on (peel.hidden_share)."""
    kernel = np.ones((7, 7), np.uint8)
    inside = cv2.erode(region.astype(np.uint8), kernel) > 0
    outside = cv2.dilate(region.astype(np.uint8), kernel) == 0
    if front is not None:
        outside &= cv2.dilate(front.astype(np.uint8), kernel) == 0
    return alpha[inside].mean() > 0.9 and alpha[outside].mean() < 0.02


def two_shapes():
    """A textured card (red label) and a textured disc over its corner (blue): the disc keeps its round outline, the
    card loses a bite, so the disc is in front. The layer (BGRA u8) and the painted labels (RGBA u8)."""
    yy, xx = np.mgrid[0:H, 0:W]
    card = (xx >= 15) & (xx < 80) & (yy >= 15) & (yy < 70)
    disc = np.hypot(xx - 80, yy - 65) < 20
    rgb = 0.5 + 0.1 * np.sin(xx / 5.0)[..., None] * np.array([1.0, 0.6, 0.3]) + 0.05 * np.cos(yy / 4.0)[..., None]
    rgb[card] = np.array([0.8, 0.3, 0.25]) + 0.05 * np.sin(yy[card] / 2.0)[:, None]
    rgb[disc] = np.array([0.2, 0.35, 0.85]) + 0.05 * np.cos(xx[disc] / 2.0)[:, None]
    image = from_array(np.dstack([rgb, np.ones((H, W))]).astype(np.float32), "u8", "BGRA")
    labels = np.zeros((H, W), np.uint8)
    labels[card] = 1
    labels[disc] = 2
    return image, labels


def run(message):
    return run_job(decode(encode(message)).message, lambda stage, fraction: None, ModelManager())


def layers_of(out):
    return [to_array(layer) for layer in (out.foreground, *out.behind)], to_array(out.background)


def stacked(layers, background):
    picture = background[..., :3].copy()
    for layer in reversed(layers):
        a = layer[..., 3:]
        picture = a * layer[..., :3] + (1 - a) * picture
    return picture


def test_labels_by_value_peel_front_to_back_and_recomposite_the_layer():
    image, labels = scene()
    out = run(SplitLayers(image, Image(W, H, "L", "u8", labels.tobytes())))
    assert out.info["objects"] == [1, 2] and out.info["order"] == "labels" and len(out.behind) == 1
    layers, background = layers_of(out)
    assert background[..., 3].min() == 1.0  # opaque, completed behind both
    picture = to_array(image)[..., :3]
    # half a level: each object split off the background that makes the stored layers in front of it exact
    assert np.abs(stacked(layers, background) - picture).max() <= 0.5 / 255 + 1e-5
    assert out.info["recomposition_error"] <= 0.5 / 255 + 1e-5
    assert np.array_equal(to_array(out.alpha)[..., 0], layers[0][..., 3])  # the front object's alpha
    # each layer holds its object (the back one matted on what the front one left) and nothing far from it
    for layer, k in zip(layers, (1, 2), strict=True):
        assert holds(layer[..., 3], labels == k, front=(labels > 0) & (labels < k))


def test_labels_in_flat_colours_are_objects_ordered_from_where_they_touch():
    image, labels = two_shapes()
    rgba = painted(labels)
    bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])
    out = run(SplitLayers(image, Image(W, H, "BGRA", "u8", bgra.tobytes()), order="auto"))
    assert out.info["colours"] == ["#c8281e", "#145adc"]  # the largest first: label 1 red, 2 blue
    assert out.info["objects"] == [2, 1] and out.info["order"] == "auto"  # the disc keeps its outline: in front
    assert out.info["unordered"] == []  # they touch: a boundary ordered both
    apart = rgba.copy()
    apart[:, :, 3] = 0
    apart[5:15, 5:15] = (*RED, 255)  # two patches that touch nothing: no boundary orders them
    apart[30:50, 60:90] = (*BLUE, 255)
    bgra = np.ascontiguousarray(apart[..., [2, 1, 0, 3]])
    alone = run(SplitLayers(image, Image(W, H, "BGRA", "u8", bgra.tobytes()), order="auto"))
    assert alone.info["unordered"] == alone.info["objects"] == [2, 1]  # behind the rest, the smaller first
    layers, background = layers_of(out)
    assert np.abs(stacked(layers, background) - to_array(image)[..., :3]).max() <= 0.5 / 255 + 1e-5
    assert holds(layers[0][..., 3], labels == 2) and holds(layers[1][..., 3], labels == 1, front=labels == 2)


def test_the_artist_s_colours_order_the_objects_and_the_others_follow_in_the_automatic_order():
    image, labels = two_shapes()
    bgra = np.ascontiguousarray(painted(labels)[..., [2, 1, 0, 3]])
    labels_image = Image(W, H, "BGRA", "u8", bgra.tobytes())
    out = run(SplitLayers(image, labels_image, order="auto", colours=["#C8281E"]))  # the card in front, against
    assert out.info["objects"] == [1, 2] and out.info["order"] == "colours"  # what the outlines say
    layers, background = layers_of(out)
    assert np.abs(stacked(layers, background) - to_array(image)[..., :3]).max() <= 0.5 / 255 + 1e-5
    assert holds(layers[0][..., 3], labels == 1)
    with pytest.raises(InputError, match="no object painted in #00ff00; its colours are #c8281e, #145adc"):
        run(SplitLayers(image, labels_image, order="auto", colours=["#145adc", "#00ff00"]))
    assert colour_order([2, 1, 3], ["#a", "#b", "#c"], ["#C"]) == [3, 2, 1]
    assert colour_order([2, 1, 3], ["#a", "#b", "#c"], []) == [2, 1, 3]


def test_colour_labels_keep_objects_and_give_edges_and_blends_to_the_nearest():
    _, labels = scene()
    rgba = painted(labels)
    found, colours = colour_labels(rgba)
    assert colours == ["#c8281e", "#145adc"]
    painted_px = rgba[..., 3] >= 128
    assert np.array_equal(found > 0, painted_px)  # every painted pixel is an object's, nothing else is
    assert (found[labels == 2] == 2).mean() > 0.97 and (found[(labels == 1) & painted_px] == 1).mean() > 0.99
    assert np.array_equal(colour_labels(np.zeros((4, 4, 4), np.uint8))[0], np.zeros((4, 4), np.uint8))
    rgb = rgba[..., :3].copy()  # no alpha: every pixel painted, black is an object too
    assert len(colour_labels(rgb)[1]) == 3


def test_more_than_255_colour_objects_are_refused():
    index = np.arange(16 * 20).reshape(16, 20).repeat(8, axis=0).repeat(8, axis=1)  # 320 flat 8x8 dabs
    rgb = np.stack([index % 256, index // 256, np.zeros_like(index)], axis=2).astype(np.uint8)
    with pytest.raises(InputError, match="320 colours covering an object's area; at most 255 objects"):
        colour_labels(rgb)


def test_a_small_flat_object_is_one_and_blends_join_a_colour_that_meets_there():
    """A 7x7 dab on a big layer was merged into its neighbour (a colour under 0.2% of the painted pixels was taken
    for a blend); the blends of a soft edge between red and blue went to purple, the colour nearest theirs."""
    rgba = np.zeros((400, 600, 4), np.uint8)
    rgba[200:, :, :] = (60, 180, 40, 255)  # a hill over the lower half
    rgba[50:57, 300:307] = (20, 90, 220, 255)  # a bird, 7x7
    found, colours = colour_labels(rgba)
    assert colours == ["#3cb428", "#145adc"] and (found[50:57, 300:307] == 2).all()
    red, blue, purple = np.array((200, 40, 30)), np.array((20, 90, 220)), np.array((110, 60, 130))
    soft = np.zeros((120, 300, 3), np.float32)
    soft[:, :150], soft[:, 150:] = red, blue
    soft[:40, :] = purple  # a third object, away from the red-blue edge
    soft = cv2.GaussianBlur(soft, (0, 0), 2)  # painted with a soft brush: blends along every edge
    labels, colours = colour_labels(np.rint(soft).astype(np.uint8))
    assert sorted(colours) == ["#145adc", "#6e3c82", "#c8281e"], colours  # no blend taken for an object
    r, b = colours.index("#c8281e") + 1, colours.index("#145adc") + 1
    edge = labels[60:, 140:160]  # the red-blue seam, far from the purple band
    assert set(np.unique(edge)) == {r, b}
    assert (labels[60:, :147] == r).all() and (labels[60:, 153:] == b).all()
    assert count_in_job(rgba) == 2


def krita_over(layer: np.ndarray, colour, alpha: float, where: np.ndarray) -> None:
    """A stroke painted over a straight-alpha RGBA float layer as Krita's "normal" mode mixes it."""
    under = layer[..., 3]
    out = alpha + under * (1 - alpha)
    mixed = (np.array(colour, float) * alpha + layer[..., :3] * (under * (1 - alpha))[..., None]) / \
        np.maximum(out, 1e-9)[..., None]
    layer[where, :3], layer[where, 3] = mixed[where], out[where]


def test_where_translucent_label_strokes_overlap_is_the_top_stroke_s_object_not_another():
    """Two label strokes painted at 50-60% opacity mix where they overlap into a flat colour of its own, which was
    taken for an extra object; it is now the object of the stroke on top (a three-way overlap too). A third colour
    that only lies between two others (an opaque layer, or the strokes' own alpha) stays an object."""
    layer = np.zeros((100, 160, 4))
    red, blue, green = np.zeros((100, 160), bool), np.zeros((100, 160), bool), np.zeros((100, 160), bool)
    red[10:70, 10:90], blue[40:90, 60:150], green[30:95, 70:80] = True, True, True
    krita_over(layer, (1, 0, 0), 0.5, red)
    krita_over(layer, (0, 0.4, 1), 0.6, blue)
    krita_over(layer, (0.2, 0.9, 0.1), 0.45, green)  # over both, and where they overlap
    labels, colours = colour_labels(np.rint(layer * 255).astype(np.uint8))
    assert sorted(colours) == ["#0066ff", "#33e61a", "#ff0000"], colours
    r, b, g = (colours.index(c) + 1 for c in ("#ff0000", "#0066ff", "#33e61a"))
    assert (labels[40:70, 60:70] == b).all() and (labels[40:70, 80:90] == b).all()  # blue over red: blue's
    assert (labels[30:95, 70:80] == g).all()  # green over red, blue and both
    assert (labels[10:40, 10:70] == r).all() and (labels[70:90, 90:150] == b).all()
    # the same colours opaque, and a purple object halfway between red and blue: four objects
    flat = np.zeros((100, 160, 4), np.uint8)
    flat[10:70, 10:90], flat[40:90, 60:150] = (255, 0, 0, 255), (0, 102, 255, 255)
    flat[0:9, 100:150] = (128, 51, 128, 255)
    assert len(colour_labels(flat)[1]) == 3
    flat[..., 3] = np.where(flat[..., 3] > 0, 128, 0)  # all at one alpha: the purple is no mix of theirs either
    assert len(colour_labels(flat)[1]) == 3


def count_in_job(rgba: np.ndarray) -> int:
    from layering_protocol import Image as WireImage
    from layeringdiff.job_memory import colour_count

    h, w = rgba.shape[:2]
    return colour_count(WireImage(w, h, "RGBA", "u8", rgba.tobytes()))


def test_no_object_at_all_is_a_clear_error():
    image, _ = scene()
    with pytest.raises(InputError, match="no object to split: every label is 0"):
        run(SplitLayers(image, Image(W, H, "L", "u8", bytes(W * H))))


def test_a_half_transparent_layer_s_error_is_what_the_stack_shows():
    """A layer fading to transparent (its transparent pixels stored black): the error the job reports compares what
    the layers show premultiplied, as a paint program composites them (it was the straight colours: 0.8 here)."""
    image, labels = scene()
    bgra = to_array(image).copy()
    bgra[..., 3] = np.clip(np.arange(W, dtype=np.float32) / 60 - 0.2, 0, 1)[None, :]
    bgra[bgra[..., 3] == 0, :3] = 0
    out = run(SplitLayers(from_array(bgra, "u8", "BGRA"), Image(W, H, "L", "u8", labels.tobytes())))
    assert out.info["recomposition_error"] <= 1 / 255
    layers, background = layers_of(out)
    colour, shown = background[..., :3] * background[..., 3:], background[..., 3:]
    for layer in reversed(layers):
        a = layer[..., 3:]
        colour, shown = a * layer[..., :3] + (1 - a) * colour, a + (1 - a) * shown
    source = to_array(from_array(bgra, "u8", "BGRA"))
    assert np.abs(shown[..., 0] - source[..., 3]).max() <= 1 / 255 + 1e-5
    assert np.abs(colour - source[..., :3] * source[..., 3:]).max() <= 1 / 255 + 1e-5


def test_ten_nested_objects_over_a_translucent_layer_stay_within_a_level():
    """Each layer's stored alpha (its matte times the layer's, rounded) is made good by the background behind it,
    as an opaque layer's colour rounding is: ten nested discs over a layer at alpha 64/255 were 1.3/255 off."""
    rng = np.random.default_rng(7)
    colour = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 1.0)
    bgra = np.dstack([colour, np.full((H, W), 64, np.uint8)])
    labels = np.zeros((H, W), np.uint8)
    for k in range(10, 0, -1):
        cv2.circle(labels, (W // 2 + int(rng.integers(-3, 4)), H // 2 + int(rng.integers(-3, 4))), 3 + 4 * k, k, -1)
    image = Image(W, H, "BGRA", "u8", bgra.tobytes())
    out = run(SplitLayers(image, Image(W, H, "L", "u8", labels.tobytes())))
    layers, background = layers_of(out)
    source = to_array(image)
    colour, shown = background[..., :3] * background[..., 3:], background[..., 3:]
    for layer in reversed(layers):
        a = layer[..., 3:]
        colour, shown = a * layer[..., :3] + (1 - a) * colour, a + (1 - a) * shown
    assert len(layers) == 10
    assert np.abs(shown[..., 0] - source[..., 3]).max() <= 1 / 255 + 1e-5
    assert np.abs(colour - source[..., :3] * source[..., 3:]).max() <= 1 / 255 + 1e-5


def test_masks_or_colours_that_leave_no_background_are_refused():
    """The docker's selection masks (grey labels) or a label layer that cover the whole layer: the backmost
    object's split would have nothing behind it."""
    image, labels = scene()
    everywhere = np.where(labels == 0, 3, labels).astype(np.uint8)
    with pytest.raises(InputError, match="every pixel is in an object's mask: none is left to show the background"):
        run(SplitLayers(image, Image(W, H, "L", "u8", everywhere.tobytes())))
    rgba = painted(labels)
    rgba[labels == 0] = (40, 180, 60, 255)  # the background painted too, in a third colour
    rgba[..., 3] = 255  # and the strokes' soft edges
    bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])
    with pytest.raises(InputError, match="the label layer is painted all over"):
        run(SplitLayers(image, Image(W, H, "BGRA", "u8", bgra.tobytes()), order="auto"))


def test_the_memory_counted_is_the_largest_objects_split_and_what_the_peel_holds():
    image, labels = scene()
    boxes = label_boxes(Image(W, H, "L", "u8", labels.tobytes()))
    ys, xs = np.nonzero(labels == 2)
    assert boxes[2] == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) and sorted(boxes) == [1, 2]
    one = estimate_job(SplitLayers(image, Image(W, H, "L", "u8", (labels == 1).astype(np.uint8).tobytes())))
    two = estimate_job(SplitLayers(image, Image(W, H, "L", "u8", labels.tobytes())))
    assert two.nbytes - one.nbytes >= 4 * W * H * 2  # one more layer held and one more frame sent
    assert one.nbytes > split_bytes(W * H)  # the layer kept for the final check, beyond one split's
    assert two.what == f"a {W}x{H} split into layers"
    # labels read in bands of rows: an object in the last band only, and one over two bands
    tall = np.zeros((600, 8), np.uint8)
    tall[590:595, 2:4] = 7
    tall[200:300, 5] = 3
    assert label_boxes(Image(8, 600, "L", "u8", tall.tobytes())) == {3: (5, 200, 6, 300), 7: (2, 590, 4, 595)}


def test_a_label_layer_of_too_many_colours_is_a_clear_error_from_the_job_and_admission_counts_it_at_most():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)  # a photo dropped in as the label layer
    photo[..., 3] = 255
    message = SplitLayers(scene()[0], Image(W, H, "RGBA", "u8", photo.tobytes()), order="auto")
    assert estimate_job(message).nbytes > 255 * 4 * W * H  # admission counts the most objects, and does not fail
    with pytest.raises(InputError, match="the label layer has no flat colour that covers an object's area"):
        run(message)  # its colours are each a few pixels: none is an object
    gradient = np.zeros((H, W, 4), np.uint8)  # many blends around two flat colours: matched a chunk at a time
    gradient[..., 3] = 255
    gradient[:, : W // 2, :3] = (200, 40, 30)
    gradient[:, W // 2:, :3] = (20, 90, 220)
    gradient[H // 2:, :, 1] = np.linspace(0, 255, W).astype(np.uint8)[None]  # thousands of one-off colours
    labels, colours = colour_labels(gradient)
    assert len(colours) >= 2 and (labels > 0).all()


def test_an_object_labelled_only_over_transparent_pixels_is_named_empty():
    """Labels painted past a cut-out's edge onto its transparent part only: that object's layer shows nowhere, and
    the result says which (the docker then names it instead of reporting a plain success)."""
    image, labels = scene()
    bgra = np.frombuffer(image.data, np.uint8).reshape(H, W, 4).copy()
    bgra[:, 100:, 3] = 0  # the layer is clear on its right
    labels[labels == 2] = 0
    labels[10:30, 104:116] = 2  # object 2 lies only there
    out = run(SplitLayers(Image(W, H, "BGRA", "u8", bgra.tobytes()), Image(W, H, "L", "u8", labels.tobytes())))
    assert out.info["objects"] == [1, 2] and out.info["empty"] == [2]


def test_labels_painted_faintly_are_objects_and_their_soft_edges_are_not():
    """Labels painted with a brush at 40% opacity (alpha 102) were 'nothing' (painted from alpha 128 only): a pixel
    is painted from half the layer's strongest alpha where that is less than 128."""
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[10:40, 10:40] = (*RED, 102)
    rgba[20:50, 45:70] = (*BLUE, 102)
    rgba[9, 10:40] = (*RED, 40)  # a soft edge, under half of the strokes
    labels, colours = colour_labels(rgba)
    assert sorted(colours) == ["#145adc", "#c8281e"] and not labels[9].any()
    assert (labels[10:40, 10:40] == colours.index("#c8281e") + 1).all()
    rgba[..., 3] = np.minimum(rgba[..., 3], 31)  # fainter than that is nothing
    assert colour_labels(rgba)[1] == []


@pytest.mark.parametrize("phrase", ["   ", "\t\n"])
def test_a_phrase_of_spaces_alone_is_no_hint_and_is_refused_before_any_model_is_asked_for(phrase):
    """Before: it went on to the phrase's models (Grounding DINO told to find nothing)."""
    from layering_protocol import Split

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 255
    with pytest.raises(InputError, match=r"^no foreground hint: .* \(the phrase is only spaces\)"):
        run(Split(Image(16, 16, "BGRA", "u8", rgba.tobytes()), phrase=phrase))


def _hdr_layer(dtype: str) -> tuple[np.ndarray, Image, Image]:
    """An RGBA float layer whose colours reach about 3 (a highlight above white) and -0.2 (a wide-gamut colour), with
    a disc's selection over both."""
    from layeringdiff.wire import NP_DTYPES

    comp, alpha, _, _ = synthetic_composite(64, 64, seed=3)
    rgba = np.dstack([comp, np.ones((64, 64), np.float32)]).astype(np.float32)
    yy, xx = np.mgrid[:64, :64]
    rgba[..., 0] += 2.15 * np.exp(-((yy - 30) ** 2 + (xx - 30) ** 2) / 200.0)  # inside and around the object
    rgba[40:, :10, 2] = -0.2
    rgba = rgba.astype(NP_DTYPES[dtype]).astype(np.float32)  # as the layer holds it
    mask = ((alpha > 0.5) * 255).astype(np.uint8)
    return rgba, Image(64, 64, "RGBA", dtype, rgba.astype(NP_DTYPES[dtype]).tobytes()), Image(64, 64, "L", "u8",
                                                                                              mask.tobytes())


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("kind", ["split", "split_layers"])
def test_a_float_layer_above_white_or_below_black_recomposes_as_it_was_not_clipped(dtype, kind):
    """Krita's float documents hold HDR values (a highlight near 3) and wide-gamut ones (below 0): they were
    clipped to [0, 1], the picture up to 548/255 off with "max error 0.01/255" said. Now mapped onto [0, 1] for the
    split and back: the layers recompose the layer as it was, and the error said is in its own values."""
    from layering_protocol import Split
    from layeringdiff.wire import to_unit_array

    rgba, image, mask = _hdr_layer(dtype)
    assert to_unit_array(image)[1] == (float(rgba[..., :3].min()), float(rgba[..., :3].max()))
    out = run(Split(image, mask=mask) if kind == "split" else SplitLayers(image, labels=mask))
    read = {"f32": np.float32, "f16": np.float16}[dtype]
    fg = np.frombuffer(out.foreground.data, read).reshape(64, 64, 4).astype(np.float32)
    bg = np.frombuffer(out.background.data, read).reshape(64, 64, 4).astype(np.float32)
    a = fg[..., 3:4]
    assert ((a > 0) & (a < 1)).any() and fg[..., :3].max() > 2.5  # a soft edge, and the highlight kept
    again = a * fg[..., :3] + (1 - a) * bg[..., :3]
    tolerance = 2e-4 if dtype == "f32" else 4e-3  # 0.05/255; f16 holds 3 to 1/512
    assert np.abs(again - rgba[..., :3]).max() < tolerance, np.abs(again - rgba[..., :3]).max()
    assert out.info["colour_span"][1] > 2.5 and out.info["recomposition_error"] < 255 * tolerance
