"""Command line: `layeringdiff split ...` writes an .ora + PNGs; `layeringdiff serve` runs the backend."""

import argparse
import sys
import time
from pathlib import Path

from .errors import InputError, NotAvailable
from .progress import ProgressFn

EXIT_INPUT = 2
EXIT_INTERNAL = 1
SPLIT_FILLS = ("texture", "smooth", "lama")  # stages.split.FILLS, default first (not imported: --help stays fast)


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
    from .io.images import load_image, load_mask, png_file_bytes
    from .io.ora import OraLayer, write_ora
    from .stages.split import SplitOptions, split_layer

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
    options = SplitOptions(alpha_mode=args.alpha_mode, quantize=255, band=args.band, fill=args.fill)
    method = None
    if args.fill == "lama":  # its model is loaded before any work, so a missing one is reported at once
        from .models import ModelManager
        from .pipeline import model_fill_method

        method = model_fill_method(ModelManager(model_config(args)), {"fill": "lama"})
    result = split_layer(image, mask=mask, box=box, options=options, progress=progress, method=method)
    h, w = image.shape[:2]
    layers = [
        OraLayer("foreground", result.foreground),
        OraLayer("background", result.background),
        OraLayer("original", image, visible=False),
    ]
    # the layers recomposite the source (within 1/255): it is the merged image, the same PNG as the original, which
    # is the input file itself when that is an 8-bit PNG
    source_png = png_file_bytes(args.image) if not args.example else None
    encoded = write_ora(out, layers, w, h, merged=image, encoded={"original": source_png} if source_png else None)
    written = [out]
    if not args.no_png:
        from .io.images import save_png

        for name in ("foreground", "background", "alpha"):
            path = out.with_name(f"{out.stem}_{name}.png")
            if name in encoded:
                path.write_bytes(encoded[name])  # the .ora's own PNG of that layer
            else:
                save_png(path, result.alpha)
            written.append(path)
    if not args.quiet:
        info = result.info
        print(f"split {w}x{h} ({info['hint']} hint, {info['alpha_mode']} alpha) in "
              f"{sum(info['timings'].values()):.2f}s; recomposition error "
              f"{info['recomposition_error'] * 255:.3f}/255", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--models-config", help="JSON model config (default ~/.config/layeringdiff/models.json)")
    group.add_argument("--models-dir", help="folder with one sub-folder per model name (sdxl/, sam/, ...)")
    group.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                       help="use a local folder for a model (repeatable); see `layeringdiff models list`")
    group.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), help="where models run")
    group.add_argument("--dtype", choices=("auto", "fp16", "bf16", "fp32"), help="model precision")
    group.add_argument("--offline", action="store_true", help="never contact the Hugging Face hub")
    group.add_argument("--cpu-offload", action="store_true", help="diffusers CPU offload for small GPUs")
    group.add_argument("--vae-tiling", action="store_true", help="decode large images in VAE tiles")


def model_config(args: argparse.Namespace):  # -> ModelConfig
    from .models import ModelConfig

    config = ModelConfig.load(args.models_config).with_models_dir(args.models_dir).with_overrides(args.model)
    for name in ("device", "dtype"):
        if getattr(args, name):
            setattr(config, name, getattr(args, name))
    config.offline = config.offline or args.offline
    config.cpu_offload = config.cpu_offload or args.cpu_offload
    config.vae_tiling = config.vae_tiling or args.vae_tiling
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import Server, ServerConfig

    server = Server(ServerConfig(host=args.host, port=args.port, max_pixels=args.max_pixels,
                                 parent_pid=args.parent_pid, models=model_config(args), keys=args.keys))
    return server.run()


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
    from layering_protocol import Generate

    from .io.images import load_image, save_png
    from .io.ora import OraLayer, write_ora
    from .models import ModelManager
    from .pipeline import run_job
    from .wire import from_array, to_array

    out = Path(args.output).with_suffix(".ora")
    if not out.parent.exists():
        raise InputError(f"output folder '{out.parent}' does not exist")
    control_image = None
    if args.control_image:
        if not args.control:
            raise InputError("--control-image needs --control canny|depth")
        control_image = from_array(load_image(args.control_image)[..., :3], "f32", "RGB")
    options = {"control": args.control} if args.control else {}
    message = Generate(args.prompt, width=args.width, height=args.height, steps=args.steps, guidance=args.guidance,
                       seed=args.seed, negative_prompt=args.negative or "", phrase=args.phrase,
                       options=options, control_image=control_image)
    progress: ProgressFn = ProgressBar(enabled=not args.quiet)
    output = run_job(message, progress, ModelManager(model_config(args)))
    fg, bg, alpha = to_array(output.foreground), to_array(output.background), to_array(output.alpha)[..., 0]
    h, w = alpha.shape
    phrases = output.info.get("phrases", [])
    names = [f"{p} foreground" if p else "foreground" for p in phrases] or ["foreground"]
    fgs = [OraLayer(names[0], fg)] + [OraLayer(names[i + 1] if i + 1 < len(names) else f"foreground {i + 2}",
                                               to_array(img)) for i, img in enumerate(output.behind)]
    write_ora(out, [*fgs, OraLayer("background", bg)], w, h)
    if not args.quiet:
        print(f"layering: {output.info.get('method')}; stack error {output.info.get('stack_error', 0) * 255:.2f}/255",
              file=sys.stderr)
    print(out)
    for name, px in (("foreground", fg), ("background", bg), ("alpha", alpha)):
        path = out.with_name(f"{out.stem}_{name}.png")
        save_png(path, px)
        print(path)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import REGISTRY, TRAIN_HINT, ModelManager

    if args.action == "fetch" and args.models_dir:
        Path(args.models_dir).expanduser().mkdir(parents=True, exist_ok=True)  # fetch fills it
    manager = ModelManager(model_config(args))
    if args.action == "list":
        for row in manager.status():
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
    for key in keys:  # one failure does not stop the others: a full fetch is tens of GB
        try:
            print(manager.fetch(key, progress=lambda text: print(text, file=sys.stderr), into=args.models_dir))
        except NotAvailable as exc:
            print(f"error: {exc.text}\n  {exc.detail}", file=sys.stderr)
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


def _dataset(args: argparse.Namespace):  # -> LayerDataset | ShardDataset
    from .train.dataset import DatasetConfig, LayerDataset, ShardDataset

    if getattr(args, "data", None):
        return ShardDataset(args.data)
    return LayerDataset(DatasetConfig(size=args.size, seed=args.seed, length=args.count,
                                      foregrounds=args.foregrounds, backgrounds=args.backgrounds))


def add_data_args(parser: argparse.ArgumentParser, count: int) -> None:
    parser.add_argument("--data", help="shards written by `layeringdiff dataset` (default: synthesise on the fly)")
    parser.add_argument("--count", type=int, default=count, help="samples when synthesising")
    parser.add_argument("--size", type=int, default=512, help="sample side (shorter side resized, centre crop)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--foregrounds", help="folder of RGBA foregrounds (default: procedural)")
    parser.add_argument("--backgrounds", help="folder of backgrounds (default: photos shipped in scikit-image)")


def cmd_dataset(args: argparse.Namespace) -> int:
    from .train.dataset import write_shards

    print(write_shards(_dataset(args), args.out, args.shard_size))
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
                                 checkpoint_every=args.checkpoint_every, seed=args.seed)
        export = train_fbdd(config, _dataset(args), report)
    else:
        from .train.hfa import HFATrainConfig, train_hfa

        config = HFATrainConfig(out=args.out, fbdd=args.fbdd, steps=args.steps, batch_size=args.batch_size,
                                lr=args.lr or 1e-4, mixed_precision=args.mixed_precision,
                                checkpoint_every=args.checkpoint_every, seed=args.seed)
        export = train_hfa(config, _dataset(args), report)
    if export is not None:  # the main process of a multi-process run
        print(export)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import classical, evaluate, germer, germer_inpaint, parse_scales, write_report

    try:
        scales = parse_scales(args.scales)
    except ValueError as exc:
        raise InputError(str(exc)) from None

    methods = {"germer (a)": germer, "germer + inpainting (b)": germer_inpaint, "layeringdiff classical": classical,
               "layeringdiff classical, smooth fill": lambda comp, alpha: classical(comp, alpha, fill="smooth")}
    if args.layering:
        from .imaging.compose import exact_layers
        from .stages.layering import FBDD, HFA, copy_through

        fbdd = FBDD.from_folder(Path(args.layering) / "fbdd")
        hfa = HFA.from_folder(Path(args.layering) / "hfa")

        def fbdd_hfa(comp, alpha):
            fg, bg = fbdd.decompose(comp, alpha, args.layering_steps, args.seed)
            fg, bg = copy_through(comp, alpha, *hfa.refine(comp, alpha, fg, bg))
            return exact_layers(comp, alpha, fg, bg)

        methods["layeringdiff fbdd+hfa"] = fbdd_hfa
    result = evaluate(_dataset(args), methods, args.seed, scales)
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
    sp.add_argument("--fill", choices=SPLIT_FILLS, default=SPLIT_FILLS[0],
                    help="hidden background: texture (exemplar-based completion, the default), smooth (colour "
                         "propagation), lama (the LaMa ONNX model: `models fetch lama`)")
    sp.add_argument("--no-png", action="store_true", help="write only the .ora")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    add_model_args(sp)
    sp.set_defaults(func=cmd_split)

    sv = sub.add_parser("serve", help="run the backend for the Krita plugin (ZeroMQ on loopback)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default loopback only; any other needs --keys)")
    sv.add_argument("--keys", help="serve with CURVE encryption and client keys from this folder "
                                   "(`layeringdiff keys init`)")
    sv.add_argument("--port", type=int, default=0, help="port (default: a free one, printed on the READY line)")
    sv.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest image accepted")
    sv.add_argument("--parent-pid", type=int, help="exit when this process ends (set by the Krita plugin)")
    add_model_args(sv)
    sv.set_defaults(func=cmd_serve)

    kp = sub.add_parser("keys", help="CURVE keys for serving beyond loopback: `init DIR`, then `client DIR NAME` "
                                     "per artist's machine (delete DIR/clients/NAME.key to revoke it)")
    kp.add_argument("action", choices=("init", "client"))
    kp.add_argument("folder")
    kp.add_argument("name", nargs="?", help="client: the machine's name")
    kp.set_defaults(func=cmd_keys)

    gp = sub.add_parser("generate", help="generate a layered image from a prompt (needs the model weights)")
    gp.add_argument("prompt", help='prompt with the foreground in brackets: "[a cat] on a sofa"')
    gp.add_argument("-o", "--output", required=True, help="output .ora; PNGs are written beside it")
    gp.add_argument("--phrase", help="foreground phrase (default: the first [bracketed] span)")
    gp.add_argument("--width", type=int, default=1024)
    gp.add_argument("--height", type=int, default=1024)
    gp.add_argument("--steps", type=int, default=30)
    gp.add_argument("--guidance", type=float, default=5.0)
    gp.add_argument("--seed", type=int, default=0)
    gp.add_argument("--negative", help="negative prompt")
    gp.add_argument("--control", choices=("canny", "depth"), help="ControlNet guidance")
    gp.add_argument("--control-image", help="image for the ControlNet (edges are taken for canny; a depth map)")
    gp.add_argument("-q", "--quiet", action="store_true")
    add_model_args(gp)
    gp.set_defaults(func=cmd_generate)

    mp = sub.add_parser("models", help="list or fetch the model weights")
    mp.add_argument("action", choices=("list", "fetch"))
    mp.add_argument("names", nargs="*", default=["all"], help="model names for fetch (default all)")
    add_model_args(mp)
    mp.set_defaults(func=cmd_models)

    ds = sub.add_parser("dataset", help="synthesise a training/test set as shards + manifest")
    add_data_args(ds, 1000)
    ds.add_argument("-o", "--out", required=True)
    ds.add_argument("--shard-size", type=int, default=64)
    ds.set_defaults(func=cmd_dataset)

    tr = sub.add_parser("train", help="train FBDD or HFA (use `accelerate launch -m layeringdiff train ...` "
                                      "for several GPUs or nodes)")
    tr.add_argument("stage", choices=("fbdd", "hfa"))
    tr.add_argument("-o", "--out", required=True, help="run folder: checkpoints/, losses.csv/png, export/")
    tr.add_argument("--init", help="fbdd: SD2-inpainting folder or FBDD folder to start from")
    tr.add_argument("--fbdd", help="hfa: trained FBDD folder whose outputs HFA refines (default: classical)")
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--batch-size", type=int, default=4)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    tr.add_argument("--gradient-checkpointing", action="store_true")
    tr.add_argument("--ema", type=float, default=0.0, help="EMA decay of the FBDD weights (0: off)")
    tr.add_argument("--checkpoint-every", type=int, default=500)
    tr.add_argument("-q", "--quiet", action="store_true")
    add_data_args(tr, 10000)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="foreground/background estimation metrics vs baselines (paper Table 4)")
    add_data_args(ev, 100)
    ev.add_argument("-o", "--out", required=True, help="folder for results.json and results.md")
    ev.add_argument("--layering", help="folder with fbdd/ and hfa/ to evaluate as well")
    ev.add_argument("--layering-steps", type=int, default=25)
    ev.add_argument("--scales", default="", help="metric factors, e.g. MAD=1e3,MSE=1e3,SAD=1e-3 (the default)")
    ev.add_argument("--generated", help="folder of generated .ora files: Table 2 statistics of their top layer")
    ev.set_defaults(func=cmd_evaluate)

    ex = sub.add_parser("examples", help="list the bundled example photos")
    ex.set_defaults(func=cmd_examples)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (InputError, NotAvailable) as exc:
        print(f"error: {exc.text}" + (f"\n  {exc.detail}" if exc.detail else ""), file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
