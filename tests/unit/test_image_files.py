"""Reading image files: 16-bit grey and colour at full precision, and the pixel limit checked from the header."""

import cv2
import numpy as np
import pytest
from layeringdiff.errors import InputError
from layeringdiff.io.images import load_image, load_mask
from PIL import Image, ImageFile, features

RAMP = (np.linspace(0, 65535, 48 * 32).reshape(32, 48)).astype(np.uint16)


def test_sixteen_bit_grey_is_not_clipped_to_white(tmp_path):
    Image.fromarray(RAMP).save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert image.shape == (32, 48, 3)
    np.testing.assert_allclose(image[..., 1], RAMP / 65535, atol=1e-6)
    np.testing.assert_allclose(load_mask(tmp_path / "g.png"), RAMP / 65535, atol=1e-6)


def test_a_float_grey_tiff_is_its_grey_not_black(tmp_path):
    """GIMP's grey export at float precision (Pillow's mode F, 0..1): Pillow's own F->RGB truncated it to black."""
    ramp = (RAMP / 65535).astype(np.float32)
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tif")
    image = load_image(tmp_path / "f.tif")
    assert image.shape == (32, 48, 3)
    np.testing.assert_allclose(image, np.repeat(ramp[..., None], 3, axis=2), atol=1e-6)


def _uint32_grey_tiff(path, values: np.ndarray) -> None:
    """An uncompressed little-endian unsigned 32-bit grey TIFF, written field by field (Pillow writes mode I as
    signed, and OpenCV cannot write 32-bit unsigned)."""
    import struct

    h, w = values.shape
    data = values.astype("<u4").tobytes()
    tags = [(256, w), (257, h), (258, 32), (259, 1), (262, 1), (273, 0), (277, 1), (278, h), (279, len(data)),
            (339, 1)]  # SampleFormat 1: unsigned
    start = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", tag, 4, 1, start if tag == 273 else value) for tag, value in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data)


def test_a_32_bit_integer_grey_tiff_is_read_over_its_whole_range(tmp_path):
    """Pillow's mode I: before, it was divided by 65535 (white past 1/65536 of the range) and an unsigned file's
    top half came negative (black)."""
    ramp = RAMP.astype(np.float64) / 65535
    Image.fromarray(np.round(ramp * 2147483647).astype(np.int32), mode="I").save(tmp_path / "s.tif")
    _uint32_grey_tiff(tmp_path / "u.tif", np.round(ramp * 4294967295).astype(np.uint32))
    for name in ("s.tif", "u.tif"):
        image = load_image(tmp_path / name)
        assert image.shape == (32, 48, 3)
        np.testing.assert_allclose(image[..., 0], ramp, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(load_mask(tmp_path / name), ramp, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_keeps_its_precision(tmp_path, suffix, channels):
    rgba = np.dstack([RAMP, RAMP[::-1], np.full_like(RAMP, 30001), RAMP // 2 + 7])[..., :channels]
    path = tmp_path / f"c{suffix}"
    cv2.imwrite(str(path), rgba[..., [2, 1, 0, 3][:channels]])  # OpenCV writes BGR(A)
    image = load_image(path)
    assert image.shape == (32, 48, channels)
    np.testing.assert_allclose(image, rgba / 65535, atol=1e-6)  # 8-bit reading would be 1/255 off
    if channels == 4:  # its alpha, which varies
        np.testing.assert_allclose(load_mask(path), (RAMP // 2 + 7) / 65535, atol=1e-6)
    else:  # a colour mask is its brightest channel, at full precision
        np.testing.assert_allclose(load_mask(path), np.maximum(RAMP, RAMP[::-1]) / 65535, atol=1e-6)


def test_eight_bit_files_are_unchanged(tmp_path):
    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_array_equal(load_image(tmp_path / "c.png"), rgb / np.float32(255))


def test_the_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or real_load(self))
    for loader in (load_image, load_mask):
        with pytest.raises(InputError, match="300x200 = 60000 pixels, more than the limit of 59999"):
            loader(tmp_path / "big.png", max_pixels=59_999)
    assert not decoded
    assert load_image(tmp_path / "big.png", max_pixels=60_000).shape == (200, 300, 3)
    assert decoded


def _selection(tmp_path, pixels: np.ndarray, name: str) -> np.ndarray:
    Image.fromarray(pixels).save(tmp_path / name)
    return load_mask(tmp_path / name)


def test_masks_as_editors_and_scripts_save_them(tmp_path):
    """What the user painted is what is selected, whichever way the file stores it."""
    inside = np.zeros((20, 30), bool)
    inside[5:15, 8:20] = True
    # painted in red on black: selected where painted (its luminance would be 0.3)
    red = np.zeros((20, 30, 3), np.uint8)
    red[inside, 0] = 255
    np.testing.assert_array_equal(_selection(tmp_path, red, "red.png"), inside)
    # white on black with the opaque alpha channel an editor adds: the grey levels, not the alpha (all selected)
    opaque = np.dstack([np.repeat((inside * 255).astype(np.uint8)[..., None], 3, axis=2),
                        np.full((20, 30), 255, np.uint8)])
    np.testing.assert_array_equal(_selection(tmp_path, opaque, "opaque.png"), inside)
    la = np.dstack([(inside * 255).astype(np.uint8), np.full((20, 30), 255, np.uint8)])
    np.testing.assert_array_equal(_selection(tmp_path, la, "la.png"), inside)
    # a selection saved as transparency (any colour): its alpha
    shaped = np.dstack([np.full((20, 30, 3), 255, np.uint8), (inside * 200).astype(np.uint8)])
    np.testing.assert_allclose(_selection(tmp_path, shaped, "shaped.png"), inside * 200 / 255, atol=1e-6)
    # a boolean array saved as 0/1, in 8 and 16 bits: selected where 1
    np.testing.assert_array_equal(_selection(tmp_path, inside.astype(np.uint8), "ones.png"), inside)
    np.testing.assert_array_equal(_selection(tmp_path, inside.astype(np.uint16), "ones16.png"), inside)
    # a soft mask keeps its levels, its faintest ones included
    soft = np.zeros((20, 30), np.uint8)
    soft[inside] = 1
    soft[0, 0] = 2
    np.testing.assert_allclose(_selection(tmp_path, soft, "soft.png"), soft / 255, atol=1e-7)


def test_only_an_8_bit_png_is_stored_as_it_is(tmp_path):
    """A layered file keeps an 8-bit RGB(A) PNG's own bytes as its original; a 16-bit one (which Pillow calls RGB
    too, and reads by its high bytes: truncated) is encoded again from the full-precision pixels, rounded."""
    from layeringdiff.io.images import png_file_bytes

    colour = np.dstack([RAMP, RAMP[::-1], RAMP])
    cv2.imwrite(str(tmp_path / "deep.png"), colour)
    cv2.imwrite(str(tmp_path / "eight.png"), (colour >> 8).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "photo.jpg"), (colour >> 8).astype(np.uint8))
    assert png_file_bytes(tmp_path / "deep.png") is None
    assert png_file_bytes(tmp_path / "eight.png") == (tmp_path / "eight.png").read_bytes()
    assert png_file_bytes(tmp_path / "photo.jpg") is None


@pytest.mark.parametrize("turn", range(1, 9))
def test_a_file_stored_turned_or_mirrored_is_read_as_viewers_show_it(tmp_path, turn):
    """A phone's JPEG is stored sideways with an EXIF orientation that viewers and paint programs apply; a picture,
    its mask and its labels are read as they show (Pillow's exif_transpose the reference), the header gives the
    size as it shows (a --box's, for the memory estimate), and an oriented PNG is not stored as it is as the
    original layer (its pixels would be the sideways ones). The orientation is found from the header (a note's) as
    from the decoded file."""
    from layeringdiff.io.images import file_orientation, load_labels, load_upright, png_file_bytes, read_header
    from PIL import ImageOps

    rng = np.random.default_rng(turn)
    pixels = rng.integers(0, 256, (12, 7, 3), np.uint8)
    labels = rng.integers(0, 4, (12, 7), np.uint8)
    for name, array in (("rgb.png", pixels), ("labels.png", labels)):
        img = Image.fromarray(array)
        exif = img.getexif()
        exif[0x0112] = turn
        img.save(tmp_path / name, exif=exif.tobytes())
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "rgb.png")))
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), shown / np.float32(255))
    np.testing.assert_array_equal(load_mask(tmp_path / "rgb.png"), shown.max(axis=2) / np.float32(255))
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.png"),
                                  np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "labels.png"))))
    assert load_upright(tmp_path / "rgb.png")[1] == turn == file_orientation(tmp_path / "labels.png")
    assert (png_file_bytes(tmp_path / "rgb.png", turn) is None) is (turn != 1)
    header = read_header(tmp_path / "rgb.png")  # the size a --box is given in, for the memory estimate
    assert (header.height, header.width) == shown.shape[:2]
    # a TIFF too, which Pillow turns upright itself as it decodes it (dropping the tag: no note said it was turned)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = turn
    img.save(tmp_path / "rgb.tif", exif=exif.tobytes())
    upright, found = load_upright(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(upright, shown / np.float32(255))
    assert found == turn


def grey_png(path, values: np.ndarray, bits: int, transparent: int | None = None) -> None:
    """A grey PNG of 1, 2 or 4 bits a sample, packed by hand (Pillow writes grey at 8 or 16 bits only); with a
    transparent grey (tRNS) if given."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = values.shape
    rows = b"".join(b"\0" + np.packbits(np.unpackbits(values.astype(np.uint8)[:, :, None], axis=2)[:, :, 8 - bits:]
                                        .reshape(h, w * bits)[y]).tobytes() for y in range(h))
    trns = chunk(b"tRNS", struct.pack(">H", transparent)) if transparent is not None else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, 0, 0, 0, 0))
                     + trns + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def save_labels(path, labels: np.ndarray, how: str) -> np.ndarray:
    """`labels` saved as another tool would; returns the labels the file means."""
    if how in ("grey2", "grey4", "bit1"):
        grey_png(path, labels, {"grey2": 2, "grey4": 4, "bit1": 1}[how])
    elif how == "grey16":
        Image.fromarray(labels.astype(np.uint16)).save(path)
    elif how in ("la_opaque", "la_clear", "rgba_clear"):
        alpha = np.full(labels.shape, 255, np.uint8)
        if how != "la_opaque":  # the label layer's unpainted pixels: clear, whatever colour they keep
            alpha[labels == 0] = 0
        stored = np.where(labels == 0, 77, labels).astype(np.uint8)
        channels = [stored] if how.startswith("la") else [stored, stored, np.where(labels == 0, 200, labels)]
        Image.fromarray(np.dstack([*channels, alpha]).astype(np.uint8),
                        "LA" if how.startswith("la") else "RGBA").save(path)
        if how == "la_opaque":
            return stored
    elif how == "rgb_grey":
        Image.fromarray(labels).convert("RGB").save(path)
    elif how == "grey_trns":  # a PNG optimiser's form of a grey map with clear pixels: one transparent grey
        Image.fromarray(np.where(labels == 0, 9, labels).astype(np.uint8)).save(path, transparency=9)
    elif how == "palette_trns":  # index 9 clear in the palette, label 3's pixels opaque
        img = Image.fromarray(np.where(labels == 0, 9, labels).astype(np.uint8), "P")
        img.putpalette(list(range(256)) * 3)
        img.save(path, transparency=bytes([255] * 9 + [0]))
    elif how == "rgb_trns":
        Image.fromarray(np.where(labels == 0, 9, labels).astype(np.uint8)).convert("RGB").save(path,
                                                                                          transparency=(9, 9, 9))
    return labels


@pytest.mark.parametrize("how", ["grey2", "grey4", "bit1", "grey16", "la_opaque", "la_clear", "rgba_clear",
                                 "rgb_grey", "grey_trns", "rgb_trns", "palette_trns"])
def test_labels_saved_by_other_tools_are_read_as_their_values(tmp_path, how):
    """A label map saved by another tool: 1-, 2- and 4-bit grey (which Pillow scales to 0-255: label 1 read as 85 at
    2 bits), 16-bit grey (an instance map), grey with an alpha that is opaque or clear (a label layer exported with
    its unpainted pixels clear), grey saved as colour. Each is read as the values it stores."""
    from layeringdiff.io.images import load_labels

    labels = np.random.default_rng(5).integers(0, 2 if how == "bit1" else 4, (9, 13)).astype(np.uint8)
    meant = save_labels(tmp_path / "l.png", labels, how)
    np.testing.assert_array_equal(load_labels(tmp_path / "l.png"), meant)


def test_a_transparent_grey_clears_its_pixels_at_16_and_1_bits_too(tmp_path):
    """tRNS in a 16-bit grey label PNG (an object's value, or one past 255) and in a 1-bit one (Pillow says 255 for a
    stored 1): no object there, as at 8, 4 and 2 bits (before: still split as objects)."""
    from layeringdiff.io.images import load_labels

    labels = np.random.default_rng(7).integers(0, 4, (9, 13)).astype(np.uint8)
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "a.png", transparency=2)
    hidden: list[int] = []
    np.testing.assert_array_equal(load_labels(tmp_path / "a.png", hidden=hidden), np.where(labels == 2, 0, labels))
    assert hidden == [2]
    Image.fromarray(np.where(labels == 0, 300, labels.astype(np.uint16))).save(tmp_path / "b.png", transparency=300)
    np.testing.assert_array_equal(load_labels(tmp_path / "b.png"), labels)  # 300: clear, not "labels are 0-255"
    ones = (labels > 0).astype(np.uint8)
    grey_png(tmp_path / "c.png", ones, 1, transparent=0)
    np.testing.assert_array_equal(load_labels(tmp_path / "c.png"), ones)
    grey_png(tmp_path / "d.png", 1 - ones, 1, transparent=1)  # the ones clear: the zeros stay no object
    np.testing.assert_array_equal(load_labels(tmp_path / "d.png"), np.zeros_like(ones))


@pytest.mark.parametrize(("how", "words"), [
    ("grey16_big", "a 16-bit grey image with values from 0 to 300 (labels are 0 to 255)"),
    ("la_soft", "with half-transparent pixels (a soft brush's edge"),
    ("palette_soft", "a paletted image with half-transparent pixels"),
    ("rgb_colour", "colour (RGB) image: labels are an 8-bit grey or paletted PNG (0: no object, 1: the frontmost "
                   "object, 2: the next, ...); a picture with one flat colour per object is what the Krita docker's"),
    ("webp", "is a WebP file: its values cannot be taken as labels"),
    ("rgb16", "a colour (RGB) image at 16 bits a channel: labels are"),
    ("tiff_jpeg", "is TIFF, jpeg-compressed: the compression changes the values along every edge"),
    pytest.param("avif", "is AVIF-compressed", marks=pytest.mark.skipif(not features.check("avif"),
                                                                         reason="this Pillow has no AVIF")),
])
def test_labels_whose_values_are_not_labels_are_refused(tmp_path, how, words):
    from layeringdiff.io.images import load_labels

    labels = np.random.default_rng(6).integers(0, 4, (9, 13)).astype(np.uint8)
    path = tmp_path / {"webp": "l.webp", "tiff_jpeg": "l.tif", "avif": "l.avif"}.get(how, "l.png")
    if how == "grey16_big":
        Image.fromarray(np.where(labels == 3, 300, labels.astype(np.uint16))).save(path)
    elif how == "la_soft":
        Image.fromarray(np.dstack([labels, np.where(labels == 0, 128, 255).astype(np.uint8)]), "LA").save(path)
    elif how == "rgb_colour":
        Image.fromarray(np.dstack([labels * 60, labels, labels]).astype(np.uint8)).save(path)
    elif how == "palette_soft":
        img = Image.fromarray(labels, "P")
        img.putpalette(list(range(256)) * 3)
        img.save(path, transparency=bytes([0, 255, 128]))  # label 2 half clear
    elif how == "rgb16":  # grey values in 16-bit colour: Pillow hands out the high bytes, all 0
        cv2.imwrite(str(path), np.dstack([labels] * 3).astype(np.uint16))
    elif how == "tiff_jpeg":
        Image.fromarray(labels * 60).save(path, compression="jpeg")
    elif how == "avif":
        Image.fromarray(labels * 60).save(path)
    else:
        Image.fromarray(labels).save(path, lossless=True)
    with pytest.raises(InputError) as info:
        load_labels(path)
    assert words in info.value.text


@pytest.mark.parametrize("mode,clear", [("RGB", (0, 0, 0)), ("L", 0)])
def test_an_eight_bit_png_s_transparent_colour_is_transparent(tmp_path, mode, clear):
    """PNG's tRNS colour in 8-bit RGB and grey (viewers, GIMP and Krita show those pixels clear): read as opaque
    black before, while the same picture at 16 bits was read clear."""
    pixels = np.full((8, 10, 3), (200, 120, 40), np.uint8)
    pixels[:, :4] = 0
    picture = Image.fromarray(pixels if mode == "RGB" else pixels[..., 0], mode)
    picture.save(tmp_path / "t.png", transparency=clear)
    image = load_image(tmp_path / "t.png")
    assert image.shape == (8, 10, 4)
    assert (image[:, :4, 3] == 0).all() and (image[:, 4:, 3] == 1).all()
