"""`layeringdiff split IMAGE --labels LABELS.png`: several objects in one operation, peeled front to back. The
scene is made from known layers (three overlapping soft-edged objects cut from photos over a photo background), so
each object's alpha and the recomposition are checked against the truth."""

import cv2
import numpy as np
import pytest
from layeringdiff.examples import photo
from layeringdiff.io.images import save_png
from layeringdiff.io.ora import flatten, ora_groups, read_ora
from layeringdiff.options import SplitOptions
from layeringdiff.stages.peel import label_values, split_objects
from PIL import Image

from tests.integration.test_cli import error_lines, one_line_failure, run

SIZE = 192
# (centre x, centre y, radius x, radius y, source photo), front first
OBJECTS = [(80, 90, 38, 30, "chelsea"), (118, 100, 42, 48, "coffee"), (70, 60, 50, 34, "astronaut")]


def ellipse_alpha(cx: int, cy: int, rx: int, ry: int) -> np.ndarray:
    """A soft-edged ellipse: drawn at 4x and area-downsampled (fractional coverage on its edge)."""
    big = np.zeros((4 * SIZE, 4 * SIZE), np.float32)
    cv2.ellipse(big, (4 * cx, 4 * cy), (4 * rx, 4 * ry), 0, 0, 360, 1.0, -1)
    return cv2.resize(big, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def scene() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(the image, its labels, each object's alpha where it is visible), objects front first."""
    image = cv2.resize(photo("rocket"), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    alphas = [ellipse_alpha(cx, cy, rx, ry) for cx, cy, rx, ry, _ in OBJECTS]
    for (*_, name), alpha in reversed(list(zip(OBJECTS, alphas, strict=True))):  # back to front
        source = cv2.resize(photo(name), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        image = alpha[..., None] * source + (1 - alpha[..., None]) * image
    labels = np.zeros((SIZE, SIZE), np.uint8)
    visible = []
    covered = np.zeros((SIZE, SIZE), np.float32)  # how much the objects in front cover
    for k, alpha in enumerate(alphas, start=1):
        seen = alpha * (1 - covered)
        labels[(seen > 0.5) & (labels == 0)] = k
        visible.append(seen)
        covered = covered + seen
    return np.clip(image, 0, 1).astype(np.float32), labels, visible


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels")
    image, labels, visible = scene()
    save_png(d / "scene.png", image)
    Image.fromarray(labels, "L").save(d / "labels.png")
    palette = Image.fromarray(labels, "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    palette.save(d / "labels_palette.png")
    palette.convert("RGB").save(d / "labels_rgb.png")  # one flat colour per object: the docker's label layer
    Image.fromarray(np.zeros_like(labels), "L").save(d / "zeros.png")
    Image.fromarray(labels, "L").save(d / "labels.jpg", quality=95)
    full = labels.copy()
    full[full == 0] = 3
    Image.fromarray(full, "L").save(d / "full.png")
    almost = np.full_like(labels, 7)
    almost[0, 0] = 0
    Image.fromarray(almost, "L").save(d / "almost.png")
    stretched = (labels * 85).astype(np.float32)  # 0/85/170/255, then anti-aliased as a soft brush paints it
    Image.fromarray(np.round(cv2.GaussianBlur(stretched, (5, 5), 1.5)).astype(np.uint8), "L").save(d / "smooth.png")
    Image.fromarray(labels[:-1], "L").save(d / "short.png")
    Image.fromarray(np.zeros((300, 300), np.uint8), "L").save(d / "big.png")  # over --max-pixels 50000: size first
    Image.fromarray(labels.astype(np.uint16) * 257).save(d / "labels16.png")  # an editor's 16-bit mode: k -> 257 k
    palette.save(d / "labels_clear2.png", transparency=2)  # the palette entry of object 2 made transparent
    return d, visible


@pytest.mark.parametrize("which", ["labels.png", "labels_palette.png"])
def test_three_objects_become_three_layers_and_a_background_that_recomposite_the_image(files, tmp_path, which):
    d, visible = files
    proc = run("split", d / "scene.png", "--labels", d / which, "-o", tmp_path / "out.ora")
    assert proc.returncode == 0, proc.stderr
    assert "into 3 objects (front to back: labels 1, 2, 3) and the background" in proc.stderr
    assert "Traceback" not in proc.stderr
    names = ["out.ora", "out_object1.png", "out_object2.png", "out_object3.png", "out_background.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert proc.stdout.split() == [str(tmp_path / n) for n in names]
    layers, w, h = read_ora(tmp_path / "out.ora")
    assert ora_groups(tmp_path / "out.ora") == [("scene split", "object 1"), ("scene split", "object 2"),
                                                ("scene split", "object 3"), ("scene split", "background"),
                                                ("", "original")]
    assert [la.visible for la in layers] == [True, True, True, True, False]
    original = np.asarray(Image.open(d / "scene.png").convert("RGB"), np.float32) / 255
    merged = flatten(layers, w, h)
    assert np.all(merged[..., 3] > 0.999) and np.all(layers[3].pixels[..., 3] > 0.999)  # the background is opaque
    assert np.abs(merged[..., :3] - original).max() <= 1 / 255 + 1e-5
    # the summary's figure is the file's (it was the float background's: 0.000/255 where the file is 0.49 off)
    summary = float(proc.stderr.rsplit("recomposition error ", 1)[1].split("/255")[0])
    assert abs(summary - 255 * np.abs(merged[..., :3] - original).max()) <= 0.002, summary
    labels = np.asarray(Image.open(d / "labels.png"))
    front = np.zeros(labels.shape, bool)  # the objects in front of this one
    for k, truth in enumerate(visible):
        held = layers[k].pixels[..., 3] > 0.5
        assert iou(held & ~front, (truth > 0.5) & ~front) >= 0.9, f"object {k + 1}"
        # under the objects in front it may run on (stages/peel.hidden_share): where it does, the object is there
        under = held & front
        whole = ellipse_alpha(*OBJECTS[k][:4]) > 0.5
        assert not under.any() or whole[under].mean() >= 0.9, f"object {k + 1}: {whole[under].mean():.2f}"
        png = np.asarray(Image.open(tmp_path / f"out_object{k + 1}.png").convert("RGBA"), np.float32) / 255
        assert np.array_equal(png, layers[k].pixels)
        front |= labels == k + 1


def test_the_automatic_order_peels_the_front_object_first_whatever_its_label(files, tmp_path):
    """The labels renumbered so that the frontmost object is 3: --order auto still puts it on top."""
    d, visible = files
    labels = np.asarray(Image.open(d / "labels.png"))
    renumbered = np.choose(labels, [0, 3, 1, 2]).astype(np.uint8)  # front 1 -> 3, 2 -> 1, 3 -> 2
    Image.fromarray(renumbered, "L").save(tmp_path / "renumbered.png")
    proc = run("split", d / "scene.png", "--labels", tmp_path / "renumbered.png", "--order", "auto",
               "-o", tmp_path / "out.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert "front to back: labels 3, 1, 2" in proc.stderr
    layers, w, h = read_ora(tmp_path / "out.ora")
    assert [la.name for la in layers] == ["object 3", "object 1", "object 2", "background", "original"]
    original = np.asarray(Image.open(d / "scene.png").convert("RGB"), np.float32) / 255
    assert np.abs(flatten(layers, w, h)[..., :3] - original).max() <= 1 / 255 + 1e-5
    assert iou(layers[0].pixels[..., 3] > 0.5, visible[0] > 0.5) >= 0.9


@pytest.mark.parametrize(("args", "words"), [
    (["--labels", "labels.png", "--order", "nope"], "invalid choice: 'nope'"),
    (["--labels", "labels_rgb.png"], "is a colour (RGB) image: labels are an 8-bit grey or paletted PNG"),
    (["--labels", "zeros.png"], "no object to split: every label is 0"),
    (["--labels", "labels.jpg"], "is JPEG-compressed: the compression changes the values along every edge"),
    (["--labels", "smooth.png"], "values found only along the edges between others"),
    (["--labels", "full.png"], "every pixel has an object's label: none is left to show the background"),
    (["--labels", "almost.png"], "label 7: the mask leaves no background around the object"),
    (["--labels", "short.png"], "--labels is 192x191, the image is 192x192: sizes must match"),
    (["--labels", "big.png", "--max-pixels", "50000"], "--labels is 300x300, the image is 192x192: sizes must match"),
    (["--labels", "labels.png", "--box", "1,1,50,50"], "give exactly one foreground hint"),
    (["--labels", "labels16.png"], "every value is a multiple of 257: 8-bit labels saved at 16 bits"),
    (["--labels", ""], "--labels is empty: give a file name"),
    (["--mask", "labels.png", "--order", "auto"], "--order applies to --labels only"),
])
def test_labels_that_cannot_be_split_are_one_line_and_leave_nothing(files, tmp_path, args, words):
    d, _ = files
    out = tmp_path / "out"
    out.mkdir()
    proc = run("split", d / "scene.png", *[d / a if a.endswith((".png", ".jpg")) else a for a in args],
               "-o", out / "x.ora")
    one_line_failure(proc, words)
    assert list(out.iterdir()) == [], error_lines(proc)


@pytest.mark.parametrize(("image", "words"), [("folder", "it is a folder, not an image file"),
                                              ("/dev/null", "it is not a regular file")])
def test_an_image_that_is_no_file_is_said_to_be_what_it_is(files, tmp_path, image, words):
    d, _ = files
    proc = run("split", d if image == "folder" else image, "--labels", d / "labels.png", "-o", tmp_path / "x.ora")
    one_line_failure(proc, words)  # both were "no such file"
    assert list(tmp_path.iterdir()) == []


def test_an_object_the_file_makes_transparent_is_named_in_a_note(files, tmp_path):
    """A PNG whose transparent palette entry (or grey) is an object's value: that object's pixels are clear, so no
    object, which a note now says instead of a stack one layer short without a word."""
    d, _ = files
    proc = run("split", d / "scene.png", "--labels", d / "labels_clear2.png", "-o", tmp_path / "x.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert "note: label 2 is only on pixels the file makes transparent" in proc.stderr
    assert [la.name for la in read_ora(tmp_path / "x.ora")[0]] == ["object 1", "object 3", "background", "original"]


def test_a_half_transparent_picture_is_split_and_the_summary_measures_what_it_shows(files, tmp_path):
    """An RGBA picture fading from transparent (stored black) to opaque: the layers show it again, and the summary's
    recomposition error says so (compared premultiplied: it said 116/255 from the transparent pixels' colours)."""
    d, _ = files
    image = np.asarray(Image.open(d / "scene.png").convert("RGB"))
    ramp = np.clip((np.arange(SIZE) - 20) * 255 // 90, 0, 255).astype(np.uint8)
    rgba = np.dstack([image, np.broadcast_to(ramp, (SIZE, SIZE))])
    rgba[rgba[..., 3] == 0, :3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    proc = run("split", tmp_path / "rgba.png", "--labels", d / "labels.png", "-o", tmp_path / "out.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    summary = float(proc.stderr.rsplit("recomposition error ", 1)[1].split("/255")[0])
    assert summary <= 1.0
    layers, w, h = read_ora(tmp_path / "out.ora")
    merged = flatten(layers, w, h)  # straight RGBA
    source = rgba.astype(np.float32) / 255
    assert np.abs(merged[..., 3] - source[..., 3]).max() <= 1 / 255 + 1e-5
    premultiplied = np.abs(merged[..., :3] * merged[..., 3:] - source[..., :3] * source[..., 3:])
    assert premultiplied.max() <= 1 / 255 + 1e-5


def test_the_stack_recomposites_an_rgba_layer_and_keeps_its_transparency():
    image, labels, _ = scene()
    rgba = np.dstack([image, np.ones((SIZE, SIZE), np.float32)])
    rgba[:, :20, 3] = 0.0  # a transparent strip of the layer
    objects = label_values(labels)
    assert objects == [1, 2, 3]
    peeled = split_objects(rgba, [(labels == k).astype(np.float32) for k in objects], SplitOptions(quantize=255))
    out = peeled.composite()
    shown = rgba[..., 3] > 0
    assert np.abs(out[..., :3] - rgba[..., :3])[shown].max() <= 1 / 255 + 1e-5
    np.testing.assert_allclose(out[..., 3], rgba[..., 3], atol=1e-6)
    assert len(peeled.layers) == 3 and peeled.background is not None and peeled.background.shape == rgba.shape


def test_one_labelled_object_is_one_layer_and_the_background(files, tmp_path):
    d, _ = files
    labels = np.asarray(Image.open(d / "labels.png"))
    Image.fromarray(np.where(labels == 2, 2, 0).astype(np.uint8), "L").save(tmp_path / "one.png")
    proc = run("split", d / "scene.png", "--labels", tmp_path / "one.png", "-o", tmp_path / "out.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert "into 1 object (label 2) and the background" in proc.stderr
    layers, _, _ = read_ora(tmp_path / "out.ora")
    assert [la.name for la in layers] == ["object 2", "background", "original"]


def test_a_picture_stored_turned_is_split_as_it_shows(files, tmp_path):
    """A phone's photo is stored sideways with an EXIF orientation that viewers and paint programs apply, so labels
    painted on it as it shows fit it as it shows. It was split as stored: sideways, the labels across the objects."""
    d, _ = files
    shown = np.asarray(Image.open(d / "scene.png").convert("RGB"))
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(shown, 1)))  # orientation 6: viewers turn it clockwise
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "turned.png", exif=exif.tobytes())
    proc = run("split", tmp_path / "turned.png", "--labels", d / "labels.png", "-o", tmp_path / "out.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert f"note: IMAGE '{tmp_path / 'turned.png'}' is stored turned or mirrored (EXIF orientation 6): read " \
        "upright" in proc.stderr
    layers, w, h = read_ora(tmp_path / "out.ora")
    upright = shown.astype(np.float32) / 255
    assert [la.name for la in layers][-1] == "original"
    assert np.abs(layers[-1].pixels[..., :3] - upright).max() <= 0.5 / 255 + 1e-6
    assert np.abs(flatten(layers, w, h)[..., :3] - upright).max() <= 1 / 255 + 1e-5
    labels = np.asarray(Image.open(d / "labels.png"))
    assert iou(layers[0].pixels[..., 3] >= 0.5, labels == 1) > 0.9
    # labels drawn on the pixels as stored (sideways) do not fit: the error says why
    Image.fromarray(np.ascontiguousarray(np.rot90(labels[:, :-8], 1)), "L").save(tmp_path / "sideways.png")
    Image.fromarray(np.ascontiguousarray(labels[:, :-8]), "L").save(tmp_path / "narrow.png")
    Image.fromarray(np.ascontiguousarray(np.rot90(shown[:, :-8], 1))).save(tmp_path / "turned2.png",
                                                                           exif=exif.tobytes())
    proc = run("split", tmp_path / "turned2.png", "--labels", tmp_path / "sideways.png", "-o", tmp_path / "x.ora")
    assert proc.returncode == 2 and "error: --labels is 192x184, the image is 184x192: sizes must match (the image " \
        "is stored turned (EXIF orientation 6) and read upright" in proc.stderr, proc.stderr
    proc = run("split", tmp_path / "turned2.png", "--labels", tmp_path / "narrow.png", "-o", tmp_path / "x.ora")
    assert proc.returncode == 0, proc.stderr
    # a mask too, before the split starts (it said only that the sizes differ, after its first progress line)
    proc = run("split", tmp_path / "turned2.png", "--mask", tmp_path / "sideways.png", "-o", tmp_path / "y.ora")
    assert proc.returncode == 2 and "error: --mask is 192x184, the image is 184x192: sizes must match (the image " \
        "is stored turned (EXIF orientation 6) and read upright, as viewers show it: a mask drawn on its stored " \
        "pixels must be turned the same way" in proc.stderr, proc.stderr
    assert "hint" not in proc.stderr and not (tmp_path / "y.ora").exists()


def exif_after_pixels(path) -> None:
    """A PNG's eXIf chunk moved after its pixels (allowed, and what some writers do): only decoding finds it."""
    import struct

    data = path.read_bytes()
    chunks, at = [], 8
    while at < len(data):
        size = struct.unpack(">I", data[at:at + 4])[0]
        chunks.append(data[at:at + 12 + size])
        at += 12 + size
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(exif) == 1
    path.write_bytes(data[:8] + b"".join(rest[:-1] + exif + rest[-1:]))  # before IEND


def test_a_picture_whose_orientation_follows_its_pixels_is_split_as_it_shows(files, tmp_path):
    """Labels painted upright on a picture stored sideways whose EXIF orientation comes after its pixels: the
    headers give the stored size, width and height exchanged, which the check before decoding leaves to the one
    after (it was refused as "sizes must match")."""
    d, _ = files
    shown = np.asarray(Image.open(d / "scene.png").convert("RGB"))[:, :160]  # 160 wide, 192 high
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(shown, 1)))  # 192 wide, 160 high
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "turned.png", exif=exif.tobytes())
    exif_after_pixels(tmp_path / "turned.png")
    labels = np.ascontiguousarray(np.asarray(Image.open(d / "labels.png"))[:, :160])
    Image.fromarray(labels, "L").save(tmp_path / "labels.png")
    proc = run("split", tmp_path / "turned.png", "--labels", tmp_path / "labels.png", "-o", tmp_path / "out.ora",
               "--no-png")
    assert proc.returncode == 0, proc.stderr
    layers, w, h = read_ora(tmp_path / "out.ora")
    assert (w, h) == (160, 192)
    assert np.abs(flatten(layers, w, h)[..., :3] - shown / np.float32(255)).max() <= 1 / 255 + 1e-5
    one_line_failure(run("split", tmp_path / "turned.png", "--labels", d / "labels.png", "-o", tmp_path / "x.ora"),
                     "--labels is 192x192, the image is 192x160: sizes must match")


def test_an_object_labelled_only_where_the_picture_is_transparent_is_said_to_show_nowhere(files, tmp_path):
    """Nothing of it shows (its layer holds only its completion under the object in front): the summary says so
    rather than leave the artist looking for it."""
    d, _ = files
    labels = np.asarray(Image.open(d / "labels.png"))
    rgba = np.dstack([np.asarray(Image.open(d / "scene.png").convert("RGB")), np.full(labels.shape, 255, np.uint8)])
    around = cv2.dilate((labels == 2).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    rgba[around] = 0  # object 2 cut out of the picture, with its edge's band
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    proc = run("split", tmp_path / "cut.png", "--labels", d / "labels.png", "-o", tmp_path / "out.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert "note: label 2's pixels are all transparent in the picture: the object shows nowhere" in proc.stderr
    assert "label 1's" not in proc.stderr and "label 3's" not in proc.stderr
    layers, _, _ = read_ora(tmp_path / "out.ora")
    assert not layers[1].pixels[..., 3][~(labels == 1)].any()  # at most under object 1, which hides it


def test_pngs_an_earlier_run_left_beside_the_output_are_named_and_kept(files, tmp_path):
    """A second split to the same -o with fewer objects writes object2's PNG again, not objects 1 and 3's: theirs are
    from the first run. Left as they were (they may be the artist's only copy), and a note says which they are, so
    they are not taken for this run's layers."""
    d, _ = files
    first = run("split", d / "scene.png", "--labels", d / "labels.png", "-o", tmp_path / "out.ora")
    assert first.returncode == 0, first.stderr
    assert "not written by this run" not in first.stderr
    before = {k: (tmp_path / f"out_object{k}.png").read_bytes() for k in (1, 3)}
    labels = np.asarray(Image.open(d / "labels.png"))
    Image.fromarray(np.where(labels == 2, 2, 0).astype(np.uint8), "L").save(tmp_path / "one.png")
    (tmp_path / "out_object9.png").symlink_to(tmp_path / "gone.png")  # a dangling link: the note must not fail
    second = run("split", d / "scene.png", "--labels", tmp_path / "one.png", "-o", tmp_path / "out.ora")
    assert second.returncode == 0, second.stderr
    notes = [line for line in second.stderr.splitlines() if "not written by this run" in line]
    assert len(notes) == 1, second.stderr
    assert f"{tmp_path / 'out_object1.png'}, {tmp_path / 'out_object3.png'}, {tmp_path / 'out_object9.png'} " \
        "beside" in notes[0]
    assert "out_object2.png" not in notes[0] and "out_background.png" not in notes[0]
    assert {k: (tmp_path / f"out_object{k}.png").read_bytes() for k in (1, 3)} == before
    assert second.stdout.split() == [str(tmp_path / n) for n in ("out.ora", "out_object2.png", "out_background.png")]
    # an input named as an output would be is the user's file, not an earlier run's
    (tmp_path / "out_object7.png").write_bytes((tmp_path / "one.png").read_bytes())
    third = run("split", d / "scene.png", "--labels", tmp_path / "out_object7.png", "-o", tmp_path / "out.ora",
                "--no-png")
    assert third.returncode == 0, third.stderr
    notes = [line for line in third.stderr.splitlines() if "not written by this run" in line]
    assert len(notes) == 1 and "out_object7.png" not in notes[0] and "out_background.png" in notes[0], third.stderr


def outlined_discs(size: int, count: int) -> np.ndarray:
    """Line art as labels: `count` discs, each a 1-px outline (labels 1..count, in front) around its fill (count+1..):
    every outline lies between what is behind it (0) and its fill, as a smoothed map's blends do."""
    labels = np.zeros((size, size), np.uint8)
    for i in range(count):
        centre = (30 + (i % 2) * 90, 30 + (i // 2) * 90)
        cv2.circle(labels, centre, 25, count + 1 + i, -1)
        cv2.circle(labels, centre, 25, 1 + i, 1)
    return labels


def test_thin_objects_are_refused_as_a_smoothed_map_unless_the_user_says_they_are_objects(files, tmp_path):
    """Four 1-px outlines numbered in front of their fills lie only between lower and higher labels, as the blends of
    a smoothed map do: refused with a way out, --thin-labels, which splits them as the objects they are."""
    d, _ = files
    Image.fromarray(outlined_discs(SIZE, 4), "L").save(tmp_path / "outlines.png")
    args = ("split", d / "scene.png", "--labels", tmp_path / "outlines.png", "--no-png")
    one_line_failure(run(*args, "-o", tmp_path / "refused.ora"), "if they are objects a pixel or two thin (outlines, "
                     "line art), add --thin-labels")
    proc = run(*args, "--thin-labels", "-o", tmp_path / "out.ora")
    assert proc.returncode == 0, proc.stderr
    assert "into 8 objects (front to back: labels 1, 2, 3, 4, 5, 6, 7, 8)" in proc.stderr
    assert "note:" not in proc.stderr
    layers, w, h = read_ora(tmp_path / "out.ora")
    outline = layers[0].pixels[..., 3]
    assert outline[outlined_discs(SIZE, 4) == 1].min() >= 0.5  # the outline's layer holds it
    one_line_failure(run("split", d / "scene.png", "--mask", d / "labels.png", "--thin-labels", "-o",
                         tmp_path / "m.ora"), "--thin-labels applies to --labels only")


def test_a_few_values_only_between_others_are_split_and_named_in_a_note(files, tmp_path):
    """A 0/3 map resized smoothly gets 1 and 2 along its edge: few enough to be outlines, so split, but a note names
    them (they may be a smoothed map's blends)."""
    d, _ = files
    labels = np.asarray(Image.open(d / "labels.png"))
    half = Image.fromarray(np.where(labels == 1, 3, 0).astype(np.uint8)[::2, ::2], "L")
    half.resize((SIZE, SIZE), Image.BILINEAR).save(tmp_path / "resized.png")
    proc = run("split", d / "scene.png", "--labels", tmp_path / "resized.png", "-o", tmp_path / "out.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert ("note: labels 1, 2 lie only along the edges between others: objects a pixel or two thin, or the blends "
            "of a smoothed label map") in proc.stderr


def test_a_fully_transparent_picture_is_said_to_be_so(files, tmp_path):
    """Not blamed on its first label."""
    d, _ = files
    Image.fromarray(np.zeros((SIZE, SIZE, 4), np.uint8), "RGBA").save(tmp_path / "clear.png")
    proc = run("split", tmp_path / "clear.png", "--labels", d / "labels.png", "-o", tmp_path / "out.ora")
    one_line_failure(proc, "error: the layer is fully transparent: nothing to split")
