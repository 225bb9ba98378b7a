#!/usr/bin/env python3
"""A complete LayeringDiff client written from PROTOCOL.md alone: pyzmq, msgpack, numpy and Pillow, nothing
of this project.

    python examples/raw_client.py tcp://127.0.0.1:PORT photo.png --mask selection.png -o out/
    python examples/raw_client.py tcp://127.0.0.1:PORT photo.png --box 40 30 200 220 --option fill=smooth
    python examples/raw_client.py tcp://gpu-box:5557 photo.png --mask sel.png \\
        --server-key server.key --client-key alice-laptop.key_secret

It says hello (unless --no-hello), sends one `split` of IMAGE with a mask (grey levels: 255 = selected) or a
box, prints the job's progress, and writes foreground.png, background.png and alpha.png (8-bit) into the
output folder. Ctrl+C cancels the job (a second Ctrl+C leaves without waiting for the answer).

Exit status: 0 result written, 1 the server answered an error, 2 bad arguments or no answer, 130 cancelled.
"""

import argparse
import json
import re
import signal
import sys
import time
import uuid
from pathlib import Path

import msgpack
import numpy as np
import zmq
from PIL import Image

PROTOCOL_VERSION = 1
NUMPY_DTYPES = {"u8": "<u1", "u16": "<u2", "f16": "<f2", "f32": "<f4"}  # every multi-byte value little-endian
MAXIMUM = {"u8": 255, "u16": 65535}  # integers: 0..max means 0.0..1.0; floats are 0.0..1.0 themselves
CHANNELS = {"RGBA": 4, "BGRA": 4, "RGB": 3, "BGR": 3, "L": 1}
BGR_TO_RGB = [2, 1, 0, 3]  # the same permutation turns RGB(A) into BGR(A)
Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
KEY_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"\s*$')
PING_S = 1.0  # ping while waiting, so a server that is gone is noticed


# ---- CURVE key files ------------------------------------------------------------------------------------
def read_key_file(path: str) -> dict:
    """{'public': b'...', 'secret': b'...'} (Z85 text) from a .key or .key_secret certificate file."""
    keys = {}
    for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
        match = KEY_LINE.match(line)
        if match:
            if not Z85_KEY.match(match.group(2)):
                raise ValueError(f"{path}: the {match.group(1)} key is not 40 characters of Z85")
            keys[match.group(1)] = match.group(2).encode("ascii")
    if "public" not in keys:
        raise ValueError(f"{path} is not a key file (no public-key line)")
    return keys


def server_public_key(value: str) -> bytes:
    """The server's key: its 40 characters of Z85, or its server.key file."""
    value = value.strip()
    return value.encode("ascii") if Z85_KEY.match(value) else read_key_file(value)["public"]


# ---- images ---------------------------------------------------------------------------------------------
def image_frame(pixels: np.ndarray, order: str, dtype: str) -> tuple[dict, bytes]:
    """HxWxC (RGB(A) channel order) or HxW values in 0..1, or uint8 0..255 -> (spec, frame bytes)."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if order in ("BGRA", "BGR"):
        pixels = pixels[..., BGR_TO_RGB[: pixels.shape[2]]]
    if pixels.dtype == np.uint8 and dtype == "u8":
        data = pixels.astype("<u1")
    else:
        values = pixels.astype(np.float64) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float64)
        if dtype in MAXIMUM:
            data = np.round(np.clip(values, 0.0, 1.0) * MAXIMUM[dtype]).astype(NUMPY_DTYPES[dtype])
        else:
            data = values.astype(NUMPY_DTYPES[dtype])
    h, w, channels = data.shape
    assert channels == CHANNELS[order]
    spec = {"w": w, "h": h, "channels": channels, "dtype": dtype, "order": order}
    return spec, np.ascontiguousarray(data).tobytes()  # rows top to bottom, channels interleaved, no padding


def frame_pixels(spec: dict, frame: bytes) -> np.ndarray:
    """An image frame -> float64 HxWxC in RGB(A) order (HxW for L), values 0..1."""
    h, w, order, dtype = spec["h"], spec["w"], spec["order"], spec["dtype"]
    channels = CHANNELS[order]
    data = np.frombuffer(frame, dtype=NUMPY_DTYPES[dtype]).reshape(h, w, channels).astype(np.float64)
    if dtype in MAXIMUM:
        data /= MAXIMUM[dtype]
    if order in ("BGRA", "BGR"):
        data = data[..., BGR_TO_RGB[:channels]]
    data = np.clip(data, 0.0, 1.0)
    return data[..., 0] if channels == 1 else data


def save_png(pixels: np.ndarray, path: Path) -> None:
    u8 = np.round(pixels * 255.0).astype(np.uint8)
    Image.fromarray(u8, "L" if u8.ndim == 2 else "RGBA").save(path)


# ---- messages -------------------------------------------------------------------------------------------
def new_id() -> str:
    return uuid.uuid4().hex


def frames_of(msg_type: str, body: dict, images: list = (), msg_id: str | None = None) -> tuple[str, list]:
    """(id, frames): the msgpack header, then one raw frame per image, in the order `images` lists them."""
    msg_id = msg_id or new_id()
    header = {"v": PROTOCOL_VERSION, "id": msg_id, "re": None, "type": msg_type, "body": body,
              "images": [[name, spec] for name, spec, _ in images]}
    return msg_id, [msgpack.packb(header, use_bin_type=True), *(data for _, _, data in images)]


def parse(frames: list) -> tuple[dict, dict]:
    """(header, {field: [(spec, bytes), ...]}); a reply with another protocol version is still read, to show it."""
    header = msgpack.unpackb(frames[0], raw=False)
    images: dict = {}
    for i, (name, spec) in enumerate(header.get("images") or []):
        images.setdefault(name, []).append((spec, frames[i + 1]))
    return header, images


# ---- the client ------------------------------------------------------------------------------------------
class Interrupts:
    """Ctrl+C sets a flag (a cancel is sent from the loop); a second one leaves at once."""

    def __init__(self) -> None:
        self.count = 0
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, *_: object) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt


def connect(args: argparse.Namespace) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)  # no routing id, no empty delimiter frame: the header is the first frame
    sock.setsockopt(zmq.LINGER, 0)
    if args.server_key:
        keys = read_key_file(args.client_key)
        if "secret" not in keys:
            raise ValueError(f"{args.client_key} holds no secret key: use this machine's .key_secret file")
        sock.curve_serverkey = server_public_key(args.server_key)
        sock.curve_publickey, sock.curve_secretkey = keys["public"], keys["secret"]
    sock.connect(args.endpoint)
    return ctx, sock


def say_hello(sock: zmq.Socket, timeout: float) -> bool:
    hello_id, frames = frames_of("hello", {"client": "raw_client.py", "protocol": PROTOCOL_VERSION})
    sock.send_multipart(frames)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sock.poll(100):
            continue
        header, _ = parse(sock.recv_multipart())
        if header.get("re") != hello_id:
            continue
        body = header.get("body") or {}
        if header.get("type") == "capabilities":
            print(f"server: {body.get('server')}, protocol {body.get('protocol')}, jobs {body.get('jobs')}, "
                  f"max {body.get('max_pixels')} pixels", flush=True)
            return True
        print(f"error {body.get('code')}: {body.get('text')} {body.get('detail') or ''}".rstrip(), flush=True)
        return False
    print(f"no answer to hello within {timeout:g} s: is the server running at this address, and are the keys "
          "right (a refused CURVE key gets no answer at all)?", flush=True)
    return False


def write_result(images: dict, info: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    layers = [(name, images[name][0]) for name in ("foreground", "background", "alpha")]
    layers += [(f"behind-{i + 1}", image) for i, image in enumerate(images.get("behind", []))]  # front to back
    for name, (spec, frame) in layers:
        save_png(frame_pixels(spec, frame), out / f"{name}.png")
    print(f"wrote {', '.join(name + '.png' for name, _ in layers)} in {out}", flush=True)
    print("info: " + json.dumps(info, default=str), flush=True)


def wait_for_job(sock: zmq.Socket, job_id: str, args: argparse.Namespace, interrupts: Interrupts) -> int:
    """Replies until the job's last one (result, error or cancelled); pings while waiting."""
    pings: set[str] = set()
    cancel_id = None
    heard = last_ping = time.monotonic()
    while True:
        now = time.monotonic()
        if interrupts.count and cancel_id is None:
            cancel_id, frames = frames_of("cancel", {"job": job_id})
            sock.send_multipart(frames)
            print("cancelling (Ctrl+C again to leave without waiting)", flush=True)
        if now - heard > args.timeout:
            print(f"the server answered nothing, not even a ping, for {args.timeout:g} s: giving up", flush=True)
            return 2
        if now - last_ping >= PING_S:
            ping_id, frames = frames_of("ping", {"time": time.time()})
            sock.send_multipart(frames)
            pings.add(ping_id)
            last_ping = now
        if not sock.poll(100):
            continue
        header, images = parse(sock.recv_multipart())
        heard = time.monotonic()
        kind, re_id, body = header.get("type"), header.get("re"), header.get("body") or {}
        if kind == "pong" and re_id in pings:
            pings.discard(re_id)
            continue
        if re_id != job_id:
            if kind == "error":  # to the cancel (unknown_job: the job was over already), or to a ping
                print(f"error {body.get('code')} (to {re_id}): {body.get('text')}", flush=True)
            continue
        if kind == "accepted":
            print(f"accepted, {body.get('position', 0)} job(s) ahead", flush=True)
        elif kind == "progress":
            print(f"progress {body.get('stage')} {100 * body.get('fraction', 0.0):.0f}%", flush=True)
        elif kind == "result":
            write_result(images, body.get("info") or {}, Path(args.out))
            return 0
        elif kind == "cancelled":
            print("cancelled", flush=True)
            return 130
        elif kind == "error":
            detail = f" ({body['detail']})" if body.get("detail") else ""
            print(f"error {body.get('code')}: {body.get('text')}{detail}", flush=True)
            return 1


def option(text: str) -> tuple[str, object]:
    """KEY=VALUE; VALUE is JSON when it parses (3, null, "x"), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, e.g. fill=smooth or band=4")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def joined_keys(argv: list[str]) -> list[str]:
    """`--server-key KEY` as `--server-key=KEY`: a Z85 key may begin with '-', which argparse takes for an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--server-key", "--client-key"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = joined_keys(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("endpoint", help="the server's address, e.g. tcp://127.0.0.1:5557 (its READY line)")
    ap.add_argument("image", help="the layer to split (any image Pillow reads; sent as RGBA)")
    hint = ap.add_mutually_exclusive_group(required=True)
    hint.add_argument("--mask", help="selection image of the same size: grey level 255 = selected, 0 = not")
    hint.add_argument("--box", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                      help="box around the object, in pixels (X1, Y1 exclusive)")
    ap.add_argument("-o", "--out", default=".", help="folder for foreground.png, background.png, alpha.png")
    ap.add_argument("--dtype", choices=sorted(NUMPY_DTYPES), default="u8",
                    help="how the image travels (the result comes back in the same dtype; written as 8-bit PNGs)")
    ap.add_argument("--order", choices=("RGBA", "BGRA"), default="RGBA", help="channel order on the wire")
    ap.add_argument("--option", type=option, action="append", default=[], metavar="KEY=VALUE",
                    help="a split option (PROTOCOL.md 3.1), e.g. --option fill=smooth --option band=4")
    ap.add_argument("--no-hello", action="store_true", help="send the job without saying hello first")
    ap.add_argument("--server-key", help="CURVE: the server's key (40 characters) or its server.key file")
    ap.add_argument("--client-key", help="CURVE: this machine's NAME.key_secret file")
    ap.add_argument("--timeout", type=float, default=15.0, help="give up after this many seconds of silence")
    args = ap.parse_args(argv)
    if bool(args.server_key) != bool(args.client_key):
        ap.error("--server-key and --client-key go together")

    try:
        rgba = np.asarray(Image.open(args.image).convert("RGBA"))
        spec, data = image_frame(rgba, args.order, args.dtype)
        images = [("image", spec, data)]
        body: dict = {"options": dict(args.option)}
        if args.mask:
            mask = np.asarray(Image.open(args.mask).convert("L"))  # u8, 255 = selected
            mask_spec, mask_data = image_frame(mask, "L", "u8")
            images.append(("mask", mask_spec, mask_data))
        else:
            body["box"] = list(args.box)
        ctx, sock = connect(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    interrupts = Interrupts()
    try:
        if not args.no_hello and not say_hello(sock, args.timeout):
            return 2
        if interrupts.count:  # Ctrl+C before the job was sent: nothing to cancel
            return 130
        job_id, frames = frames_of("split", body, images)
        sock.send_multipart(frames, copy=False)
        print(f"sent split {job_id} ({spec['w']}x{spec['h']} {spec['order']} {spec['dtype']})", flush=True)
        return wait_for_job(sock, job_id, args, interrupts)
    except KeyboardInterrupt:
        print("left without waiting for the server's answer", flush=True)
        return 130
    finally:
        sock.close(linger=0)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
