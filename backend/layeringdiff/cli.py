"""Command line: `layeringdiff split ...` writes an .ora + PNGs; `layeringdiff serve` runs the backend."""

import argparse
import json
import logging
import math
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from . import __version__
from .errors import InputError, NotAvailable
from .options import DEFAULT_FILL, FILLS, MATTINGS
from .progress import ProgressFn
from .replies import to_reply

if TYPE_CHECKING:
    import numpy as np

    from .io.images import Header
    from .io.outputs import Outputs
    from .options import LayerMethod, MatteFn, SplitOptions

EVENT_PREFIX = "@layeringdiff "  # the docker reads lines starting with it (plugin/layeringdiff_krita/setup_run.py)
EXIT_INPUT = 2
EXIT_INTERNAL = 1
# what `split` loads after its memory check (kernels, writers) beyond the server's job estimate; with it the estimate
# was 1.2x to 1.7x the measured peak above the check's RSS, splits of 1536x1024 to 6144x4096 (2 cores, box and mask)
SPLIT_CLI_FIXED_BYTES = 100 << 20
OBJECT_LAYER_BYTES_PER_PIXEL = 4  # an object peeled before the last: its layer, kept as 8-bit RGBA (stages/peel.py)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`timeout`, `kill`, a closed terminal) while a command writes files: stopped as by Ctrl+C,
    so its temporary outputs are taken back (io/outputs.py), and the exit code says which signal (128 + it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop_on_termination() -> None:
    """SIGTERM and SIGHUP raise Terminated in the main thread (their default ends the process at once, leaving the
    hidden temporary files behind)."""
    def stop(signum: int, frame: object) -> None:
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):  # Windows has no SIGHUP
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


class Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr too (argparse prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        numbers = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x0,y0,x1,y1 in pixels, got {text!r}") from None
    if len(numbers) != 4:
        raise argparse.ArgumentTypeError(f"box must have 4 numbers x0,y0,x1,y1, got {text!r}")
    if not all(math.isfinite(v) and abs(v) < 2**31 for v in numbers):
        raise argparse.ArgumentTypeError(f"box must be 4 finite pixel positions x0,y0,x1,y1, got {text!r}")
    box = tuple(int(round(v)) for v in numbers)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise argparse.ArgumentTypeError(f"box must be x0,y0,x1,y1 with x0 < x1 and y0 < y1 (left, top, right, "
                                         f"bottom), got {text!r}")
    return box  # type: ignore[return-value]


def clip_box(box: tuple[int, int, int, int], w: int, h: int) -> tuple[tuple[int, int, int, int], str]:
    """A box partly outside the image, clipped to it, and the note that says so ('' when it was inside)."""
    clipped = (max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h))
    if clipped == tuple(box):
        return box, ""
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise InputError(f"box {','.join(map(str, box))} is outside the {w}x{h} image")
    return clipped, (f"note: box {','.join(map(str, box))} reaches past the {w}x{h} image: clipped to "
                     f"{','.join(map(str, clipped))}")


LAYERED_FORMATS = (".ora", ".psd")


class Once(argparse.Action):
    """An option that may be given once: a second -o used to replace the first without a word."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} is given twice ({getattr(namespace, self.dest)}, {values}): one layered "
                         "file a run (its PNGs are written beside it); run again for another format")
        setattr(namespace, self.dest, values)


def output_path(text: str) -> Path:
    """-o: an .ora or .psd file (.ora added when there is no suffix), never an existing folder or another format."""
    given = Path(text)
    if text == "-":
        raise InputError("-o - (standard output) cannot take a layered file with PNGs beside it: give a file name, "
                         "such as layers.ora")
    if given.exists() and not given.is_file() and not given.is_dir():  # /dev/null: NAME.ora and PNGs in /dev
        raise InputError(f"output '{given}' is not a regular file (a device or a pipe): give a file name, such as "
                         "layers.ora")
    if given.is_dir():
        raise InputError(f"output '{given}' is a folder: give a file name such as {given / 'layers.ora'}")
    if text.endswith(("/", os.sep)):  # Path() drops the separator: "newdir/" would write ./newdir.ora
        raise InputError(f"output '{text}' names a folder: give a file name in an existing folder, such as "
                         f"{text}layers.ora")
    if given.suffix and given.suffix.lower() not in LAYERED_FORMATS:
        raise InputError(f"output '{given}' is not an .ora or .psd file: the layers go into "
                         f"{given.with_suffix('.ora')} (or .psd) and PNGs beside it ({given.stem}_foreground.png, "
                         f"..., or {given.stem}_object1.png, ... from --labels); name that file with -o")
    if given.name.lower() in LAYERED_FORMATS:  # "-o .psd": a hidden file named ".psd.ora" otherwise
        raise InputError(f"output '{given}' has no name before its extension: give one, such as "
                         f"{given.with_name('layers' + given.name)}")
    return given if given.suffix else given.with_suffix(".ora")


def write_layered(target: Path, out: Path, layers: list, merged: "np.ndarray", source_png: bytes | None,
                  quiet: bool = False, icc: bytes | None = None) -> dict:
    """The layers (top first) into `target`, an .ora or a .psd as `out` is named; returns the .ora's PNGs by layer
    name (none for a .psd: its layers are not PNGs). Says so on stderr first (a big canvas takes a while to
    compress after the split's progress has reached 100%). `icc`: the picture's colour profile, on every layer."""
    h, w = merged.shape[:2]
    if not quiet:
        print(f"writing {out} ...", file=sys.stderr, flush=True)
    if out.suffix.lower() == ".psd":
        from .io.psd import write_psd

        write_psd(target, layers, w, h, merged, icc)
        return {}
    from .io.ora import write_ora

    return write_ora(target, layers, w, h, merged=merged, encoded={"original": source_png} if source_png else None,
                     icc=icc)


def write_pngs(outputs: "Outputs", pngs: dict[Path, tuple[str, "np.ndarray"]], encoded: dict[str, bytes],
               icc: bytes | None = None) -> None:
    """The PNGs beside the layered file, each path -> (its layer's name, its pixels): the .ora's own bytes of that
    layer where it has them (nothing encoded twice), else encoded with the colour profile `icc`."""
    from .io.images import png_bytes

    for path, (name, pixels) in pngs.items():
        data = encoded.get(name)
        outputs.path(path).write_bytes(data if data is not None else png_bytes(pixels, icc))


def picture_profile(args: argparse.Namespace, out: Path) -> bytes | None:
    """IMAGE's RGB colour profile, for its layers (io/profiles.py); a CMYK picture's conversion said in a note, and
    what Krita makes of an .ora of a picture in another space than sRGB."""
    if args.example:
        return None
    from PIL import Image

    from .io.images import GREY16
    from .io.profiles import description, grey_curve, rgb_profile

    try:
        with Image.open(args.image) as img:  # the header only, once
            mode, icc = img.mode, rgb_profile(img)
            grey = mode in GREY16 + ("L", "LA") and grey_curve(img) is not None  # as io.images reads it
            grey_name = description(img.info.get("icc_profile")) if grey else ""
    except OSError:
        return None
    if mode == "CMYK" and not args.quiet:
        print(f"note: '{args.image}' is CMYK: its layers are RGB (sRGB), converted through its colour profile where "
              "it has one", file=sys.stderr)
    if grey and not args.quiet:
        print(f"note: '{args.image}' is grey with its own colour profile ({grey_name or 'unnamed'}): its layers are "
              "RGB (sRGB), converted through it", file=sys.stderr)
    named = description(icc)
    if named and "srgb" not in named.lower() and out.suffix.lower() == ".ora" and not args.quiet:
        print(f"note: '{args.image}' is in {named}: every layer carries that profile; Krita opens an .ora in sRGB, "
              "converting each layer on its own, which moves soft edges where a layer's colours lie outside sRGB; a "
              ".psd keeps the profile for the whole file (-o NAME.psd)", file=sys.stderr)
    return icc


def layer_files(out: Path, objects: list[int] | None = None) -> dict[str, Path]:
    """The PNGs written beside the .ora: foreground, background and alpha; with `objects` (label values), one per
    object (its alpha is the PNG's) and the background."""
    names = ("foreground", "background", "alpha") if objects is None else (*(f"object{k}" for k in objects),
                                                                            "background")
    return {name: out.with_name(f"{out.stem}_{name}.png") for name in names}


def earlier_layer_files(out: Path, written: dict[str, Path], inputs: list[str | None]) -> list[Path]:
    """PNGs beside `out` named as this command names its own (foreground, background, alpha, objectK) that it did not
    write now and that are not its inputs: an earlier run's (another picture's labels, or PNGs before --no-png). They
    are left as they were (they may be the artist's only copy); the note saying so keeps them from being taken for
    this run's layers."""
    pattern = re.compile(re.escape(out.stem) + r"_(foreground|background|alpha|object\d+)\.png")
    try:
        names = os.listdir(out.parent)
    except OSError:
        return []
    kept = {p.name for p in written.values()}
    found = []
    for name in names:
        path = out.with_name(name)
        if pattern.fullmatch(name) and name not in kept and not any(_same_file(path, given) for given in inputs):
            found.append(path)
    return sorted(found, key=lambda p: (len(p.name), p.name))


def _same_file(path: Path, given: str | None) -> bool:
    """Whether `path` is the file `given` (by any path or link); False where either is missing or cannot be looked
    at (a dangling link, a file removed meanwhile: a note after the outputs are written must not fail them)."""
    try:
        return bool(given) and os.path.samefile(path, str(given))
    except OSError:
        return False


def note_earlier_layer_files(out: Path, written: dict[str, Path], inputs: list[str | None]) -> None:
    earlier = earlier_layer_files(out, written, inputs)
    if earlier:
        listed = ", ".join(str(p) for p in earlier[:6]) + (f" and {len(earlier) - 6} more" if len(earlier) > 6 else "")
        what = ("is named like this command's outputs but was not written by this run: left as it was"
                if len(earlier) == 1 else
                "are named like this command's outputs but were not written by this run: left as they were")
        print(f"note: {listed} beside {out} {what}", file=sys.stderr)


def refuse_replacing_inputs(out: Path, pngs: dict[str, Path], inputs: dict[str, str | None]) -> None:
    """An output that is an input file (same file by any path: ./, ../, a link) is refused: replacing it would
    lose the input. `inputs`: what the user calls each input ('IMAGE', '--mask') -> its path."""
    for target in (out, *pngs.values()):
        for role, given in inputs.items():
            if _same_file(target, given):
                beside = "" if target == out else f" (a PNG written beside -o {out}; or add --no-png)"
                raise InputError(f"output '{target}'{beside} is the {role} file '{given}': writing it would "
                                 f"replace that input; choose another -o")


def print_paths(paths: list[Path]) -> None:
    """The list of files written, on stdout: part of the result, so it fails the command if it cannot be written
    (a full disk), and then no output is kept. A reader that has gone (`| head -n1`, `| grep -q`: a closed pipe) took
    what it wanted: the files stay."""
    try:
        for path in paths:
            print(path)
        sys.stdout.flush()
    except BrokenPipeError:
        return
    except OSError as exc:
        raise InputError(f"cannot write the list of output files to stdout ({exc.strerror or exc}): no output "
                         "file was kept") from None


def available_memory() -> tuple[int, str]:
    """Bytes this process may still allocate, and what limits them: the RAM available now, or less under an
    address-space limit (`ulimit -v`), which a Python process with its libraries already uses a share of."""
    import psutil

    free = int(psutil.virtual_memory().available)
    try:
        import resource
    except ImportError:  # Windows: no address-space limit
        return free, "of RAM available now"
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        room = max(0, soft - psutil.Process().memory_info().vms)
        if room < free:
            return room, "left under this process's address-space limit (ulimit -v)"
    return free, "of RAM available now"


def split_memory(image: "Header", mask: "Header | None", args: argparse.Namespace, objects: int = 1) -> int:
    """Peak bytes a split from these files needs, from their headers: decoding them, and the split itself as
    the server estimates it (job_memory.split_bytes: a box's object as the server reads it, with the band and fill
    asked for; a mask is not decoded yet, so an object filling the canvas)."""
    from .job_memory import box_work, split_bytes

    work = None
    if args.box is not None:
        work = box_work(args.box, image.width, image.height, args.band, args.alpha_mode == "mask", args.fill)
    channels = 4 if image.channels in (2, 4) else 3
    wide = (4 * channels - 4) * image.pixels  # float32 layers held, beyond the server's 8-bit RGBA frame
    crop = None if work is None else work.crop
    need = SPLIT_CLI_FIXED_BYTES + image.load_bytes(channels) + split_bytes(image.pixels, crop, wide, work)
    held = (objects - 1) * OBJECT_LAYER_BYTES_PER_PIXEL * image.pixels  # the layers of the objects peeled before
    return need + held + (mask.load_bytes(1) if mask is not None else 0)


def check_split_memory(args: argparse.Namespace, allowed: int, objects: int = 1) -> None:
    """Refuse, from the headers alone, a split that would not fit in memory (a 0.75 MB PNG can be 16000^2
    pixels, 20 GB of work), before decoding anything. `allowed`: --max-memory in bytes (0: what is available);
    `objects`: how many objects --labels names (once they are read)."""
    from .io.images import read_header
    from .limits import gib

    image = read_header(args.image, args.max_pixels)
    hint = args.mask or args.labels
    mask = None
    if hint:  # sizes compared first: a hint of another size is refused for that, whatever its size (header only)
        mask = read_header(hint, sys.maxsize)
        # width and height exchanged are left to the check after decoding: a PNG's EXIF orientation stored after
        # its pixels turns it only then
        if sorted((mask.width, mask.height)) != sorted((image.width, image.height)):
            raise InputError(f"{'--mask' if args.mask else '--labels'} is {mask.width}x{mask.height}, the image "
                             f"is {image.width}x{image.height}: sizes must match")
    need = split_memory(image, mask, args, objects)
    if args.fill == "lama":  # its weights and its working memory at its own size, as the server counts them
        from .job_memory import FIXED_SIZE_MODEL_BYTES, registry_bytes

        need += FIXED_SIZE_MODEL_BYTES["lama"] + registry_bytes("lama")
    if args.matting == "vitmatte" and args.alpha_mode != "mask":  # as for LaMa: its weights, its tiles' memory
        from .job_memory import TILED_MODEL_BYTES, registry_bytes

        need += TILED_MODEL_BYTES["vitmatte"] + registry_bytes("vitmatte")
    have, what = (allowed, "allowed by --max-memory") if allowed else available_memory()
    if need > have:
        what_split = "split" if objects == 1 else f"split into {objects} objects"
        raise InputError(f"'{args.image}' is {image.width}x{image.height} ({gib(image.decoded_bytes)} decoded): its "
                         f"{what_split} needs about {gib(need)} of memory, more than the {gib(have)} {what}",
                         "scale it down, or raise --max-memory if it would fit")


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
            # an object's own "done" ("label 3: done") is not the job's end; \x1b[K clears what a longer stage's
            # name left on the line
            end = "\n" if fraction >= 1.0 and not stage.endswith(": done") else ""
            print(f"\r[{bar}] {fraction * 100:5.1f}% {stage:<12} {elapsed:6.1f}s\x1b[K", end=end, file=sys.stderr)
        elif stage != self.stage:
            print(f"{fraction * 100:5.1f}% {stage} ({elapsed:.1f}s)", file=sys.stderr)
        self.stage = stage


def cmd_split(args: argparse.Namespace) -> int:
    stop_on_termination()
    from .prepare_kernels import ensure_prepared

    ensure_prepared(lambda text: None if args.quiet else print(text, file=sys.stderr, flush=True))
    from .examples import example
    from .io.images import file_orientation, frame_count, load_labels, load_mask, load_upright
    from .io.outputs import Outputs
    from .limits import parse_size
    from .options import SplitOptions

    # the server's rules for the options; every output checked and reserved before any work
    options = SplitOptions.from_dict({"alpha_mode": args.alpha_mode, "quantize": 255, "band": args.band,
                                      "fill": args.fill, "matting": args.matting})
    if args.max_pixels < 1:
        raise InputError("--max-pixels must be at least 1")
    try:
        max_memory = parse_size(args.max_memory, psutil_total()) if args.max_memory else 0
    except ValueError as exc:
        raise InputError(f"--max-memory {exc}") from None
    if args.order != "labels" and not args.labels:
        raise InputError("--order applies to --labels only (--auto orders its objects by depth)")
    if args.alpha_mode == "mask" and (args.band is not None or args.matting != "auto"):
        raise InputError(f"{'--band' if args.band is not None else '--matting'} does not apply to --alpha-mode mask, "
                         "which takes the mask as the alpha as it is (nothing is matted)",
                         "leave it out, or drop --alpha-mode mask to have the edge matted")
    if args.thin_labels and not args.labels:
        raise InputError("--thin-labels applies to --labels only")
    if args.example and (args.image or args.mask or args.labels or args.auto):
        raise InputError("--example brings its own image and box: give IMAGE with --mask, --labels or --auto, or "
                         "--example NAME (with --box at most)")
    if not args.example:
        if not args.image:
            raise InputError("give an IMAGE (or --example NAME)")
        if sum(hint is not None for hint in (args.mask, args.box, args.labels)) + args.auto != 1:
            raise InputError("give exactly one foreground hint: --mask FILE, --box x0,y0,x1,y1, --labels FILE or "
                             "--auto")
    for what, given in (("IMAGE", args.image), ("--mask", args.mask), ("--labels", args.labels)):
        if given is not None and not given.strip():  # `--labels ""`: an unset variable in a script
            raise InputError(f"{what} is empty: give a file name")
    out = output_path(args.output)
    inputs = {"IMAGE": args.image, "--mask": args.mask, "--labels": args.labels}
    refuse_replacing_inputs(out, {}, inputs)  # -o now, before any file is read; the PNGs once --labels names them
    labels = objects = None
    if not args.example:
        check_split_memory(args, max_memory)
        if out.suffix.lower() == ".psd":  # from the header: not after the split
            from .io.images import read_header
            from .io.psd import check_psd_size

            header = read_header(args.image, args.max_pixels)
            check_psd_size(header.width, header.height)
    if args.labels:
        from .stages.peel import check_labels, label_values

        hidden: list[int] = []
        labels = load_labels(args.labels, args.max_pixels, hidden)
        if hidden:
            which = f"labels {', '.join(map(str, hidden))} are" if len(hidden) > 1 else f"label {hidden[0]} is"
            print(f"note: {which} only on pixels the file makes transparent (its transparent grey or palette entry, "
                  "or clear pixels): no object", file=sys.stderr)
        objects = label_values(labels)
        blended = check_labels(labels, objects, args.thin_labels)
        if blended and not args.thin_labels:
            which = f"labels {', '.join(map(str, blended))} lie" if len(blended) > 1 else f"label {blended[0]} lies"
            print(f"note: {which} only along the edges between others: objects a pixel or two thin, or the blends "
                  "of a smoothed label map (then not objects: paint labels hard-edged, resize with 'nearest "
                  "neighbour')", file=sys.stderr)
        if args.order == "auto":
            from .stages.order import occlusion_order

            objects = occlusion_order(labels, objects)
        check_split_memory(args, max_memory, max(1, len(objects)))  # now that the objects are known
    preloaded = manager = None
    turn = 1
    if args.auto:  # the models find the objects on the picture: it is read now, before the outputs are named
        from .models import ModelManager
        from .pipeline import AUTO_MODELS
        from .stages.auto import find_objects

        manager = ModelManager(model_config(args))
        manager.require(AUTO_MODELS)
        preloaded, turn = load_upright(args.image, args.max_pixels)
        labels, objects, found = find_objects(manager, preloaded, progress=ProgressBar(enabled=not args.quiet))
        if not args.quiet:
            print(f"found {found['objects_found']} objects (front to back by {found['order']})", file=sys.stderr)
        check_split_memory(args, max_memory, len(objects))
    matte = split_matte(args, manager)  # its model loaded (or found missing) before any output is named
    pngs = {} if args.no_png else layer_files(out, objects)
    refuse_replacing_inputs(out, pngs, inputs)
    with Outputs([out, *pngs.values()], report=lambda: print_paths([out, *pngs.values()])) as outputs:
        if args.example:
            image, box = example(args.example)
            box = args.box or box
            mask = None
        else:
            if preloaded is None:
                preloaded, turn = load_upright(args.image, args.max_pixels)
            image = preloaded
            mask = load_mask(args.mask, args.max_pixels) if args.mask else None
            if mask is not None:
                check_hint_size("--mask", mask.shape, image.shape[:2], turn)
            box = args.box
            # said before any size is compared: a hint drawn on the pixels as stored no longer fits
            turns = [("IMAGE", args.image, turn)] + [(what, name, file_orientation(name)) for what, name in
                                                     (("--mask", args.mask), ("--labels", args.labels)) if name]
            for what, name, found in turns:
                if found != 1:
                    print(f"note: {what} '{name}' is stored turned or mirrored (EXIF orientation {found}): read "
                          "upright, as viewers and paint programs show it", file=sys.stderr)
            frames = frame_count(args.image)
            if frames > 1:
                print(f"note: IMAGE '{args.image}' holds {frames} frames or pages: only the first is split",
                      file=sys.stderr)
        if box is not None:
            box, note = clip_box(box, image.shape[1], image.shape[0])
            if note:
                print(note, file=sys.stderr)
        method = None
        if args.fill == "lama":  # the server's builder; the CLI's split is classical (no layering models)
            from .models import ModelManager
            from .pipeline import layer_method

            method = layer_method(ModelManager(model_config(args)), {"fill": "lama", "layering": "classical"})
        progress: ProgressFn = ProgressBar(enabled=not args.quiet)
        if labels is not None and objects is not None:
            summary = _split_labels(args, image, labels, objects, options, progress, method, outputs, out, pngs,
                                    matte, turn)
        else:
            summary = _split_one(args, image, mask, box, options, progress, method, outputs, out, pngs, matte, turn)
    note_earlier_layer_files(out, pngs, list(inputs.values()))
    if not args.quiet:
        print(summary, file=sys.stderr)
    return 0


def split_matte(args: argparse.Namespace, manager: Any = None) -> "MatteFn | None":
    """The split's learned matting (pipeline.matte_method: ViTMatte when asked, or with auto on a GPU), with --auto's
    model manager when there is one; None: the closed form."""
    if args.alpha_mode == "mask" or args.matting == "closed-form":
        return None
    from .models import ModelManager
    from .pipeline import matte_method

    try:
        return matte_method(manager or ModelManager(model_config(args)), {"matting": args.matting})
    except NotAvailable as exc:
        # auto asked for no model: an unreadable default model config costs the split nothing, but what the
        # command line names (--models-config, --models-dir, --model) is the user's to mend: refused, as elsewhere
        if args.matting != "auto" or args.models_config or args.models_dir or args.model:
            raise
        print(f"closed-form matting: {exc.text}", file=sys.stderr)
        return None


def check_hint_size(what: str, hint: tuple[int, ...], image: tuple[int, ...], turn: int) -> None:
    """A mask or labels (`hint`: its HxW) of another size than the upright picture's (`image`) is refused; where the
    picture was turned upright by its EXIF orientation (`turn`) and the hint fits it as stored, the message says so."""
    (hh, hw), (h, w) = hint[:2], image[:2]
    if (hh, hw) != (h, w):
        turned = (hh, hw) == (w, h) and turn >= 5
        raise InputError(f"{what} is {hw}x{hh}, the image is {w}x{h}: sizes must match",
                         f"the image is stored turned (EXIF orientation {turn}) and read upright, as viewers show "
                         f"it: {'labels' if what == '--labels' else 'a mask'} drawn on its stored pixels must be "
                         "turned the same way" if turned else "")


def _split_one(args: argparse.Namespace, image: "np.ndarray", mask: "np.ndarray | None", box: tuple | None,
               options: "SplitOptions", progress: ProgressFn, method: "LayerMethod | None", outputs: "Outputs",
               out: Path, pngs: dict[str, Path], matte: "MatteFn | None" = None, turn: int = 1) -> str:
    """One object from a mask or a box: foreground, background and the hidden original. `turn`: the picture's
    EXIF orientation (io.images.load_upright)."""
    from .io.images import png_file_bytes
    from .io.ora import OraLayer
    from .stages.split import split_layer

    result = split_layer(image, mask=mask, box=box, options=options, progress=progress, method=method, matte=matte)
    h, w = image.shape[:2]
    layers = [
        OraLayer("foreground", result.foreground),
        OraLayer("background", result.background),
        OraLayer("original", image, visible=False),
    ]
    # the layers recomposite the source (within 1/255): it is the merged image, the same PNG as the original,
    # which is the input file itself when that is an 8-bit PNG
    source_png = png_file_bytes(args.image, turn) if not args.example else None
    start = time.monotonic()
    icc = picture_profile(args, out)
    encoded = write_layered(outputs.path(out), out, layers, image, source_png, args.quiet, icc)
    arrays = {"foreground": result.foreground, "background": result.background, "alpha": result.alpha}
    write_pngs(outputs, {path: (name, arrays[name]) for name, path in pngs.items()}, encoded, icc)
    info = result.info
    alpha = f"{info['matting']} matting" if "matting" in info else f"{info['alpha_mode']} alpha"
    return (f"split {w}x{h} ({info['hint']} hint, {alpha}) in {sum(info['timings'].values()):.2f}s, files written in "
            f"{time.monotonic() - start:.2f}s; recomposition error {info['recomposition_error'] * 255:.3f}/255")


def _split_labels(args: argparse.Namespace, image: "np.ndarray", labels: "np.ndarray", objects: list[int],
                  options: "SplitOptions", progress: ProgressFn, method: "LayerMethod | None", outputs: "Outputs",
                  out: Path, pngs: dict[str, Path], matte: "MatteFn | None" = None, turn: int = 1) -> str:
    """Every labelled object, front to back (stages/peel.py): one layer each and the background in one group, as
    the docker's Split into layers makes it, and the hidden original below."""
    from .io.images import png_file_bytes
    from .io.ora import LayerGroup, OraLayer
    from .stages.peel import LabelMasks, split_objects

    h, w = image.shape[:2]
    check_hint_size("--labels", labels.shape, (h, w), turn)
    start = time.monotonic()
    masks = LabelMasks(labels, objects, [f"label {k}" for k in objects])
    peeled = split_objects(image, masks, options, progress, method, matte)
    assert peeled.background is not None
    if image.shape[2] == 4:  # a layer like any other, but the artist would look for the object in vain
        for k in objects:
            if not image[..., 3][labels == k].any():
                print(f"note: label {k}'s pixels are all transparent in the picture: the object shows nowhere",
                      file=sys.stderr)
    names = [f"object {k}" for k in objects]
    stack = [*(OraLayer(name, layer) for name, layer in zip(names, peeled.layers, strict=True)),
             OraLayer("background", peeled.background)]
    layers = [LayerGroup(f"{Path(args.image).stem} split", stack), OraLayer("original", image, visible=False)]
    split_time, start = time.monotonic() - start, time.monotonic()
    icc = picture_profile(args, out)
    encoded = write_layered(outputs.path(out), out, layers, image, png_file_bytes(args.image, turn), args.quiet, icc)
    by_key = {**{f"object{k}": (name, layer) for k, name, layer in zip(objects, names, peeled.layers, strict=True)},
              "background": ("background", peeled.background)}
    write_pngs(outputs, {path: by_key[key] for key, path in pngs.items()}, encoded, icc)
    written = time.monotonic() - start
    error = peeled.error(image)
    matting = f", {peeled.infos[0]['matting']} matting" if "matting" in peeled.infos[0] else ""
    count = "1 object (label" if len(objects) == 1 else f"{len(objects)} objects (front to back: labels"
    return (f"split {w}x{h} into {count} {', '.join(map(str, objects))}) and "
            f"the background in {split_time:.2f}s{matting}, files written in {written:.2f}s; "
            f"recomposition error {error * 255:.3f}/255")


def inpainted_baseline(manager: Any, seed: int) -> dict[str, Any]:
    """Table 4's "Germer et al. + Inp." row: with SD2 inpainting zero-shot when its weights are here, else LaMa, else
    the offline push-pull fill, labelled as a fallback."""
    from .evaluate import germer_inpaint, germer_inpaint_with

    if manager.available("sd2-inpaint"):
        from .progress import no_progress
        from .stages.zero_shot import inpainting_fill

        fill = inpainting_fill(manager.sd2_inpaint(), "", 25, seed, no_progress)
        return {"Germer et al. + Inp. (SD2 inpainting, zero-shot)": germer_inpaint_with(fill)}
    if manager.available("lama"):
        from .imaging.lama import lama_fill

        return {"Germer et al. + Inp. (LaMa)": germer_inpaint_with(lama_fill(manager.lama()))}
    return {"Germer et al. + Inp. (push-pull: a fallback, no generative inpainter's weights here)": germer_inpaint}


def add_model_args(parser: argparse.ArgumentParser, diffusion: bool = True) -> None:
    """Where models come from; diffusion: also where and how the torch models run (not for the offline split,
    whose one model, LaMa, runs on the CPU with onnxruntime)."""
    group = parser.add_argument_group("models")
    group.add_argument("--models-config", help="JSON model config (default ~/.config/layeringdiff/models.json)")
    group.add_argument("--models-dir", help="folder with one sub-folder per model name (sdxl/, sam/, ...)")
    group.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                       help="use a local folder for a model (repeatable); see `layeringdiff models list`")
    group.add_argument("--offline", action="store_true", help="never contact the Hugging Face hub")
    if not diffusion:
        return
    group.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), help="where models run")
    group.add_argument("--dtype", choices=("auto", "fp16", "bf16", "fp32"), help="model precision")
    group.add_argument("--cpu-offload", action="store_true", help="diffusers CPU offload for small GPUs")
    group.add_argument("--vae-tiling", action="store_true", help="decode large images in VAE tiles")


def model_config(args: argparse.Namespace):  # -> ModelConfig
    from .models import ModelConfig

    config = ModelConfig.load(args.models_config).with_models_dir(args.models_dir).with_overrides(args.model)
    for name in ("device", "dtype"):
        if getattr(args, name, None):
            setattr(config, name, getattr(args, name))
    config.offline = config.offline or getattr(args, "offline", False)
    config.cpu_offload = config.cpu_offload or getattr(args, "cpu_offload", False)
    config.vae_tiling = config.vae_tiling or getattr(args, "vae_tiling", False)
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve.supervisor import restart_wanted

    if restart_wanted(args.restart, args.host):
        return _supervise(args)
    from .prepare_kernels import ensure_prepared

    # before the server (and pymatting) is imported; the Krita docker shows these lines while it waits for READY
    ensure_prepared(lambda text: print(f"PREPARING {text}", flush=True))
    from .limits import parse_size
    from .serve import Server, ServerConfig

    try:
        memory = parse_size(args.max_memory, psutil_total()) if args.max_memory else 0
        message = parse_size(args.max_message) if args.max_message else 0
        backlog = parse_size(args.client_backlog) if args.client_backlog else 0
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for name in ("max_pixels", "max_client_jobs", "max_jobs", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_job_seconds is not None and not args.max_job_seconds > 0:  # NaN too
        raise InputError("--max-job-seconds must be more than 0")
    devices = tuple(d.strip() for d in (args.devices or "").split(",") if d.strip())
    for device in devices:
        if device != "cpu" and device != "mps" and not re.fullmatch(r"cuda(:\d+)?", device):
            raise InputError(f"--devices: {device!r} is not a device", "name cuda:0, cuda:1, ..., mps or cpu")
    server = Server(ServerConfig(host=args.host, port=args.port, max_pixels=args.max_pixels,
                                 parent_pid=args.parent_pid, models=model_config(args), keys=args.keys,
                                 max_memory=memory, max_message=message, max_client_jobs=args.max_client_jobs or 0,
                                 max_jobs=args.max_jobs or 0, client_backlog=backlog, devices=devices,
                                 workers=args.workers or 0, max_job_seconds=args.max_job_seconds or 0.0))
    code = server.run()
    # everything is closed and sent: skip the interpreter's teardown of the numerical libraries, which
    # takes most of a second on a loaded machine (the stop after SIGTERM should take well under 2 s)
    _exit_now(code)


def _supervise(args: argparse.Namespace) -> int:
    """The server as a child started again when it dies unasked (serve/supervisor.py says why)."""
    import psutil

    from .serve.supervisor import Supervisor

    argv = list(args.raw_argv)
    serve_args = argv[argv.index("serve") + 1:]
    parent = args.parent_pid
    watch = (lambda: psutil.pid_exists(parent)) if parent else None
    return Supervisor(serve_args, port=args.port, watch_parent=watch).run()


def psutil_total() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare_kernels import prepare, stamp_path

    missing = prepare(lambda text: print(text, flush=True))
    if missing:
        print(f"error: these cached kernels were not compiled by the warm-up: {', '.join(missing)}", file=sys.stderr)
        return EXIT_INTERNAL
    stamp = stamp_path()
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text("prepared by `layeringdiff prepare`\n", encoding="utf-8")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .keys import add_client, init_keys, server_keys

    try:
        if args.action == "init":
            init_keys(args.folder)
            public = server_keys(args.folder)[0].decode()
            print(f"server keys in {args.folder}; serve with: layeringdiff serve --host 0.0.0.0 --keys {args.folder}")
            print(f"server key (give it to each artist for Settings > Server key): {public}")
        else:
            if not args.name:
                raise InputError("keys client needs a NAME for the machine, e.g. `keys client DIR alice-laptop`")
            secret = add_client(args.folder, args.name)
            print(f"{args.name} is allowed in now. Give this file to that machine (Settings > Client key file) "
                  f"and delete it here: {secret}")
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(str(exc)) from None
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    stop_on_termination()
    from layering_protocol import Generate

    from .io.images import load_image, save_png
    from .io.ora import LayerGroup, OraLayer, flatten
    from .io.outputs import Outputs
    from .models import ModelManager
    from .pipeline import run_job
    from .wire import from_array, to_array

    out = output_path(args.output)
    pngs = layer_files(out)
    refuse_replacing_inputs(out, pngs, {"--control-image": args.control_image})
    with Outputs([out, *pngs.values()], report=lambda: print_paths([out, *pngs.values()])) as outputs:
        control_image = None
        if args.control_image:
            if not args.control:
                raise InputError("--control-image needs --control canny|depth")
            control_image = from_array(load_image(args.control_image, args.max_pixels)[..., :3], "f32", "RGB")
        options = {"control": args.control} if args.control else {}
        message = Generate(args.prompt, width=args.width, height=args.height, steps=args.steps,
                           guidance=args.guidance, seed=args.seed, negative_prompt=args.negative or "",
                           phrase=args.phrase, options=options, control_image=control_image)
        progress: ProgressFn = ProgressBar(enabled=not args.quiet)
        output = run_job(message, progress, ModelManager(model_config(args)))
        fg, bg, alpha = to_array(output.foreground), to_array(output.background), to_array(output.alpha)[..., 0]
        h, w = alpha.shape
        phrases = output.info.get("phrases", [])
        names = [f"{p} foreground" if p else "foreground" for p in phrases] or ["foreground"]
        fgs = [OraLayer(names[0], fg)] + [OraLayer(names[i + 1] if i + 1 < len(names) else f"foreground {i + 2}",
                                                   to_array(img)) for i, img in enumerate(output.behind)]
        stack = [*fgs, OraLayer("background", bg)]
        # several objects peeled: one group, as for split --labels (and the docker's groups)
        layers = [LayerGroup(args.prompt[:60], stack)] if len(fgs) > 1 else stack
        write_layered(outputs.path(out), out, layers, flatten(stack, w, h), None)
        for name, px in (("foreground", fg), ("background", bg), ("alpha", alpha)):
            save_png(outputs.path(pngs[name]), px)
    note_earlier_layer_files(out, pngs, [args.control_image])
    if not args.quiet:
        print(f"layering: {output.info.get('method')}; stack error {output.info.get('stack_error', 0) * 255:.2f}/255",
              file=sys.stderr)
    return 0


def model_rows(manager, models_dir: str | None) -> list[dict]:  # manager: ModelManager
    """Every model of the registry with what it enables, its size, licence, state and what it needs installed."""
    import importlib.util

    from .hub_fetch import Store
    from .models import REGISTRY

    store = Store(models_dir) if models_dir else None
    rows = []
    for row in manager.status():
        spec = REGISTRY[row["model"]]
        state = row["state"]
        if store is not None and store.state(spec.key) in ("partial", "broken"):
            state = store.state(spec.key)
        absent = [m for m in spec.packages if importlib.util.find_spec(m) is None]
        rows.append({**row, "state": state, "enables": spec.enables, "size_gb": spec.size_gb,
                     "licence": spec.licence, "fetchable": bool(spec.hub_id), "needs": absent,
                     "install": spec.install if absent else "", "gpu_gib": spec.gpu_gib,
                     "offload_gib": spec.offload_gib})
    return rows


def gpu_row() -> dict:
    """The GPU the backend would run the models on: {"device": name, "total_gib": its memory}; a CPU-only machine
    (or no torch) gives total_gib 0 and why."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return {"device": "", "total_gib": 0.0, "why": "torch is not installed"}
    import torch

    if not torch.cuda.is_available():
        return {"device": "", "total_gib": 0.0, "why": "no CUDA GPU"}
    props = torch.cuda.get_device_properties(0)
    return {"device": props.name, "total_gib": round(props.total_memory / 2**30, 2)}


def cmd_models(args: argparse.Namespace) -> int:
    from .models import REGISTRY, TRAIN_HINT, ModelManager

    if args.action == "fetch" and args.models_dir:
        Path(args.models_dir).expanduser().mkdir(parents=True, exist_ok=True)  # fetch fills it
    manager = ModelManager(model_config(args))
    listed = set(REGISTRY)
    if args.action == "list" and args.names != ["all"]:  # the names asked about (they were ignored before)
        unknown = [k for k in args.names if k not in REGISTRY]
        if unknown:
            raise InputError(f"unknown model(s) {unknown}; choose from {', '.join(REGISTRY)} or all")
        listed = set(args.names)
    if args.action == "list" and args.json:
        for row in model_rows(manager, args.models_dir):
            if row["model"] in listed:
                print(json.dumps(row))
        print(json.dumps(gpu_row()))
        return 0
    if args.action == "delete":
        if not args.models_dir:
            raise InputError("models delete needs --models-dir (a model in the Hugging Face cache: `hf cache`)")
        from .hub_fetch import Store

        names = list(REGISTRY) if args.names == ["all"] else args.names
        unknown = [k for k in names if k not in REGISTRY]
        if unknown:
            raise InputError(f"unknown model(s) {unknown}; choose from {', '.join(REGISTRY)} or all")
        store = Store(args.models_dir)
        for key in names:
            held = store.holds(key)
            freed = store.delete(key)
            print(f"deleted {key} ({freed / 1e9:.2f} GB freed)" if held else
                  f"{key}: nothing to delete in {args.models_dir}")
        return 0
    if args.action == "list":
        from .models import DEFAULT_CONFIG, hf_cache

        where = [f"--models-dir {args.models_dir}"] if args.models_dir else []
        where.append(f"the Hugging Face cache ({manager.config.cache_dir or hf_cache()})")
        print(f"looked in {' and '.join(where)}, and the folders named in {manager.config.source or DEFAULT_CONFIG}",
              file=sys.stderr)
        for row in manager.status():
            if row["model"] not in listed:
                continue
            print(f"{row['model']:<17} {row['state']:<8} {row['source']}  ({row['role']})")
            if row["state"] == "ready":
                print(f"{'':<17} {'':<8} {row['path']}")
        return 0
    everything = args.names == ["all"]
    keys = [k for k, spec in REGISTRY.items() if spec.hub_id or k in manager.config.paths] if everything \
        else args.names
    unknown = [k for k in keys if k not in REGISTRY]
    if unknown or not keys:
        raise InputError(f"unknown model(s) {unknown or keys}; choose from {', '.join(REGISTRY)} or all")
    failed = []

    def event(data: dict) -> None:
        if args.events:
            print(EVENT_PREFIX + json.dumps(data), flush=True)

    for key in keys:  # one failure does not stop the others: a full fetch is tens of GB
        try:
            folder = manager.fetch(key, progress=lambda text: print(text, file=sys.stderr), into=args.models_dir,
                                   report=event)
            print(folder, flush=True)
        except NotAvailable as exc:
            print(f"error: {exc.text}" + (f"\n  {exc.detail}" if exc.detail else ""), file=sys.stderr, flush=True)
            event({"event": "error", "model": key, "why": exc.text, "detail": exc.detail})
            failed.append(key)
    if everything and "layering" not in keys:
        print(f"note: 'layering' is not fetched: {TRAIN_HINT}", file=sys.stderr)
    if failed:
        print(f"not fetched: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def cmd_examples(args: argparse.Namespace) -> int:
    from .examples import EXAMPLES

    for name, ex in EXAMPLES.items():
        print(f"{name:<10} {ex.what} (box {','.join(map(str, ex.box))})")
    return 0


def _dataset(args: argparse.Namespace):  # -> LayerDataset | StoredDataset
    from .train.dataset import DatasetConfig, LayerDataset, StoredDataset

    try:
        if getattr(args, "data", None):
            return StoredDataset(args.data)
        from .train.dataset import PAPER_SAMPLES

        paper_training = args.recipe == "paper" and args.split == "train"  # the paper's 20,000 are training samples
        count = args.count if args.count is not None else PAPER_SAMPLES if paper_training else args.default_count
        return LayerDataset(DatasetConfig(size=args.size, seed=args.seed, length=count, split=args.split,
                                          foregrounds=args.foregrounds, backgrounds=args.backgrounds,
                                          recipe=args.recipe))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc)) from None


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `low` (a count of -3 or a size of 0 was an internal error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def port_number(text: str) -> int:
    """serve --port: 0 (a free one) to 65535 (libzmq took 99999 as another port, and the READY line named it)."""
    value = at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (a free one) to 65535, got {value}")
    return value


def add_data_args(parser: argparse.ArgumentParser, count: int, split: str = "train") -> None:
    """The data options. Training data defaults to the paper's recipe: the split runs FBDD and HFA on an object's
    crop (centred, filling it, at about 512^2), which is what that recipe makes. A held-out set (`split` "test",
    evaluate's) keeps the random recipe, the harder test, which the figures in the docs were made with."""
    paper = split == "train"
    parser.add_argument("--data", help="a dataset written by `layeringdiff dataset` (default: synthesise on the fly)")
    parser.add_argument("--count", type=at_least(1), help=f"samples when synthesising (default {count}; 20000 training "
                                                  "samples with --recipe paper)")
    parser.set_defaults(default_count=count)
    parser.add_argument("--recipe", choices=("paper", "random"), default="paper" if paper else "random",
                        help="paper: composed at the foreground's size, then the shorter side resized to --size and "
                             f"the centre cropped (the paper's Sec. 3.4{'; default' if paper else ''}); random: the "
                             "foreground at a random scale and position over the background (not the paper's"
                             f"{'' if paper else '; default'})")
    parser.add_argument("--size", type=at_least(8), default=512, help="sample side (shorter side resized, centre crop)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("train", "test", "all"), default=split,  # train.dataset.SPLITS (lazy)
                        help="which part of the sources: training, the held-out test part (a tenth of the names, by "
                             "a hash), or all of them, for folders that are one part already (the paper's Table 4 "
                             f"takes MAGICK's and BG-20k's test folders) (default {split})")
    parser.add_argument("--foregrounds", help="folder of RGBA foregrounds (default: procedural)")
    parser.add_argument("--backgrounds", help="folder of backgrounds (default: photos shipped in scikit-image)")
    parser.add_argument("--num-workers", type=at_least(0), default=0,
                        help="processes that make or read samples beside the main one (default 0)")


def _count_progress(args: argparse.Namespace, what: str):  # -> Callable[[int, int], None]
    def report(done: int, total: int) -> None:
        if not getattr(args, "quiet", False) and (done % 50 == 0 or done == total):
            print(f"{what} {done}/{total}", file=sys.stderr)

    return report


def cmd_dataset(args: argparse.Namespace) -> int:
    from .train.dataset import LayerDataset, write_dataset

    dataset = _dataset(args)
    if not isinstance(dataset, LayerDataset):
        raise InputError("dataset writes a new dataset: give --count/--size/--seed/--split, not --data")
    print(write_dataset(dataset, args.out, args.num_workers, _count_progress(args, "samples"), args.codec))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    def report(step: int, values: dict) -> None:
        if not args.quiet and (step % 10 == 0 or step == args.steps):
            print(f"step {step}/{args.steps} " + " ".join(f"{k} {v:.4g}" for k, v in values.items()),
                  file=sys.stderr)

    if args.stage == "fbdd":
        from .train.fbdd import FBDDTrainConfig, train_fbdd

        if not args.init:
            raise InputError("train fbdd needs --init: an SD2-inpainting folder or an FBDD folder")
        config = FBDDTrainConfig(init=args.init, out=args.out, steps=args.steps, batch_size=args.batch_size,
                                 lr=args.lr or 1e-5, mixed_precision=args.mixed_precision,
                                 gradient_checkpointing=args.gradient_checkpointing, ema_decay=args.ema,
                                 checkpoint_every=args.checkpoint_every, seed=args.seed, num_workers=args.num_workers)
        export = train_fbdd(config, _dataset(args), report)
    else:
        from .train.hfa import HFATrainConfig, check_source, train_hfa

        config = HFATrainConfig(out=args.out, fbdd=args.fbdd, source=args.source, steps=args.steps,
                                batch_size=args.batch_size,
                                lr=args.lr or 1e-4, mixed_precision=args.mixed_precision,
                                checkpoint_every=args.checkpoint_every, seed=args.seed, num_workers=args.num_workers)
        try:
            check_source(config)  # before the data is read
        except ValueError as exc:
            raise InputError(str(exc)) from None
        export = train_hfa(config, _dataset(args), report, _count_progress(args, "decoded layers"))
    if export is not None:  # the main process of a multi-process run
        print(export)
    return 0


def cmd_table1(args: argparse.Namespace) -> int:
    """`evaluate --table 1`: generate each triplet's layers with the model stack, then score them."""
    from layering_protocol import Generate

    from .imaging.compose import composite_stack
    from .io.images import load_image
    from .models import ModelManager
    from .pipeline import run_job
    from .progress import no_progress
    from .table1 import Layered, read_prompts, table1, write_table1
    from .wire import to_array

    if not (args.prompts and args.reference_fg and args.reference_scene):
        raise InputError("evaluate --table 1 needs --prompts FILE, --reference-fg DIR and --reference-scene DIR")
    triplets = read_prompts(args.prompts)
    references = {}
    for key, folder in (("foreground", args.reference_fg), ("scene", args.reference_scene)):
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        if len(files) < 2:
            raise InputError(f"{folder} holds {len(files)} images: FID and KID need at least 2")
        references[key] = [load_image(p) for p in files]
    manager = ModelManager(model_config(args))
    layered = []
    for n, triplet in enumerate(triplets):
        out = run_job(Generate(triplet.composite, width=args.gen_size, height=args.gen_size, steps=args.gen_steps,
                               seed=args.seed + n, phrase=triplet.foreground, options={"dtype": "f32"}),
                      no_progress, manager)
        fg, bg = to_array(out.foreground), to_array(out.background)[..., :3]
        layered.append(Layered(triplet, fg, bg, composite_stack([fg, *map(to_array, out.behind)], bg)))
        _count_progress(args, "triplets")(n + 1, len(triplets))

    def clip() -> tuple:
        from transformers import CLIPModel, CLIPProcessor

        local = {"local_files_only": True} if manager.config.offline else {}
        return (CLIPModel.from_pretrained(args.clip_model, **local).eval(),
                CLIPProcessor.from_pretrained(args.clip_model, **local))

    result = table1(layered, references, manager, clip)
    print(write_table1(result, args.out)[1])
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.table == 1:
        return cmd_table1(args)
    from .evaluate import (
        classical,
        classical_least_change,
        classical_smooth,
        evaluate,
        germer,
        parse_scales,
        write_report,
    )

    try:
        scales = parse_scales(args.scales)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    from .models import ModelManager

    manager = ModelManager(model_config(args))
    alpha_fn, alpha_source = None, "true alpha"
    if args.alpha != "true":
        from .evaluate import vitmatte_alpha

        if manager.available("vitmatte"):
            alpha_fn, alpha_source = vitmatte_alpha(*manager.vitmatte()), "ViTMatte alpha"
        elif args.alpha == "vitmatte":
            manager.require(["vitmatte"])
        else:
            alpha_source = "true alpha (ViTMatte's weights are not on this machine)"
    methods = {"Germer et al.": germer, **inpainted_baseline(manager, args.seed),
               "this project, classical (texture fill, projection; the product)": classical,
               "this project, classical, smooth fill": classical_smooth,
               "this project, classical + least-change composition": classical_least_change}
    if args.layering:
        from .evaluate import fbdd_hfa_methods
        from .stages.layering import FBDD, HFA

        fbdd = FBDD.from_folder(Path(args.layering) / "fbdd")
        hfa = HFA.from_folder(Path(args.layering) / "hfa")
        methods.update(fbdd_hfa_methods(fbdd, hfa, args.layering_steps, args.seed))
    dataset = _dataset(args)
    result = evaluate(dataset, methods, args.seed, scales, alpha_fn, alpha_source,
                      progress=_count_progress(args, "composites"))
    if args.generated:
        from .evaluate import layer_statistics
        from .io.ora import read_ora

        files = sorted(Path(args.generated).glob("*.ora"))
        if not files:
            raise InputError(f"no .ora files in {args.generated}")
        stats = [layer_statistics(read_ora(f)[0][0].pixels[..., 3]) for f in files]
        result["generated_layer_statistics"] = {k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}
        result["generated_count"] = len(files)
    for path in write_report(result, args.out):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from layering_protocol import DEFAULT_MAX_PIXELS

    parser = Parser(prog="layeringdiff", description=__doc__)
    parser.add_argument("--version", action="version", version=f"layeringdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("split", help="split an image into foreground and background layers (offline)")
    sp.add_argument("image", nargs="?", help="input image (PNG, JPEG, TIFF, ...; RGBA keeps its transparency)")
    sp.add_argument("--mask", help="foreground mask: grey levels or the alpha channel of an RGBA file")
    sp.add_argument("--box", type=parse_box, help="foreground box x0,y0,x1,y1 in pixels (GrabCut finds the object)")
    sp.add_argument("--labels", help="several objects at once: an 8-bit grey or paletted PNG of the image's size, 0 "
                                     "no object, 1 the frontmost object, 2 the next, ...; the .ora holds one layer "
                                     "per object, front to back, then the background")
    sp.add_argument("--order", choices=("labels", "auto"), default="labels",
                    help="with --labels: labels (1 is the frontmost, the default) or auto (from where the objects "
                         "touch: the one cut by another is behind it)")
    sp.add_argument("--thin-labels", action="store_true",
                    help="with --labels: every value is an object, even one found only along the edges between others "
                         "(outlines a pixel wide); without it, more than 3 such values are refused as the blends of a "
                         "smoothed label map")
    sp.add_argument("--auto", action="store_true",
                    help="every object, with no hint: SAM's automatic masks, ordered front to back by Depth Anything "
                         "V2's depth and where they touch (needs the sam and depth-anything models)")
    sp.add_argument("--example", help="use a bundled example photo and its box (see `layeringdiff examples`)")
    sp.add_argument("-o", "--output", required=True, action=Once,
                    help="output .ora or .psd (layered, for GIMP and other Photoshop-compatible applications); PNGs "
                         "beside it")
    sp.add_argument("--alpha-mode", choices=("matte", "mask"), default="matte",
                    help="matte: refine the hint by matting (default); mask: use the mask as the alpha")
    sp.add_argument("--band", type=int, help="unknown band half-width, 1 to 500 pixels (default: scaled to the "
                                             "object)")
    sp.add_argument("--matting", choices=MATTINGS, default="auto",
                    help="closed-form (offline, seconds on a CPU), vitmatte (the learned ViTMatte: `models fetch "
                         "vitmatte`; made for the hair and fur a label or a hard selection cuts), or auto (the "
                         "default: ViTMatte where its weights are here and a GPU runs it, else closed-form)")
    sp.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help=f"refuse larger input images, checked before decoding them (default {DEFAULT_MAX_PIXELS})")
    sp.add_argument("--max-memory", help="memory the split may use (e.g. 12G or 60%%): a larger one is refused from "
                                         "the file's header, before decoding (default: the RAM available now)")
    sp.add_argument("--fill", choices=FILLS, default=DEFAULT_FILL,
                    help="hidden background: texture (exemplar-based completion, the default), smooth (colour "
                         "propagation), lama (the LaMa ONNX model: `models fetch lama`)")
    sp.add_argument("--no-png", action="store_true", help="write only the layered file (.ora or .psd), no PNGs "
                                                          "beside it")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    add_model_args(sp, diffusion=False)  # --fill lama and --auto use models
    sp.set_defaults(func=cmd_split)

    sv = sub.add_parser("serve", help="run the backend for the Krita plugin (ZeroMQ on loopback)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default loopback only; any other needs --keys)")
    sv.add_argument("--keys", help="serve with CURVE encryption and client keys from this folder "
                                   "(`layeringdiff keys init`)")
    sv.add_argument("--port", type=port_number, default=0, help="port (default: a free one, printed on the READY line)")
    sv.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help=f"largest image accepted, in pixels (default {DEFAULT_MAX_PIXELS})")
    sv.add_argument("--max-memory", help="memory budget of the backend: jobs whose estimated peak would not fit are "
                                         "refused (e.g. 12G or 60%%; default 75%% of the RAM)")
    sv.add_argument("--max-message", help="largest request, all its frames together (e.g. 2G; default: the largest "
                                          "valid split at --max-pixels, at most 1/8 of --max-memory)")
    sv.add_argument("--max-client-jobs", type=int, help="queued + running jobs of one client (default 4)")
    sv.add_argument("--max-jobs", type=int, help="queued + running jobs of all clients (default 32)")
    sv.add_argument("--client-backlog", help="replies a client may leave unread before it is cut off (default 128M)")
    sv.add_argument("--max-job-seconds", type=float, help="how long one job may run, loading its models included, "
                                                          "before it is stopped and answered too_large (default: no "
                                                          "limit; a shared server's jobs otherwise wait on the "
                                                          "longest)")
    sv.add_argument("--parent-pid", type=int, help="exit when this process ends (set by the Krita plugin)")
    sv.add_argument("--restart", choices=("auto", "always", "never"), default="auto",
                    help="run the server as a child process started again (same port) when it dies unasked, as "
                         "libzmq can make it on a hostile client's traffic; auto: when --host is not loopback")
    sv.add_argument("--devices", help="one worker process per device, comma-separated (e.g. cuda:0,cuda:1): a studio "
                                      "box with several GPUs serves several jobs at once")
    sv.add_argument("--workers", type=int, help="CPU worker processes (default 1 without --devices, else 0); each "
                                                "runs one job at a time with its share of the cores and its own "
                                                "loaded models")
    add_model_args(sv)
    sv.set_defaults(func=cmd_serve)

    pp = sub.add_parser("prepare", help="compile the image kernels now (the installer runs this; else the first "
                                        "split or serve does)")
    pp.set_defaults(func=cmd_prepare)

    kp = sub.add_parser("keys", help="CURVE keys for serving beyond loopback: `init DIR`, then `client DIR NAME` "
                                     "per artist's machine (delete DIR/clients/NAME.key to revoke it)")
    kp.add_argument("action", choices=("init", "client"))
    kp.add_argument("folder")
    kp.add_argument("name", nargs="?", help="client: the machine's name")
    kp.set_defaults(func=cmd_keys)

    gp = sub.add_parser("generate", help="generate a layered image from a prompt (needs the model weights)")
    gp.add_argument("prompt", help='prompt with the foreground in brackets: "[a cat] on a sofa"')
    gp.add_argument("-o", "--output", required=True, action=Once, help="output .ora; PNGs are written beside it")
    gp.add_argument("--phrase", help="foreground phrase (default: the first [bracketed] span)")
    gp.add_argument("--width", type=int, default=1024)
    gp.add_argument("--height", type=int, default=1024)
    gp.add_argument("--steps", type=int, default=30)
    gp.add_argument("--guidance", type=float, default=5.0)
    gp.add_argument("--seed", type=int, default=0)
    gp.add_argument("--negative", help="negative prompt")
    gp.add_argument("--control", choices=("canny", "depth"), help="ControlNet guidance")
    gp.add_argument("--control-image", help="image for the ControlNet (edges are taken for canny; a depth map)")
    gp.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help=f"refuse a larger --control-image (default {DEFAULT_MAX_PIXELS})")
    gp.add_argument("-q", "--quiet", action="store_true")
    add_model_args(gp)
    gp.set_defaults(func=cmd_generate)

    mp = sub.add_parser("models", help="list, fetch or delete the model weights")
    mp.add_argument("action", choices=("list", "fetch", "delete"))
    mp.add_argument("names", nargs="*", default=["all"], help="model names to list, fetch or delete (default all)")
    mp.add_argument("--json", action="store_true", help="list: one JSON object a model (the docker reads it)")
    mp.add_argument("--events", action="store_true",
                    help=f"fetch: progress as JSON lines starting with '{EVENT_PREFIX}' (the docker reads them)")
    add_model_args(mp)
    mp.set_defaults(func=cmd_models)

    ds = sub.add_parser("dataset", help="synthesise a training or test set (8-bit, PNG-coded, random access)")
    add_data_args(ds, 1000)
    ds.add_argument("-o", "--out", required=True)
    ds.add_argument("--codec", choices=("png", "raw"), default="png",
                    help="png: lossless, a third of the bytes; raw: 3x the disk, no decoding (for few CPU cores)")
    ds.add_argument("-q", "--quiet", action="store_true")
    ds.set_defaults(func=cmd_dataset)

    tr = sub.add_parser("train", help="train FBDD or HFA (use `accelerate launch -m layeringdiff train ...` "
                                      "for several GPUs or nodes)")
    tr.add_argument("stage", choices=("fbdd", "hfa"))
    tr.add_argument("-o", "--out", required=True, help="run folder: checkpoints/, losses.csv/png, export/")
    tr.add_argument("--init", help="fbdd: SD2-inpainting folder or FBDD folder to start from")
    tr.add_argument("--fbdd", help="hfa: the trained FBDD folder whose outputs HFA learns to refine, made as a split "
                                   "makes them (the paper's; needed unless --source classical)")
    tr.add_argument("--source", choices=("fbdd", "classical"), default="fbdd",
                    help="hfa: what its input layers come from: fbdd (the paper's, default) or classical (the "
                         "classical estimate and fill: NOT the paper's, recorded as such in the export's hfa.json)")
    tr.add_argument("--steps", type=at_least(1), default=1000)
    tr.add_argument("--batch-size", type=at_least(1), default=4)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    tr.add_argument("--gradient-checkpointing", action="store_true")
    tr.add_argument("--ema", type=float, default=0.0, help="EMA decay of the FBDD weights (0: off)")
    tr.add_argument("--checkpoint-every", type=at_least(1), default=500)
    tr.add_argument("-q", "--quiet", action="store_true")
    add_data_args(tr, 10000)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="layer decomposition metrics vs baselines (paper Table 4)")
    add_data_args(ev, 1000, split="test")
    ev.add_argument("-o", "--out", required=True, help="folder for results.json and results.md")
    ev.add_argument("--layering", help="folder with fbdd/ and hfa/ to evaluate as well")
    ev.add_argument("--layering-steps", type=int, default=25)
    ev.add_argument("--scales", default="",
                    help="metric factors (default Table 4's: MAD=1e3,MSE=1e3,SAD=1e-3,LPIPS=1e2)")
    ev.add_argument("--alpha", choices=("auto", "vitmatte", "true"), default="auto",
                    help="the alpha every method gets: ViTMatte's from the trimap (auto: when its weights are here, "
                         "else the true alpha) or the true one")
    ev.add_argument("-q", "--quiet", action="store_true")
    add_model_args(ev)
    ev.add_argument("--generated", help="folder of generated .ora files: Table 2 statistics of their top layer")
    ev.add_argument("--table", type=int, choices=(4, 1), default=4,
                    help="4: the layering stage on synthetic composites (default); 1: Generate layered's layers from "
                         "--prompts (FID, KID, CLIP score, FG-MIoU)")
    ev.add_argument("--prompts", help="table 1: prompt triplets, one a line: foreground | background | composite")
    ev.add_argument("--reference-fg", help="table 1: folder of reference foregrounds (RGBA; the paper: MAGICK)")
    ev.add_argument("--reference-scene", help="table 1: folder of reference scenes (the paper: COCO)")
    ev.add_argument("--clip-model", default="openai/clip-vit-large-patch14",
                    help="table 1: the CLIP model of the CLIP score (a hub id or a local folder)")
    ev.add_argument("--gen-size", type=int, default=768, help="table 1: the generated images' side (the paper: 768)")
    ev.add_argument("--gen-steps", type=int, default=30, help="table 1: Generate's denoising steps")
    ev.set_defaults(func=cmd_evaluate)

    ex = sub.add_parser("examples", help="list the bundled example photos")
    ex.set_defaults(func=cmd_examples)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def attach_negative_boxes(argv: list[str]) -> list[str]:
    """`--box -5,0,100,100` as `--box=-5,0,100,100`: argparse takes a value starting with '-' for an option (a box
    reaching past the left or top edge is clipped, and said so)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--box" and re.fullmatch(r"-\d[\d,.\s-]*", arg):
            out[-1] = f"--box={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line on stderr: exit 2 for what the user can change (input, files, memory,
    missing extras), 1 for a fault of this program (LAYERINGDIFF_DEBUG=1 shows its traceback)."""
    raw = attach_negative_boxes(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    args.raw_argv = raw  # serve --restart starts the server again with the same arguments
    try:
        return int(args.func(args))
    except KeyboardInterrupt as exc:
        return _stopped(exc)
    except OSError as exc:  # disk full, permissions, a file that vanished: the files the user named
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {_one_line(exc.strerror or str(exc))}{where}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # the same words a client of the server gets (replies.to_reply)
        stop = _interrupted(exc)
        if stop is not None:
            return _stopped(stop)
        failure = to_reply(exc)
        if failure.internal:
            return _internal(exc)
        detail = f" ({_one_line(failure.detail)})" if failure.detail else ""
        print(f"error: {_one_line(failure.text)}{detail}", file=sys.stderr)
        return EXIT_INPUT


def _stopped(stop: KeyboardInterrupt) -> int:
    """Ctrl+C: 130; SIGTERM, SIGHUP: 128 + the signal, as a shell reports a process they ended."""
    if isinstance(stop, Terminated):
        print(f"stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
        return 128 + stop.signum
    print("interrupted", file=sys.stderr)
    return 130


def _interrupted(exc: BaseException) -> KeyboardInterrupt | None:
    """Ctrl+C (or Terminated) that reached us wrapped: numba turns a KeyboardInterrupt raised while it loads or
    compiles a function into a SystemError ("returned a result with an exception set")."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _internal(exc: BaseException) -> int:
    if os.environ.get("LAYERINGDIFF_DEBUG"):
        raise exc
    print(f"error: internal error: {type(exc).__name__}: {_one_line(str(exc))[:300]} (set LAYERINGDIFF_DEBUG=1 "
          "for the traceback, and please report it)", file=sys.stderr)
    return EXIT_INTERNAL


def run() -> None:
    """The `layeringdiff` command: main(), then out without the interpreter's teardown. Its finalisers unload
    numba's TBB thread pool, which can spin forever (seen: `evaluate` done and its results written, the process
    still at 100% CPU an hour later in tbb::finalize). Everything is written and closed by then; training keeps
    the normal exit, for its process group and accelerate's own clean-up."""
    _fill_closed_std_streams()
    code = main()
    if sys.argv[1:2] == ["train"]:
        sys.exit(code)
    _exit_now(code)


def _fill_closed_std_streams() -> None:
    """A standard stream the caller closed (`>&-`, `2>&-`) becomes /dev/null: what would go there is dropped, as
    asked. Python leaves it None (print(file=None) then writes to stdout, flush fails) and the next file opened
    would take its descriptor, where any stray write to fd 1 or 2 would land in an output file."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is not None:
            continue
        null = open(os.devnull, mode)
        try:
            os.fstat(fd)
        except OSError:  # free: hold it with /dev/null too
            os.dup2(null.fileno(), fd)
        setattr(sys, name, null)


def _exit_now(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing more can reach it anyway
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
