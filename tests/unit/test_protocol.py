import msgpack
import pytest
from layering_protocol import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    Cancelled,
    Capabilities,
    Echo,
    EchoReply,
    Error,
    ErrorCode,
    Generate,
    Hello,
    Image,
    Peel,
    Ping,
    Pong,
    Progress,
    ProtocolError,
    Result,
    Split,
    SplitLayers,
    Status,
    StatusReply,
    decode,
    encode,
)


def img(w=3, h=2, order="RGBA", dtype="u8", fill=7):
    size = {"u8": 1, "u16": 2, "f32": 4}[dtype]
    channels = {"RGBA": 4, "BGRA": 4, "RGB": 3, "BGR": 3, "L": 1}[order]
    return Image(w, h, order, dtype, bytes([fill]) * (w * h * channels * size))


SAMPLES = [
    Hello("krita", PROTOCOL_VERSION),
    Capabilities("layeringdiff 0.1", PROTOCOL_VERSION, ["split", "peel"], 1000, {"sdxl": "missing"}),
    Ping(1.5),
    Pong(1.5, True),
    Split(img(), mask=img(order="L"), options={"alpha_mode": "mask"}),
    Split(img(dtype="f32"), box=[0, 1, 2, 2]),
    Peel(img(order="BGRA", dtype="u16"), phrase="a bird", index=2),
    SplitLayers(img(order="BGRA"), img(order="L", fill=2), options={"band": 4}),
    SplitLayers(img(), img(order="BGRA"), order="auto"),
    SplitLayers(img(), phrases=["a cat", "a vase"], options={"policy": "union"}),
    SplitLayers(img(), auto=True),
    Generate("[a cat] on a sofa", width=512, height=768, steps=4, guidance=7.5, seed=3),
    Echo(img(w=5, h=5, order="RGB")),
    Cancel("abc"),
    Status(),
    StatusReply(True, "abc", "matting", 2),
    Accepted("abc", 1),
    Progress("abc", "matting", 0.25, "solving"),
    Result("abc", img(), img(), img(order="L"), {"method": "classical", "recomposition_error": 0.001}),
    Result("stack", img(), img(), img(order="L"), {}, behind=[img(fill=1), img(fill=2), img(fill=3)]),
    EchoReply(img()),
    Error(ErrorCode.BAD_INPUT, "empty mask", "select something", job="abc"),
    Cancelled("abc"),
]


def test_image_lists_keep_their_order():
    frames = encode(Result("j", img(), img(), img(order="L"), behind=[img(fill=5), img(fill=9)]))
    assert len(frames) == 6
    got = decode(frames).message.behind
    assert [bytes(i.data)[0] for i in got] == [5, 9]


def test_every_message_type_has_a_sample():
    assert {type(m).TYPE for m in SAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).TYPE)
def test_round_trip(message):
    frames = encode(message, "id-1", reply_to="id-0")
    env = decode(frames)
    assert env.id == "id-1" and env.reply_to == "id-0" and env.version == PROTOCOL_VERSION
    got = env.message
    assert type(got) is type(message)
    for name, value in vars(message).items():
        other = getattr(got, name)
        if isinstance(value, Image):
            assert (other.width, other.height, other.order, other.dtype) == (
                value.width, value.height, value.order, value.dtype)
            assert bytes(other.data) == bytes(value.data)
        elif isinstance(value, list) and value and isinstance(value[0], Image):
            assert [bytes(o.data) for o in other] == [bytes(v.data) for v in value]
        else:
            assert other == value


def test_images_travel_as_raw_frames_not_in_header():
    frames = encode(Split(img(w=100, h=100), mask=img(w=100, h=100, order="L")))
    assert len(frames) == 3
    assert len(frames[0]) < 500  # header only describes them
    assert len(frames[1]) == 100 * 100 * 4 and len(frames[2]) == 100 * 100


def header(**over):
    h = {"v": PROTOCOL_VERSION, "id": "x", "re": None, "type": "ping", "body": {}, "images": []}
    h.update(over)
    return msgpack.packb(h, use_bin_type=True)


def split_frames(spec_over=None, data=None, extra_frames=()):
    spec = {"w": 2, "h": 2, "channels": 4, "dtype": "u8", "order": "RGBA"}
    spec.update(spec_over or {})
    hdr = header(type="split", images=[["image", spec]], body={"box": [0, 0, 1, 1]})
    return [hdr, data if data is not None else b"\0" * 16, *extra_frames]


MALFORMED = {
    "empty": ([], ErrorCode.BAD_MESSAGE),
    "not msgpack": ([b"\xc1\xc1\xc1"], ErrorCode.BAD_MESSAGE),
    "truncated msgpack": ([header()[:-3]], ErrorCode.BAD_MESSAGE),
    "not a map": ([msgpack.packb([1, 2, 3])], ErrorCode.BAD_MESSAGE),
    "no version": ([msgpack.packb({"id": "x", "type": "ping"})], ErrorCode.VERSION_MISMATCH),
    "old version": ([header(v=0)], ErrorCode.VERSION_MISMATCH),
    "newer version": ([header(v=PROTOCOL_VERSION + 1)], ErrorCode.VERSION_MISMATCH),
    "no id": ([header(id=None)], ErrorCode.BAD_MESSAGE),
    "bad reply-to": ([header(re=5)], ErrorCode.BAD_MESSAGE),
    "unknown type": ([header(type="explode")], ErrorCode.UNKNOWN_TYPE),
    "body not a map": ([header(body=[1])], ErrorCode.BAD_MESSAGE),
    "missing field": ([header(type="cancel")], ErrorCode.MISSING_FIELD),
    "wrong field type": ([header(type="cancel", body={"job": 5})], ErrorCode.BAD_FIELD),
    "bool for int": ([header(type="hello", body={"client": "k", "protocol": True})], ErrorCode.BAD_FIELD),
    "unknown field": ([header(body={"time": 1.0, "evil": 1})], ErrorCode.BAD_FIELD),
    "list of wrong items": ([header(type="split", images=[], body={"box": ["a"]})], ErrorCode.BAD_FIELD),
    "missing image": ([header(type="split", body={"box": [0, 0, 1, 1]})], ErrorCode.MISSING_FIELD),
    "frame count, extra": (split_frames(extra_frames=[b"x"]), ErrorCode.FRAME_MISMATCH),
    "frame count, missing": (split_frames()[:1], ErrorCode.FRAME_MISMATCH),
    "frame size short": (split_frames(data=b"\0" * 15), ErrorCode.FRAME_MISMATCH),
    "frame size long": (split_frames(data=b"\0" * 17), ErrorCode.FRAME_MISMATCH),
    "bad dtype": (split_frames({"dtype": "f64"}), ErrorCode.BAD_FIELD),
    "bad order": (split_frames({"order": "ARGB"}), ErrorCode.BAD_FIELD),
    "channels mismatch": (split_frames({"channels": 3}), ErrorCode.BAD_FIELD),
    "zero width": (split_frames({"w": 0}), ErrorCode.BAD_FIELD),
    "negative height": (split_frames({"h": -2}), ErrorCode.BAD_FIELD),
    "spec missing key": (split_frames({"order": None}), ErrorCode.BAD_FIELD),
    "image in body": ([header(type="echo", body={"image": b"abc"})], ErrorCode.BAD_FIELD),
    "image field unknown": ([header(type="ping", images=[["x", {}]]), b""], ErrorCode.BAD_FIELD),
    "images entry shape": ([header(type="echo", images=["image"]), b""], ErrorCode.BAD_MESSAGE),
    "reply type as image name twice": (
        [header(type="echo", images=[["image", {"w": 1, "h": 1, "channels": 1, "dtype": "u8", "order": "L"}]] * 2),
         b"\0", b"\0"], ErrorCode.BAD_FIELD),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_raise_clear_errors(name):
    frames, code = MALFORMED[name]
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.code == code
    assert info.value.text  # a sentence for the user, not just a code


def test_oversized_image_rejected_before_reading_the_frame():
    spec = {"w": 5000, "h": 5000, "channels": 4, "dtype": "u8", "order": "RGBA"}
    frames = [header(type="echo", images=[["image", spec]]), b""]
    with pytest.raises(ProtocolError) as info:
        decode(frames, max_pixels=4096 * 4096)
    assert info.value.code == ErrorCode.IMAGE_TOO_LARGE
    assert "5000x5000" in info.value.text


def test_version_mismatch_text_says_what_to_do():
    with pytest.raises(ProtocolError) as info:
        decode([header(v=99)])
    assert "99" in info.value.text and "update" in info.value.detail


def test_encode_checks_image_size():
    bad = Image(4, 4, "RGBA", "u8", b"\0" * 10)
    with pytest.raises(ProtocolError) as info:
        encode(Echo(bad))
    assert info.value.code == ErrorCode.FRAME_MISMATCH


def test_encode_refuses_non_messages():
    with pytest.raises(ProtocolError):
        encode(object())


def test_protocol_package_imports_only_stdlib_and_msgpack():
    import ast
    import pathlib
    import sys

    import layering_protocol

    allowed = set(sys.stdlib_module_names) | {"msgpack"}
    for path in pathlib.Path(layering_protocol.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_peek_id_of_a_message_that_fails_to_decode():
    from layering_protocol import peek_id

    assert peek_id([header(v=99, id="abc")]) == "abc"
    assert peek_id([b"\xc1"]) is None
    assert peek_id([msgpack.packb([1])]) is None


@pytest.mark.parametrize("text,plain,phrases", [
    ("[a bird flying] at sunset over the mountains", "a bird flying at sunset over the mountains", ["a bird flying"]),
    ("[a cat] and [a dog]  on a sofa", "a cat and a dog on a sofa", ["a cat", "a dog"]),
    ("a quiet lake", "a quiet lake", []),
])
def test_parse_prompt(text, plain, phrases):
    from layering_protocol import parse_prompt

    assert parse_prompt(text) == (plain, phrases)


@pytest.mark.parametrize("text", ["[a cat on a sofa", "a cat] on", "[] on a sofa", "[[a]]"])
def test_parse_prompt_errors(text):
    from layering_protocol import parse_prompt

    with pytest.raises(ValueError):
        parse_prompt(text)


def test_curve_key_files(tmp_path):
    from layering_protocol.curve import client_key_pair, read_key_file, server_public_key

    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    secret = tmp_path / "m.key_secret"
    secret.write_text(f'metadata\ncurve\n    public-key = "{key}"\n    secret-key = "{key[::-1]}"\n')
    assert client_key_pair(str(secret)) == (key.encode(), key[::-1].encode())
    assert server_public_key(f"  {key}\n") == key.encode() and server_public_key(str(secret)) == key.encode()
    bad = tmp_path / "bad.key"
    for text, words in ((f'curve\n    public-key = "{key[:-1]}"\n', "not 40 characters"),
                        ("hello\n", "not a key file")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=words):
            read_key_file(str(bad))
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="cannot read"):
        read_key_file(str(bad))
    with pytest.raises(ValueError, match="40-character"):
        server_public_key("short")


@pytest.mark.parametrize("version", [True, 1.0, "1", [1], None])
def test_the_version_is_exactly_the_integer(version):
    with pytest.raises(ProtocolError) as info:
        decode([header(v=version)])
    assert info.value.code == ErrorCode.VERSION_MISMATCH


@pytest.mark.parametrize("field,value,code", [
    ("type", ["split"], ErrorCode.BAD_MESSAGE),
    ("type", {"a": 1}, ErrorCode.BAD_MESSAGE),
    ("type", 5, ErrorCode.BAD_MESSAGE),
    ("dtype", ["u8"], ErrorCode.BAD_FIELD),
    ("dtype", {"u8": 1}, ErrorCode.BAD_FIELD),
    ("order", ["RGBA"], ErrorCode.BAD_FIELD),
    ("order", {"x": []}, ErrorCode.BAD_FIELD),
])
def test_lists_and_maps_where_names_belong_are_refused_not_crashed_on(field, value, code):
    if field == "type":
        frames = [header(type=value)]
    else:
        frames = split_frames({field: value})
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.code == code


def test_ids_and_headers_are_bounded_and_never_echoed():
    from layering_protocol import MAX_HEADER_BYTES, MAX_ID_LENGTH, peek_id

    huge = "x" * (1 << 20)
    for over in ({"id": huge}, {"id": "a" * (MAX_ID_LENGTH + 1)}, {"re": "b" * (MAX_ID_LENGTH + 1)}):
        frames = [header(**over)]
        with pytest.raises(ProtocolError) as info:
            decode(frames)
        assert info.value.code in (ErrorCode.BAD_MESSAGE, ErrorCode.TOO_LARGE)
        assert len(info.value.text) < 200
        assert peek_id(frames) == ("x" if "re" in over else None)
    with pytest.raises(ProtocolError) as info:  # a header over the limit is not even parsed
        decode([header(body={"time": 1.0}, pad="p" * MAX_HEADER_BYTES)])
    assert info.value.code == ErrorCode.TOO_LARGE and str(MAX_HEADER_BYTES) in info.value.text
    assert decode([header(id="i" * MAX_ID_LENGTH)]).id == "i" * MAX_ID_LENGTH
    with pytest.raises(ProtocolError) as info:  # nor is one made that the other side would refuse
        encode(Error(ErrorCode.BAD_INPUT, "t" * MAX_HEADER_BYTES))
    assert info.value.code == ErrorCode.TOO_LARGE


def test_hostile_values_are_cut_short_in_error_texts():
    for frames in ([header(type="t" * 60)], [header(v="v" * 100_000)], [header(body={"k" * 100_000: 1})],
                   split_frames({"dtype": "d" * 100_000}), split_frames({"w": [[[[[[[[[[1]]]]]]]]]] * 1000})):
        with pytest.raises(ProtocolError) as info:
            decode(frames)
        assert len(info.value.text) < 300, info.value.text


def test_check_header_names_the_pixel_limit_without_the_frames():
    from layering_protocol import check_header

    frames = split_frames({"w": 5000, "h": 5000})
    assert check_header(split_frames()[0]) == ("x", 1)
    with pytest.raises(ProtocolError) as info:
        check_header(frames[0], max_pixels=1000)
    assert info.value.code == ErrorCode.IMAGE_TOO_LARGE


def test_every_request_fits_the_frame_limit():
    import dataclasses

    from layering_protocol import MAX_REQUEST_FRAMES
    from layering_protocol.codec import _is_image_list, _is_image_type, _schema

    for cls in MESSAGE_TYPES.values():
        images = [tp for _, tp, _ in _schema(cls) if _is_image_type(tp)]
        if cls in (Hello, Ping, Split, Peel, SplitLayers, Generate, Echo, Cancel, Status):
            assert not any(_is_image_list(tp) for tp in images)
            assert 1 + len(images) <= MAX_REQUEST_FRAMES, cls.TYPE
        assert dataclasses.is_dataclass(cls)


def generate_frames(**body):
    return [header(type="generate", body={"prompt": "[a cat] on a sofa", **body})]


@pytest.mark.parametrize("body,words", [
    ({"width": -1024}, "'generate.width' must be a multiple of 8 from 8 to 2048, got -1024"),
    ({"height": 0}, "'generate.height'"),
    ({"width": 1020}, "multiple of 8"),
    ({"height": 2056}, "to 2048"),
    ({"steps": 0}, "'generate.steps' must be from 1 to 200"),
    ({"steps": 201}, "got 201"),
    ({"guidance": -0.5}, "'generate.guidance' must be from 0 to 100"),
    ({"guidance": float("nan")}, "got nan"),
    ({"guidance": float("inf")}, "'generate.guidance'"),
    ({"seed": -1}, "'generate.seed' must be from 0 to 2**64 - 1, got -1"),
])
def test_request_fields_out_of_range_are_refused_when_decoded(body, words):
    with pytest.raises(ProtocolError) as info:
        decode(generate_frames(**body))
    assert info.value.code == ErrorCode.BAD_FIELD and words in info.value.text


def test_request_fields_at_the_ends_of_their_ranges_are_taken():
    for body in ({"width": 8, "height": 2048, "steps": 1, "guidance": 0.0, "seed": 0},
                 {"width": 2048, "height": 8, "steps": 200, "guidance": 100, "seed": 2**64 - 1}):
        message = decode(generate_frames(**body)).message
        assert all(getattr(message, name) == value for name, value in body.items())
    spec = {"w": 2, "h": 2, "channels": 4, "dtype": "u8", "order": "RGBA"}
    for index, ok in ((1, True), (0, False), (-3, False)):
        frames = [header(type="peel", images=[["image", spec]], body={"box": [0, 0, 1, 1], "index": index}), bytes(16)]
        if ok:
            assert decode(frames).message.index == index
        else:
            with pytest.raises(ProtocolError, match="'peel.index' must be at least 1") as info:
                decode(frames)
            assert info.value.code == ErrorCode.BAD_FIELD


def test_limits_are_inclusive_at_their_exact_size():
    """A header of exactly MAX_HEADER_BYTES and a type name of exactly MAX_TYPE_LENGTH characters are within the
    limits (PROTOCOL.md: "at most"); one more is not."""
    from layering_protocol import MAX_HEADER_BYTES, peek_id
    from layering_protocol.limits import MAX_TYPE_LENGTH

    base = len(header(body={"time": 1.0}, pad="p" * 70_000))  # a str32 pad: its length prefix stays 5 bytes
    exact = header(body={"time": 1.0}, pad="p" * (70_000 + MAX_HEADER_BYTES - base))
    assert len(exact) == MAX_HEADER_BYTES
    assert isinstance(decode([exact]).message, Ping) and peek_id([exact]) == "x"
    over = header(body={"time": 1.0}, pad="p" * (70_001 + MAX_HEADER_BYTES - base))
    assert len(over) == MAX_HEADER_BYTES + 1 and peek_id([over]) is None
    with pytest.raises(ProtocolError) as info:
        decode([over])
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as info:  # long enough to be a name: refused as unknown, not as malformed
        decode([header(type="t" * MAX_TYPE_LENGTH)])
    assert info.value.code == ErrorCode.UNKNOWN_TYPE and info.value.text.startswith("unknown message type 'ttt")
    with pytest.raises(ProtocolError) as info:
        decode([header(type="t" * (MAX_TYPE_LENGTH + 1))])
    assert info.value.code == ErrorCode.BAD_MESSAGE


def test_encoding_what_is_not_a_message_or_a_wrong_sized_image_says_what():
    with pytest.raises(ProtocolError) as info:
        encode(object())
    assert (info.value.code, info.value.text) == (ErrorCode.UNKNOWN_TYPE, "not a protocol message: object")
    with pytest.raises(ProtocolError) as info:
        encode(Echo(Image(2, 2, "RGBA", "u8", bytes(15))))
    assert (info.value.code, info.value.text) == (ErrorCode.FRAME_MISMATCH, "image 'image' has 15 bytes, expected 16")


def test_a_header_that_is_not_msgpack_or_not_a_map_is_named():
    with pytest.raises(ProtocolError) as info:
        decode([b"\xc1"])
    assert (info.value.code, info.value.text) == (ErrorCode.BAD_MESSAGE, "header is not valid msgpack")
    assert info.value.detail
    with pytest.raises(ProtocolError) as info:
        decode([msgpack.packb([1, 2])])
    assert (info.value.code, info.value.text) == (ErrorCode.BAD_MESSAGE, "header must be a map, got list")


@pytest.mark.parametrize("over,code,text,detail", [
    ({"v": 2}, ErrorCode.VERSION_MISMATCH, "protocol version 2 received, this side speaks 1",
     "update the Krita plugin and the backend to the same release"),
    ({"id": ""}, ErrorCode.BAD_MESSAGE, "header lacks a message id (a string of 1 to 128 characters)", ""),
    ({"re": 5}, ErrorCode.BAD_MESSAGE, "'re' must be a message id (1 to 128 characters) or nil", ""),
    ({"body": []}, ErrorCode.BAD_MESSAGE, "'body' must be a map and 'images' a list", ""),
    ({"images": {}}, ErrorCode.BAD_MESSAGE, "'body' must be a map and 'images' a list", ""),
])
def test_header_refusals_say_what_to_fix_in_full(over, code, text, detail):
    with pytest.raises(ProtocolError) as info:
        decode([header(**over)])
    assert (info.value.code, info.value.text, info.value.detail) == (code, text, detail)


def test_a_map_key_that_is_not_a_string_is_named_and_the_reply_still_finds_its_request():
    """msgpack allows any key; the header is read anyway so that the refusal names the field and answers the
    request's id (a strict reader would fail the whole header and lose the id)."""
    from layering_protocol import peek_id

    frames = [msgpack.packb({"v": PROTOCOL_VERSION, "id": "x", "re": None, "type": "ping", "body": {1: 2},
                             "images": [], 7: "extra"})]
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert (info.value.code, info.value.text) == (ErrorCode.BAD_FIELD, "'ping' has no field 1")
    assert peek_id(frames) == "x"


def test_a_reply_header_of_exactly_the_limit_is_made():
    from layering_protocol import MAX_HEADER_BYTES

    def packed(n):
        return len(encode(Error(ErrorCode.BAD_INPUT, "t" * n), msg_id="m", reply_to="r")[0])

    n = 70_000 + MAX_HEADER_BYTES - packed(70_000)  # past 65535 characters the string's length prefix is fixed
    assert packed(n) == MAX_HEADER_BYTES
    with pytest.raises(ProtocolError):
        packed(n + 1)


@pytest.mark.parametrize("labels,order,words", [
    (img(w=4, order="L"), "labels", "'split_layers.labels' is 4x2, 'split_layers.image' is 3x2: sizes must match"),
    (img(order="L", dtype="u16"), "labels", "'split_layers.labels' must be a u8 image, got u16"),
    (img(order="L"), "front", "'split_layers.order' must be one of labels, auto, got 'front'"),
    (img(order="RGBA"), "labels", "in flat colours says nothing of which object is in front: "
                                  "'split_layers.order' must be auto"),
])
def test_split_layers_refuses_labels_it_cannot_read_when_decoded(labels, order, words):
    with pytest.raises(ProtocolError) as info:
        decode(encode(SplitLayers(img(), labels, order=order)))
    assert info.value.code == ErrorCode.BAD_FIELD and words in info.value.text


@pytest.mark.parametrize("labels,phrases,order,words", [
    (None, [], "labels", "'split_layers' needs one of 'labels', 'phrases' or 'auto'"),
    (img(order="L"), ["cat"], "labels", "needs one of"),
    (None, ["cat", " "], "labels", "'split_layers.phrases' must be words, none empty"),
    (None, ["cat"] * 256, "labels", "'split_layers.phrases' names 256 objects, at most 255"),
    (None, ["cat"], "auto", "'split_layers.phrases' are front first: 'split_layers.order' must be labels"),
])
def test_split_layers_takes_labels_or_phrases(labels, phrases, order, words):
    with pytest.raises(ProtocolError) as info:
        decode(encode(SplitLayers(img(), labels, order=order, phrases=phrases)))
    assert info.value.code == ErrorCode.BAD_FIELD and words in info.value.text
    message = decode(encode(SplitLayers(img(), phrases=["cat"] * 255))).message
    assert message.labels is None and len(message.phrases) == 255


@pytest.mark.parametrize("labels,phrases,colours,words", [
    (None, ["cat"], ["#c8281e"], "'split_layers.colours' orders the colours of 'split_layers.labels'; there are none"),
    (img(order="L"), [], ["#c8281e"], "orders a label layer in flat colours; 'split_layers.labels' is L"),
    (img(order="RGBA"), [], ["c8281e"], "'split_layers.colours' are \"#rrggbb\" codes, got 'c8281e'"),
    (img(order="RGBA"), [], ["#c8281e", "#12345"], "codes, got '#12345'"),
    (img(order="RGBA"), [], ["#C8281E", "#c8281e"], "'split_layers.colours' names a colour twice"),
    (img(order="RGBA"), [], [f"#{k:06x}" for k in range(256)], "names 256 colours, at most 255"),
])
def test_split_layers_colours_order_a_label_layer_s_flat_colours(labels, phrases, colours, words):
    with pytest.raises(ProtocolError) as info:
        decode(encode(SplitLayers(img(), labels, order="auto", phrases=phrases, colours=colours)))
    assert info.value.code == ErrorCode.BAD_FIELD and words in info.value.text
    message = decode(encode(SplitLayers(img(), img(order="BGRA"), order="auto", colours=["#C8281E", "#145adc"])))
    assert message.message.colours == ["#C8281E", "#145adc"]
    with pytest.raises(ProtocolError) as info:  # a list of strings, nothing else
        decode(encode(SplitLayers(img(), img(order="BGRA"), order="auto", colours=[3])))
    assert info.value.code == ErrorCode.BAD_FIELD
