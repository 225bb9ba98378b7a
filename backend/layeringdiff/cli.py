"""Command line: `layeringdiff split ...` writes an .ora + PNGs; `layeringdiff serve` runs the backend."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .progress import ProgressFn

EXIT_INPUT = 2
EXIT_INTERNAL = 1


def parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(round(float(v))) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x0,y0,x1,y1 in pixels, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"box must have 4 numbers x0,y0,x1,y1, got {text!r}")
    return values  # type: ignore[return-value]


class ProgressBar:
    """One line on stderr: a bar on a terminal, a line per stage otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.stage = ""
        self.start = time.perf_counter()

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.tty:
            filled = int(self.WIDTH * fraction)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            end = "\n" if fraction >= 1.0 else ""
            print(f"\r[{bar}] {fraction * 100:5.1f}% {stage:<12} {elapsed:6.1f}s", end=end, file=sys.stderr)
        elif stage != self.stage:
            print(f"{fraction * 100:5.1f}% {stage} ({elapsed:.1f}s)", file=sys.stderr)
        self.stage = stage


def cmd_split(args: argparse.Namespace) -> int:
    from .examples import example
    from .io.images import load_image, load_mask
    from .io.ora import OraLayer, write_ora
    from .stages.classical import SplitOptions, split_layer

    if args.example:
        if args.image or args.mask:
            raise InputError("--example replaces IMAGE and --mask; give one or the other")
        image, box = example(args.example)
        box = args.box or box
        mask = None
    else:
        if not args.image:
            raise InputError("give an IMAGE (or --example NAME)")
        if (args.mask is None) == (args.box is None):
            raise InputError("give exactly one foreground hint: --mask FILE or --box x0,y0,x1,y1")
        image = load_image(args.image)
        mask = load_mask(args.mask) if args.mask else None
        box = args.box
    out = Path(args.output)
    if out.suffix.lower() != ".ora":
        out = out.with_suffix(".ora")
    if not out.parent.exists():
        raise InputError(f"output folder '{out.parent}' does not exist")
    progress: ProgressFn = ProgressBar(enabled=not args.quiet)
    options = SplitOptions(alpha_mode=args.alpha_mode, quantize=255, band=args.band)
    result = split_layer(image, mask=mask, box=box, options=options, progress=progress)
    h, w = image.shape[:2]
    original = image if image.shape[2] == 4 else np.dstack([image, np.ones((h, w), np.float32)])
    layers = [
        OraLayer("foreground", result.foreground),
        OraLayer("background", result.background),
        OraLayer("original", original, visible=False),
    ]
    write_ora(out, layers, w, h)
    written = [out]
    if not args.no_png:
        from .io.images import save_png

        for name, px in (("foreground", result.foreground), ("background", result.background),
                         ("alpha", result.alpha)):
            path = out.with_name(f"{out.stem}_{name}.png")
            save_png(path, px)
            written.append(path)
    if not args.quiet:
        info = result.info
        print(f"split {w}x{h} ({info['hint']} hint, {info['alpha_mode']} alpha) in "
              f"{sum(info['timings'].values()):.2f}s; recomposition error "
              f"{info['recomposition_error'] * 255:.3f}/255", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import Server, ServerConfig

    server = Server(ServerConfig(host=args.host, port=args.port, max_pixels=args.max_pixels,
                                 parent_pid=args.parent_pid))
    return server.run()


def cmd_examples(args: argparse.Namespace) -> int:
    from .examples import EXAMPLES

    for name, ex in EXAMPLES.items():
        print(f"{name:<10} {ex.what} (box {','.join(map(str, ex.box))})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from layering_protocol import DEFAULT_MAX_PIXELS

    parser = argparse.ArgumentParser(prog="layeringdiff", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("split", help="split an image into foreground and background layers (offline)")
    sp.add_argument("image", nargs="?", help="input image (PNG, JPEG, TIFF, ...; RGBA keeps its transparency)")
    sp.add_argument("--mask", help="foreground mask: grey levels or the alpha channel of an RGBA file")
    sp.add_argument("--box", type=parse_box, help="foreground box x0,y0,x1,y1 in pixels (GrabCut finds the object)")
    sp.add_argument("--example", help="use a bundled example photo and its box (see `layeringdiff examples`)")
    sp.add_argument("-o", "--output", required=True, help="output .ora; PNGs are written beside it")
    sp.add_argument("--alpha-mode", choices=("matte", "mask"), default="matte",
                    help="matte: refine the hint by matting (default); mask: use the mask as the alpha")
    sp.add_argument("--band", type=int, help="unknown band half-width in pixels (default: scaled to the object)")
    sp.add_argument("--no-png", action="store_true", help="write only the .ora")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    sp.set_defaults(func=cmd_split)

    sv = sub.add_parser("serve", help="run the backend for the Krita plugin (ZeroMQ on loopback)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    sv.add_argument("--port", type=int, default=0, help="port (default: a free one, printed on the READY line)")
    sv.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image accepted")
    sv.add_argument("--parent-pid", type=int, help="exit when this process ends (set by the Krita plugin)")
    sv.set_defaults(func=cmd_serve)

    ex = sub.add_parser("examples", help="list the bundled example photos")
    ex.set_defaults(func=cmd_examples)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"error: {exc.text}" + (f" ({exc.detail})" if exc.detail else ""), file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
