"""Mutated protocol messages: valid requests with hostile values, broken bytes and wrong frames (seeded).

Shared by the fuzz test and benchmarks/bench_soak.py.
"""

import random
from typing import Any

import msgpack
from layering_protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Echo,
    Generate,
    Hello,
    Image,
    Peel,
    Ping,
    Split,
    SplitLayers,
    Status,
    encode,
)


def _image(w: int, h: int, order: str = "RGBA") -> Image:
    channels = {"RGBA": 4, "L": 1}[order]
    return Image(w, h, order, "u8", bytes(w * h * channels))


BASES = [
    Ping(1.0), Hello("fuzz", PROTOCOL_VERSION), Status(), Cancel("nope"), Echo(_image(3, 2)),
    Split(_image(2, 2), mask=_image(2, 2, "L")),  # refused quickly: too small to split
    Peel(_image(2, 2), box=[0, 0, 1, 1], index=2), Split(_image(3, 3), phrase="a cat"),
    Generate("[a cat] on a sofa", width=8, height=8, steps=1),
    SplitLayers(_image(2, 2), _image(2, 2, "L")),  # no object: refused quickly
    SplitLayers(_image(3, 3), phrases=["a cat", "a vase"]),
]
HOSTILE: list[Any] = [
    None, True, False, 1.0, -1, 0, 2**63 - 1, -(2**63), "", "x" * 70_000, b"\x00\xff", [], {}, ["split"],
    {"a": {"b": [1, {"c": None}]}}, [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]], "RGBA", "u8", "split", "ping",
    {"w": 1, "h": 1, "channels": 4, "dtype": "u8", "order": "RGBA"}, float("nan"), float("inf"),
]
KEYS = ["v", "id", "re", "type", "body", "images"]


def _hostile(rng: random.Random) -> Any:
    return rng.choice(HOSTILE)


def mutate(rng: random.Random) -> list[bytes]:
    """One message, mutated one to three ways."""
    frames = [bytes(memoryview(f)) for f in encode(rng.choice(BASES), f"fuzz-{rng.getrandbits(48):x}")]
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        if kind < 0.35:  # a field of the header, the body or an image spec
            try:
                header = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
            except Exception:  # broken by an earlier mutation
                continue
            if not isinstance(header, dict):
                continue
            header.setdefault("body", {})
            header.setdefault("images", [])
            where = rng.random()
            if where < 0.4 or not header["body"] and not header["images"]:
                header[rng.choice(KEYS)] = _hostile(rng)
            elif where < 0.7 and header["images"] and isinstance(header["images"], list):
                entry = header["images"][rng.randrange(len(header["images"]))]
                spec = entry[1] if isinstance(entry, list) and len(entry) == 2 else None
                if isinstance(spec, dict):
                    spec[rng.choice(["w", "h", "channels", "dtype", "order", "zz"])] = _hostile(rng)
            elif isinstance(header.get("body"), dict):
                header["body"][rng.choice([*header["body"], "options", "box", "zz"])] = _hostile(rng)
            frames[0] = msgpack.packb(header, use_bin_type=True)
        elif kind < 0.6 and frames[0]:  # bytes of the header
            raw = bytearray(frames[0])
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            frames[0] = bytes(raw[: rng.randint(0, len(raw))] if rng.random() < 0.3 else raw)
        elif kind < 0.8:  # frames dropped, repeated or added
            choice = rng.random()
            if choice < 0.3 and len(frames) > 1:
                del frames[rng.randrange(1, len(frames))]
            elif choice < 0.6:
                frames.append(frames[-1])
            else:
                frames += [bytes(rng.randrange(64))] * rng.randint(1, 8)
        elif len(frames) > 1:  # an image frame of the wrong length
            i = rng.randrange(1, len(frames))
            frames[i] = frames[i][: rng.randrange(len(frames[i]) + 1)] + bytes(rng.randrange(3))
    return frames
