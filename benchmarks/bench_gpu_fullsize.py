"""Full-size models with random weights, timed through the product's own code on one CUDA GPU (issue 21, section 2).

    python benchmarks/bench_gpu_fullsize.py                   # all 8 configurations
    python benchmarks/bench_gpu_fullsize.py --quick           # fp16, fp16 + offload + tiling, bf16 (fits ~8 minutes)
    python benchmarks/bench_gpu_fullsize.py --limit-gb 12     # as on a 12 GiB card: what does not fit says OOM
    python benchmarks/bench_gpu_fullsize.py --reduced         # the same script on tiny models, 64 x 64, on the CPU
    python benchmarks/bench_gpu_fullsize.py --check-configs   # only the full-size folders' configs and processors
    python benchmarks/bench_gpu_fullsize.py --cpu --only bf16 --size 128 --steps 2 --layering-steps 2 \
        --layering-size 128 --warmup-steps 0                  # the full-size path end to end without a GPU (slow)

No weights can be downloaded, so the models are the published architectures (benchmarks/fullsize.py) with random
weights, written as hub-like folders under --work (deleted at the end unless --keep) and loaded by the product's
ModelManager, as `--models-dir` / `--model NAME=FOLDER` would load real ones. Timed, in fp16 and bf16, with and
without ModelConfig.cpu_offload and ModelConfig.vae_tiling, with the models loaded and after a short warm-up:

  1. Generate: generate_composite, SDXL at 1024 x 1024, 30 steps;
  2. the phrase split: determine_foreground (Grounding DINO -> SAM -> trimap -> ViTMatte) on that composite;
  3. layering: split_layer with the product's "fbdd" layer method (pipeline.layer_method: FBDD's two UNets,
     25 steps each, at FBDD's working size, then HFA), as the Generate job calls it;
  4. one Peel: run_job(Peel) with a phrase on the background that 3 left (a phrase split and layering again).

Printed as a Markdown table, per configuration and stage: the mean time of a denoising step (the first step of each
loop left out: it carries text encoding, offload moves and lazy kernel loading), the stage's time, and its peak GPU
memory three ways: PyTorch's max_memory_allocated (tensors) and max_memory_reserved (its caching allocator), and the
device's used memory as the driver reports it (cudaMemGetInfo, what nvidia-smi shows: CUDA context and library
workspaces included), sampled every 10 ms in a thread and at the stage's end. Then the targets (Generate + split +
layering at 1024 x 1024 in at most 12 GiB, every stage in at most 10 s) and which configuration to use on an 8, 12
and 24 GB card.

Random weights do the same arithmetic as real ones, but what they find is arbitrary: the phrase split runs with
box and text thresholds of 0 so that Grounding DINO always returns a box, and a stage that still stops early (SAM
finds nothing) is marked "partial" and the next stage goes on with a stand-in. Their boxes are specks, so stage 3
takes a stand-in object of ordinary size when stage 2's mask covers under 1% of the canvas (MIN_OBJECT); the Peel
keeps what its own phrase split finds (its crop is in its row). NaN or inf coming out of any model (forward hooks,
read once per stage) marks the stage "NaN" instead of timing garbage silently.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "backend", ROOT / "protocol"):  # runs from a checkout without installing it
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

GIB = 2**30
STAGES: dict[str, str] = {
    "load": "Load models (not a target)",
    "generate": "1. Generate (SDXL)",
    "split": "2. Phrase split (DINO, SAM, ViTMatte)",
    "layering": "3. Layering (FBDD + HFA)",
    "peel": "4. Peel (split + layering of the background)",
}
TIMED = ("generate", "split", "layering", "peel")
JOB = "Generate + split + layering"
JOB_STAGES = ("generate", "split", "layering")
TARGET_STAGE_S = 10.0
TARGET_JOB_GIB = 12.0
CARDS_GB = (8, 12, 24)
HEADROOM_GIB = 0.5  # of a card's memory that the desktop and other programs keep
USABLE = ("ok", "NaN", "partial")  # the stage did its arithmetic: its time and memory stand
NEEDED = ("sdxl", "grounding-dino", "sam", "vitmatte", "layering")
PROMPT = "a red fox and a dog in the snow, detailed photo"
PHRASE, PEEL_PHRASE = "a red fox", "a dog"  # words of the synthetic BERT vocabulary (tests/models/tiny.py)
STD = 0.02  # random weights: N(0, 0.02) for every weight matrix, as transformers initialises; fp16 stays finite
SAM_HYPER_BIAS = 0.1  # see randomise(): a random SAM returns its box's area, not nothing
STEP_STAGES = ("generate", "fbdd foreground", "fbdd background")  # progress reports made once per denoising step
# Random weights find specks (a box of a few dozen pixels): below this share of the canvas stage 3 takes a stand-in
# object of ordinary size instead, since its CPU work (the composition step on the object's crop) and HFA grow with
# the crop; FBDD's cost does not (it runs at its working size whatever the crop)
MIN_OBJECT = 0.01


# ---- configurations and results -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    dtype: str  # ModelConfig.dtype: "fp16" | "bf16"
    offload: bool = False  # ModelConfig.cpu_offload
    tiling: bool = False  # ModelConfig.vae_tiling

    @property
    def name(self) -> str:
        return " + ".join([self.dtype] + ["offload"] * self.offload + ["tiling"] * self.tiling)


ALL = tuple(Config(d, o, t) for d in ("fp16", "bf16") for o in (False, True) for t in (False, True))
QUICK = (Config("fp16"), Config("fp16", True, True), Config("bf16"))


@dataclass
class Row:
    config: str
    stage: str  # a key of STAGES, or JOB
    status: str = "ok"  # ok | NaN | partial | OOM | error: ... | skipped: ...
    seconds: float | None = None
    step_s: float | None = None  # mean denoising step
    steps: str = ""
    peak_alloc: int | None = None  # bytes; None: not measured (the CPU)
    peak_reserved: int | None = None
    peak_device: int | None = None  # the driver's figure: device-wide used memory
    note: str = ""


@dataclass
class Settings:
    device: str  # "cuda" | "cpu"
    size: int  # the canvas side
    steps: int  # SDXL's
    layering_steps: int  # each FBDD UNet's
    layering_size: int | None  # FBDD's working size; None: its own (fbdd.json, 512)
    warmup_steps: int  # 0: no warm-up
    seed: int = 0


@dataclass
class Done:
    """What a stage function reports besides its time."""

    steps: str = ""
    note: str = ""
    partial: bool = False  # it stopped early on random outputs: its time is a lower bound


# ---- measuring --------------------------------------------------------------------------------------------------
def device_used() -> int:
    """Used memory of the whole device as the driver reports it (cudaMemGetInfo: what nvidia-smi shows)."""
    import torch

    free, total = torch.cuda.mem_get_info()
    return total - free


class DeviceSampler:
    """The driver's used memory, polled in a thread: PyTorch's counters miss the context and library workspaces."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.peak = interval, device_used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, device_used())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, device_used())  # the caching allocator keeps what it took: the end shows the peak too


class Measure:
    """Wall time and peak memory of one stage (a context manager that lets exceptions through)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.seconds = 0.0
        self.peak_alloc: int | None = None
        self.peak_reserved: int | None = None
        self.peak_device: int | None = None
        self._sampler: DeviceSampler | None = None

    def __enter__(self) -> "Measure":
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()  # peaks from what is resident now: the loaded models count
            self._sampler = DeviceSampler()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> bool:
        if self.cuda:
            import torch

            with contextlib.suppress(Exception):  # after an OOM the queue still drains
                torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self._t0
        if self.cuda and self._sampler is not None:
            import torch

            self.peak_alloc = torch.cuda.max_memory_allocated()
            self.peak_reserved = torch.cuda.max_memory_reserved()
            self.peak_device = self._sampler.stop()
        return False


class StepTimer:
    """The progress callback handed to the stages: when each denoising step ends, after a device sync (so a step's
    time is its GPU work, not how far the launch queue ran ahead)."""

    def __init__(self, sync: Callable[[], None] = lambda: None) -> None:
        self.sync = sync
        self.events: list[tuple[str, float, float]] = []  # (stage, fraction, time)

    def __call__(self, stage: str, fraction: float) -> None:
        if stage in STEP_STAGES:
            self.sync()
            self.events.append((stage, fraction, time.perf_counter()))

    def reset(self) -> None:
        self.events = []

    def step_times(self) -> list[float]:
        """Between consecutive step ends of one loop: each loop's first step (from the stage's 0.0 report, or the
        loop's start) carries text encoding, offload moves and the VAE encode, and is left out."""
        pairs = zip(self.events, self.events[1:], strict=False)
        return [t1 - t0 for (s0, f0, t0), (s1, _, t1) in pairs if s0 == s1 and f0 > 0]


def _tensors(value: Any) -> list[Any]:
    """Every tensor in a model's output (tensors, tuples, dict-like outputs), nested."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


class NanWatch:
    """Forward hooks that flag NaN (and inf, where no output may hold one) in models' outputs. The flags stay on
    the device and are read once per stage: no sync per call."""

    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}
        self._handles: list[Any] = []

    def watch(self, name: str, module: Any, inf_too: bool) -> None:
        import torch

        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            for t in _tensors(output):
                if t.is_floating_point():
                    bad = (~torch.isfinite(t)).any() if inf_too else torch.isnan(t).any()
                    self.flags[name] = bad if name not in self.flags else self.flags[name] | bad

        self._handles.append(module.register_forward_hook(hook))

    def take(self) -> list[str]:
        names = [name for name, flag in self.flags.items() if bool(flag)]
        self.flags.clear()
        return names

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def watch_models(manager: Any) -> NanWatch:
    """Every model of the four stages. Grounding DINO's logits hold -inf by design (masked text positions): the
    transformers models are checked for NaN only."""
    watch = NanWatch()
    pipe = manager.sdxl()
    for name in ("unet", "text_encoder", "text_encoder_2"):
        watch.watch(f"sdxl {name}", getattr(pipe, name), True)
    watch.watch("sdxl vae decoder", pipe.vae.decoder, True)  # vae.decode() is a method: its decoder is the module
    fbdd, hfa = manager.layering()
    for name, module in (("fbdd unet_fg", fbdd.unet_fg), ("fbdd unet_bg", fbdd.unet_bg),
                         ("fbdd vae encoder", fbdd.vae.encoder), ("fbdd vae decoder", fbdd.vae.decoder),
                         ("hfa fan", hfa.fan), ("hfa ban", hfa.ban)):
        watch.watch(name, module, True)
    for name, pair in (("grounding dino", manager.grounding_dino()), ("sam", manager.sam()),
                       ("vitmatte", manager.vitmatte())):
        watch.watch(name, pair[0], False)
    return watch


# ---- the stages, through the product's code ---------------------------------------------------------------------
@dataclass
class Job:
    manager: Any
    settings: Settings
    timer: StepTimer
    watch: NanWatch | None = None
    gen_steps: int = 30
    fbdd_steps: int = 25
    composite: Any = None  # HxWx3 float32, from stage 1
    alpha: Any = None  # HxW, from stage 2
    background: Any = None  # HxWx4, from stage 3
    nan: list[str] = field(default_factory=list)  # non-finite outputs seen outside the hooks

    @property
    def cuda(self) -> bool:
        return self.settings.device == "cuda"

    def image(self) -> np.ndarray:
        """The composite, or a stand-in where Generate gave none (it failed): the later stages are still timed."""
        if self.composite is None:
            from layeringdiff.examples import synthetic_composite

            self.composite = synthetic_composite(self.settings.size, self.settings.size)[0]
        return self.composite

    def mask(self) -> np.ndarray:
        if self.alpha is None:
            self.alpha = stand_in_mask(self.settings.size, self.settings.size)
        return self.alpha


def stand_in_mask(h: int, w: int) -> np.ndarray:
    """A centred disc half the canvas across: an object of ordinary size."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= (min(h, w) / 4) ** 2).astype(np.float32)


def layering_options(job: Job) -> dict[str, Any]:
    """The job options that choose stage 3 (pipeline.LAYERING_KEYS)."""
    size = job.settings.layering_size
    return {"layering": "fbdd", "layering_steps": job.fbdd_steps, **({"layering_size": size} if size else {})}


def loose_foreground() -> Any:
    """Random weights score every box near 0.5: thresholds of 0 make Grounding DINO return its best box always."""
    from layeringdiff.stages.foreground import ForegroundOptions

    return ForegroundOptions(box_threshold=0.0, text_threshold=0.0)


def finite(*arrays: Any) -> bool:
    return all(np.all(np.isfinite(a)) for a in arrays)


def stage_generate(job: Job) -> Done:
    from layeringdiff.errors import InputError
    from layeringdiff.stages.generate import GenerateParams, generate_composite

    s = job.settings
    params = GenerateParams(PROMPT, s.size, s.size, job.gen_steps, seed=s.seed)
    try:
        job.composite = generate_composite(job.manager.sdxl(), params, job.timer)
    except InputError as exc:  # its NaN check: flagged, and the later stages run on a stand-in
        job.nan.append(exc.text)
        job.composite = None
        return Done(str(job.gen_steps), "the later stages ran on a stand-in composite")
    return Done(str(job.gen_steps))


def stage_split(job: Job) -> Done:
    from layeringdiff.errors import InputError
    from layeringdiff.stages.foreground import determine_foreground

    try:
        job.alpha, info = determine_foreground(job.manager, job.image(), PHRASE, loose_foreground(), job.timer)
    except InputError as exc:  # e.g. SAM found nothing in a random box
        job.alpha = None
        return Done(note=f"stopped: {exc.text}; stage 3 used a stand-in mask", partial=True)
    if not finite(job.alpha):
        job.nan.append("the alpha")
    x0, y0, x1, y1 = info["box"]
    return Done(note=f"box {x1 - x0}x{y1 - y0} px, {info['transparent_boxes']} transparent-thing boxes")


def stage_layering(job: Job) -> Done:
    from layeringdiff.options import SplitOptions
    from layeringdiff.pipeline import layer_method
    from layeringdiff.stages.layering import working_shape
    from layeringdiff.stages.split import split_layer
    from layeringdiff.wire import QUANTIZE

    method = layer_method(job.manager, layering_options(job))  # the models are loaded: this only makes the method
    mask, note = job.mask(), ""
    if float(np.mean(mask > 0)) < MIN_OBJECT:
        note = f"stage 2's mask covers {np.mean(mask > 0):.2%} of the canvas: a stand-in disc instead; "
        mask = stand_in_mask(*mask.shape)
    # as pipeline._generate calls it: the stage-2 alpha as the mask, quantised for 8-bit output
    result = split_layer(job.image(), mask=mask, options=SplitOptions(alpha_mode="mask", quantize=QUANTIZE["u8"]),
                         progress=job.timer, method=method)
    job.background = result.background
    if not finite(result.foreground, result.background):
        job.nan.append("the layers")
    x0, y0, x1, y1 = result.info["crop"]
    size = job.settings.layering_size or job.manager.layering()[0].size
    wh, ww = working_shape(y1 - y0, x1 - x0, size)
    return Done(f"2 x {job.fbdd_steps}", f"{note}crop {x1 - x0}x{y1 - y0} px, FBDD at {ww}x{wh}")


def stage_peel(job: Job) -> Done:
    from layering_protocol import Peel
    from layeringdiff.errors import InputError
    from layeringdiff.pipeline import run_job
    from layeringdiff.wire import from_array

    layer = job.background
    if layer is None:  # stage 3 failed: peel the composite itself
        layer = np.dstack([job.image(), np.ones(job.image().shape[:2], np.float32)])
    image = from_array(layer, "u8", "RGBA")  # what the plugin sends back: the 8-bit background layer
    options = {**layering_options(job), "box_threshold": 0.0, "text_threshold": 0.0}
    try:
        out = run_job(Peel(image, phrase=PEEL_PHRASE, index=1, options=options), job.timer, job.manager)
        note, partial = "", False
    except InputError as exc:  # nothing found on random outputs: the same peel with a selection instead
        mask = from_array(stand_in_mask(image.height, image.width), "u8", "L")
        out = run_job(Peel(image, mask=mask, index=1, options=options), job.timer, job.manager)
        note, partial = f"phrase stopped ({exc.text}): peeled with a stand-in mask", True
    if not math.isfinite(out.info.get("recomposition_error", 0.0)):
        job.nan.append("the peel's layers")
    x0, y0, x1, y1 = out.info["crop"]
    return Done(f"2 x {job.fbdd_steps}", "; ".join(filter(None, [note, f"crop {x1 - x0}x{y1 - y0} px"])), partial)


StageFn = Callable[[Job], Done]
STAGE_FNS: list[tuple[str, StageFn]] = [("generate", stage_generate), ("split", stage_split),
                                        ("layering", stage_layering), ("peel", stage_peel)]


# ---- running the configurations --------------------------------------------------------------------------------
class Log:
    """Elapsed time before every line, flushed: a run cut off at the machine's limit still shows how far it got."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, text: str) -> None:
        print(f"[{self.elapsed():7.1f} s] {text}", flush=True)


def gib(nbytes: int | None) -> str:
    return "n/a (CPU)" if nbytes is None else f"{nbytes / GIB:.2f} GiB"


def describe(row: Row) -> str:
    parts = [f"{row.config} | {STAGES.get(row.stage, row.stage)}: {row.status}"]
    if row.seconds is not None:
        parts.append(f"{row.seconds:.2f} s")
    if row.step_s is not None:
        parts.append(f"{row.step_s:.3f} s/step")
    if row.peak_alloc is not None:
        parts.append(f"peak {gib(row.peak_alloc)} allocated, {gib(row.peak_device)} on the device")
    return ", ".join(parts) + (f" ({row.note})" if row.note else "")


def is_oom(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, or a library's allocation failure that reaches Python as a RuntimeError."""
    import torch

    text = str(exc)
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "ALLOC_FAILED" in text))


def first_line(exc: BaseException, limit: int = 150) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else ""


def measured_row(config: str, stage: str, status: str, m: Measure, done: Done, steps: list[float],
                 note: str = "") -> Row:
    return Row(config, stage, status, round(m.seconds, 4), statistics.fmean(steps) if steps else None, done.steps,
               m.peak_alloc, m.peak_reserved, m.peak_device, "; ".join(filter(None, [done.note, note])))


def timed_stages(config: str, stages: list[tuple[str, StageFn]], job: Job, log: Callable[[str], None],
                 rows: list[Row] | None = None) -> list[Row]:
    """Each stage measured; an OOM ends the configuration (the rest: "skipped"), any other failure is reported and
    the next stage goes on with stand-ins (Job.image, Job.mask). Rows are appended to `rows` as they come (a run
    stopped half-way still reports them) and returned."""
    rows = [] if rows is None else rows
    failed = ""
    for key, fn in stages:
        if failed:
            rows.append(Row(config, key, f"skipped: after {failed}"))
            continue
        job.timer.reset()
        job.nan.clear()
        if job.watch is not None:
            job.watch.take()
        measure, done, status = Measure(job.cuda), Done(), "ok"
        try:
            with measure:
                done = fn(job)
        except Exception as exc:  # noqa: BLE001  # a failing stage is a result to report, not the end of the run
            # (the exception, its frames and their tensors are let go at the end of this block)
            if is_oom(exc):
                status = failed = "OOM"
            else:
                status = f"error: {type(exc).__name__}: {first_line(exc)}"
        bad = (job.watch.take() if job.watch is not None else []) + job.nan
        if status == "ok" and bad:
            status = "NaN"
        elif status == "ok" and done.partial:
            status = "partial"
        row = measured_row(config, key, status, measure, done, job.timer.step_times(),
                           f"NaN/inf in: {', '.join(bad)}" if bad else "")
        rows.append(row)
        log(describe(row))
    return rows


def load_models(manager: Any, settings: Settings) -> None:
    """Everything the four stages use, loaded as the product loads it (the FBDD + HFA pair by its layer method)."""
    from layeringdiff.pipeline import layer_method

    manager.require(list(NEEDED))
    manager.sdxl()
    manager.grounding_dino()
    manager.sam()
    manager.vitmatte()
    layer_method(manager, {"layering": "fbdd", "layering_steps": settings.layering_steps})


def free_memory(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()


def run_config(config: Config, models: Path, settings: Settings, log: Log, rows: list[Row]) -> None:
    """One configuration from loading to the Peel, its rows appended to `rows` as they come; its models are let go
    at the end (the next one loads its own)."""
    import torch
    from layeringdiff.models import ModelConfig, ModelManager

    cuda = settings.device == "cuda"
    log(f"== {config.name}" + (f": {gib(device_used())} used on the device before loading" if cuda else ""))
    model_config = ModelConfig(device=settings.device, dtype=config.dtype, cpu_offload=config.offload,
                               vae_tiling=config.tiling).with_models_dir(str(models))
    manager: Any = ModelManager(model_config)
    job: Job | None = None
    try:
        measure = Measure(cuda)
        try:
            with measure:
                load_models(manager, settings)
        except Exception as exc:  # noqa: BLE001  # reported in the table; the next configuration still runs
            status = "OOM" if is_oom(exc) else f"error: {type(exc).__name__}: {first_line(exc)}"
            rows.append(measured_row(config.name, "load", status, measure, Done(), []))
            log(describe(rows[-1]))
            rows += [Row(config.name, key, f"skipped: after {'OOM' if status == 'OOM' else 'a failed load'}")
                     for key in TIMED]
            return
        rows.append(measured_row(config.name, "load", "ok", measure, Done(), []))
        log(describe(rows[-1]))
        job = Job(manager, settings, StepTimer(torch.cuda.synchronize if cuda else lambda: None), watch_models(manager))
        if settings.warmup_steps:  # lazy kernel loading and first-call costs out of the timed run
            job.gen_steps = job.fbdd_steps = settings.warmup_steps
            warm = timed_stages(config.name, STAGE_FNS, job, lambda text: log(f"(warm-up) {text}"))
            if any(r.status == "OOM" for r in warm):
                for r in warm:
                    r.note = "; ".join(filter(None, [r.note, f"in the warm-up ({settings.warmup_steps} steps)"]))
                rows += warm
                return
        job.gen_steps, job.fbdd_steps = settings.steps, settings.layering_steps
        job.composite = job.alpha = job.background = None
        timed_stages(config.name, STAGE_FNS, job, log, rows)
    finally:
        if job is not None and job.watch is not None:
            job.watch.close()
        job = manager = None
        free_memory(cuda)
        if cuda:
            log(f"{config.name}: models let go, {gib(torch.cuda.memory_allocated())} still allocated")


# ---- the table and the recommendation (pure: tested with hand-made rows) -------------------------------------------
def configs_of(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(r.config for r in rows))


def _max(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known and len(known) == len(values) else None


def job_row(config: str, rows: list[Row]) -> Row:
    """Generate + split + layering of one configuration: the stages' times added, the highest of their peaks (each
    peak counts the models resident at the time, so the highest is the job's)."""
    parts = [r for r in rows if r.config == config and r.stage in JOB_STAGES]
    usable = len(parts) == len(JOB_STAGES) and all(r.status in USABLE for r in parts)
    worst = next((r.status for r in parts if r.status not in USABLE), "")
    status = "ok" if usable and all(r.status == "ok" for r in parts) else (worst or "; ".join(
        sorted({r.status for r in parts if r.status != "ok"})))
    seconds = sum(r.seconds for r in parts if r.seconds is not None) if usable else None
    return Row(config, JOB, status, seconds, None, "", _max([r.peak_alloc for r in parts]),
               _max([r.peak_reserved for r in parts]), _max([r.peak_device for r in parts]))


def memory_verdict(device: int | None, alloc: int | None, budget_gib: float, context: int = 0) -> str:
    """Within a budget: by the driver's figure ("met"), or only by allocations plus the CUDA context ("met by
    allocations": a large card's allocator caches more than a small card's would, so the truth lies between)."""
    if device is None or alloc is None:
        return "n/a (CPU)"
    if device <= budget_gib * GIB:
        return "met"
    if alloc + context <= budget_gib * GIB:
        return f"met by allocations only (driver {gib(device)})"
    return "missed"


def targets(row: Row, context: int = 0) -> str:
    if row.stage == JOB:
        if row.seconds is None:
            return "not measured"
        mem = memory_verdict(row.peak_device, row.peak_alloc, TARGET_JOB_GIB, context)
        return f"≤{TARGET_JOB_GIB:g} GiB: {mem}"
    if row.stage not in TIMED or row.seconds is None or row.status not in USABLE:
        return ""
    return f"≤{TARGET_STAGE_S:g} s: {'met' if row.seconds <= TARGET_STAGE_S else 'missed'}"


def with_job_rows(rows: list[Row]) -> list[Row]:
    out: list[Row] = []
    for config in configs_of(rows):
        mine = [r for r in rows if r.config == config and r.stage != JOB]
        out += mine + [job_row(config, mine)]
    return out


def job_time_verdict(config: str, rows: list[Row]) -> str:
    parts = [r for r in rows if r.config == config and r.stage in JOB_STAGES]
    if len(parts) < len(JOB_STAGES) or any(r.seconds is None or r.status not in USABLE for r in parts):
        return ""
    slow = [STAGES[r.stage].split(". ", 1)[-1] for r in parts if r.seconds > TARGET_STAGE_S]  # type: ignore[operator]
    return f"every stage ≤{TARGET_STAGE_S:g} s: " + ("met" if not slow else f"missed ({', '.join(slow)})")


def markdown(rows: list[Row], context: int = 0) -> str:
    header = ["Configuration", "Stage", "Steps", "s/step", "Stage s", "Peak allocated", "Peak reserved",
              "Peak on device (driver)", "Targets", "Status / notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in with_job_rows(rows):
        target = targets(r, context)
        if r.stage == JOB:
            target = "; ".join(filter(None, [target, job_time_verdict(r.config, rows)]))
        cells = [r.config, STAGES.get(r.stage, r.stage), r.steps, "" if r.step_s is None else f"{r.step_s:.3f}",
                 "" if r.seconds is None else f"{r.seconds:.2f}", gib(r.peak_alloc), gib(r.peak_reserved),
                 gib(r.peak_device), target, "; ".join(filter(None, [r.status, r.note]))]
        if r.seconds is None:  # nothing measured: no memory figures either
            cells[5:8] = ["", "", ""]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


@dataclass
class Summary:
    config: str
    usable: bool  # every stage (load included) did its arithmetic
    seconds: float | None  # the four stages
    device: int | None  # the highest peak of any stage, load included
    alloc: int | None
    caveats: list[str]


def summaries(rows: list[Row]) -> list[Summary]:
    out = []
    for config in configs_of(rows):
        mine = [r for r in rows if r.config == config and r.stage != JOB]
        usable = {r.stage for r in mine} >= {"load", *TIMED} and all(r.status in USABLE for r in mine)
        caveats = sorted({f"{STAGES[r.stage].split('. ', 1)[-1]} {r.status}" for r in mine
                          if r.status in ("NaN", "partial")})
        seconds = sum(r.seconds for r in mine if r.stage in TIMED and r.seconds is not None) if usable else None
        out.append(Summary(config, usable, seconds, _max([r.peak_device for r in mine]),
                           _max([r.peak_alloc for r in mine]), caveats))
    return out


def seconds_of(summary: Summary) -> float:
    return summary.seconds if summary.seconds is not None else math.inf


def recommend(rows: list[Row], cards: tuple[int, ...] = CARDS_GB, context: int = 0,
              headroom_gib: float = HEADROOM_GIB) -> list[str]:
    """Per card size, the fastest measured configuration whose peak fits the card less `headroom_gib`: by the driver's
    figure, or failing that by allocations plus the CUDA context (`context`), marked as to be checked."""
    sums = summaries(rows)
    if not any(s.device is not None for s in sums):
        return [f"- {card} GB card: n/a: no GPU memory was measured (a CPU run); run this on a CUDA GPU"
                for card in cards]
    usable = [s for s in sums if s.usable and s.device is not None and s.alloc is not None]
    left_out = [s.config for s in sums if not s.usable]
    lines = []
    for card in cards:
        budget = (card - headroom_gib) * GIB
        fits = sorted((s for s in usable if s.device <= budget), key=seconds_of)  # type: ignore[operator]
        tight = sorted((s for s in usable if s not in fits and s.alloc + context <= budget),  # type: ignore[operator]
                       key=seconds_of)
        head = f"- {card} GB card ({card - headroom_gib:g} GiB usable):"
        if fits:
            best = fits[0]
            line = (f"{head} {best.config}: peak {gib(best.device)} on the device, {best.seconds:.1f} s for the four "
                    f"stages")
            others = [s.config for s in fits[1:]]
            line += f"; also fits: {', '.join(others)}" if others else "; nothing else measured fits"
            if best.config.startswith("bf16"):
                fp16 = next((s for s in fits if s.config.startswith("fp16")), None)
                line += (". bf16 needs an Ampere (RTX 30xx) or newer GPU; before that: "
                         + (f"{fp16.config} ({fp16.seconds:.1f} s)" if fp16 else "no fp16 configuration fits"))
        elif tight:
            best = tight[0]
            line = (f"{head} {best.config} may fit: its tensors peak at {gib(best.alloc)} (+ {gib(context)} CUDA "
                    f"context), but the driver saw {gib(best.device)} on this larger card; check with --limit-gb "
                    f"{card - headroom_gib:g}")
        else:
            small = min(usable, key=lambda s: s.device or 0, default=None)
            line = f"{head} none of the measured configurations fits" + (
                f" (the smallest, {small.config}, peaks at {gib(small.device)} on the device)" if small else "")
        best_caveats = (fits or tight or [None])[0]
        if best_caveats is not None and best_caveats.caveats:
            line += f" [with random weights: {', '.join(best_caveats.caveats)}]"
        lines.append(line)
    if left_out:
        lines.append(f"- not considered (OOM, error or skipped): {', '.join(left_out)}")
    return lines


# ---- the model folders ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One model folder of the full-size stack: where it goes, its class, what its weight file holds."""

    path: str  # under the models folder (the --models-dir layout)
    library: str  # "diffusers" | "transformers"
    cls: str
    stored: str  # "fp16": diffusion models (ModelManager loads them in the run's dtype); "fp32": loaded as stored
    model: str  # its key in benchmarks/fullsize.py MODELS: the parameter count to check


PARTS = (
    Part("sdxl/unet", "diffusers", "UNet2DConditionModel", "fp16", "sdxl-unet"),
    Part("sdxl/text_encoder", "transformers", "CLIPTextModel", "fp16", "sdxl-text-encoder"),
    Part("sdxl/text_encoder_2", "transformers", "CLIPTextModelWithProjection", "fp16", "sdxl-text-encoder-2"),
    Part("sdxl/vae", "diffusers", "AutoencoderKL", "fp16", "sdxl-vae"),
    # transformers 5 loads a checkpoint in its stored dtype, and the product loads these three without one (fp32 on
    # the hub): stored in fp32 so they load as the real ones do
    Part("grounding-dino", "transformers", "GroundingDinoForObjectDetection", "fp32", "grounding-dino"),
    Part("sam", "transformers", "SamModel", "fp32", "sam"),
    Part("vitmatte", "transformers", "VitMatteForImageMatting", "fp32", "vitmatte"),
    Part("layering/fbdd/unet_fg", "diffusers", "UNet2DConditionModel", "fp16", "fbdd-unet"),
    Part("layering/fbdd/unet_bg", "diffusers", "UNet2DConditionModel", "fp16", "fbdd-unet"),
    Part("layering/fbdd/vae", "diffusers", "AutoencoderKL", "fp16", "sd2-vae"),
)
SDXL_SCHEDULER: dict[str, Any] = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                                  "steps_offset": 1, "timestep_spacing": "leading"}  # stable-diffusion-xl-base-1.0's


def part_config(part: Part) -> Any:
    """The published config (benchmarks/fullsize.py): a dict for diffusers, a config object for transformers."""
    import transformers

    from benchmarks import fullsize as fs

    diffusers_configs = {"sdxl/unet": fs.SDXL_UNET, "sdxl/vae": fs.SDXL_VAE, "layering/fbdd/unet_fg": fs.FBDD_UNET,
                         "layering/fbdd/unet_bg": fs.FBDD_UNET, "layering/fbdd/vae": fs.SD2_VAE}
    if part.path in diffusers_configs:
        return diffusers_configs[part.path]
    if part.path == "sdxl/text_encoder":
        return transformers.CLIPTextConfig(**fs.SDXL_TEXT_ENCODER)
    if part.path == "sdxl/text_encoder_2":
        return transformers.CLIPTextConfig(**fs.SDXL_TEXT_ENCODER_2)
    if part.path == "grounding-dino":
        return transformers.GroundingDinoConfig(backbone_config=transformers.SwinConfig(**fs.GDINO_SWIN),
                                                text_config=transformers.BertConfig(**fs.GDINO_BERT), **fs.GDINO)
    if part.path == "sam":
        return transformers.SamConfig(vision_config=fs.SAM_VISION, prompt_encoder_config=fs.SAM_PROMPT,
                                      mask_decoder_config=fs.SAM_DECODER)
    if part.path == "vitmatte":
        return transformers.VitMatteConfig(backbone_config=transformers.VitDetConfig(**fs.VITMATTE_BACKBONE),
                                           **fs.VITMATTE)
    raise KeyError(part.path)


def build_from_folder(part: Part, folder: Path) -> Any:
    """The model its folder's config.json describes, built on the current default device."""
    if part.library == "diffusers":
        import diffusers

        cls = getattr(diffusers, part.cls)
        return cls.from_config(cls.load_config(folder))
    import transformers

    return getattr(transformers, part.cls)(transformers.AutoConfig.from_pretrained(folder))


def write_configs(models: Path) -> None:
    """Every folder's configs, tokenizers, processors and schedulers, no weights: hub-like folders at full size.
    Tokenizers as tests/models/tiny.py makes them (a synthetic vocabulary: ids only need to stay below the
    embedding's size), processors at the real ones' sizes (their defaults: Grounding DINO 800/1333, SAM 1024,
    ViTMatte pads to 32)."""
    import transformers
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from benchmarks import fullsize as fs
    from tests.models.tiny import _bert_vocab, _clip_tokenizer

    meta: dict[str, Any] = {}
    for part in PARTS:
        folder = models / part.path
        folder.mkdir(parents=True, exist_ok=True)
        config = part_config(part)
        if part.library == "diffusers":
            import diffusers

            meta[part.path] = fs.meta_model(lambda c=config, p=part: getattr(diffusers, p.cls).from_config(c))
            meta[part.path].save_config(folder)
        else:
            config.save_pretrained(folder)
            if part.path.startswith("sdxl/"):
                meta[part.path] = fs.meta_model(lambda c=config, p=part: getattr(transformers, p.cls)(c))
    tokenizer, _ = _clip_tokenizer()
    scheduler = EulerDiscreteScheduler(**SDXL_SCHEDULER)
    for name in ("tokenizer", "tokenizer_2"):
        tokenizer.save_pretrained(models / "sdxl" / name)
    scheduler.save_pretrained(models / "sdxl" / "scheduler")
    # model_index.json from a pipeline of meta-device parts: what the pipeline's own save would write
    StableDiffusionXLPipeline(vae=meta["sdxl/vae"], text_encoder=meta["sdxl/text_encoder"],
                              text_encoder_2=meta["sdxl/text_encoder_2"], tokenizer=tokenizer, tokenizer_2=tokenizer,
                              unet=meta["sdxl/unet"], scheduler=scheduler).save_config(models / "sdxl")

    dino = models / "grounding-dino"
    transformers.GroundingDinoProcessor(image_processor=transformers.GroundingDinoImageProcessorPil(),
                                        tokenizer=transformers.BertTokenizer(vocab=str(_bert_vocab(dino)))
                                        ).save_pretrained(dino)
    transformers.SamProcessor(image_processor=transformers.SamImageProcessorPil()).save_pretrained(models / "sam")
    transformers.VitMatteImageProcessorPil().save_pretrained(models / "vitmatte")

    from layeringdiff.stages.layering import TRAIN_SIZE, fbdd_scheduler

    fbdd = models / "layering" / "fbdd"
    fbdd_scheduler().save_pretrained(fbdd / "scheduler")
    (fbdd / "fbdd.json").write_text(json.dumps({"size": TRAIN_SIZE}))
    base_channels, levels = fs.hfa_size()
    (models / "layering" / "hfa").mkdir(parents=True, exist_ok=True)
    (models / "layering" / "hfa" / "hfa.json").write_text(
        json.dumps({"base_channels": base_channels, "levels": levels, "training": {}}))


def randomise(model: Any, std: float = STD) -> None:
    """N(0, std) for every parameter of two or more dimensions (weight matrices, convolution kernels, embeddings);
    norms' scales and shifts and the biases keep their constructors' values. SAM's hypernetwork output biases are
    set positive: a random SAM's mask logits otherwise share one sign over the whole box about half the time, and
    an empty mask stops the split before ViTMatte."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, std)
        for mlp in getattr(getattr(model, "mask_decoder", None), "output_hypernetworks_mlps", []):
            mlp.proj_out.bias.fill_(SAM_HYPER_BIAS)


def write_weights(models: Path, device: str, seed: int = 0, only: tuple[str, ...] | None = None,
                  log: Callable[[str], None] = print) -> None:
    """Random weights for every part (or the parts whose path starts with one of `only`), built on `device` (a GPU
    makes the 2.6B-parameter UNet in a second, two CPU cores in minutes), saved with save_pretrained."""
    import torch

    from benchmarks import fullsize as fs

    for i, part in enumerate(PARTS):
        if only is not None and not part.path.startswith(only):
            continue
        folder = models / part.path
        torch.manual_seed(seed + i)
        with torch.device(device):
            model = build_from_folder(part, folder)
        model.to(device)  # a parameter made by the legacy torch.Tensor() constructor ignores the default device
        randomise(model)
        model.to(torch.float16 if part.stored == "fp16" else torch.float32).to("cpu").eval()
        model.save_pretrained(folder)
        log(f"wrote {part.path}: {fs.params_of(model) / 1e6:,.0f}M parameters, {part.stored}")
        del model
        free_memory(device == "cuda")
    if only is None or any(p.startswith("layering") for p in only):
        from layeringdiff.stages.layering import HFA
        from safetensors.torch import save_file

        width = fs.SD2_TEXT_ENCODER["hidden_size"]
        # the empty prompt's SD2 text embedding (one per model, computed once in training): layer-normed, unit scale
        save_file({"null_embedding": torch.randn(1, fs.SD2_TEXT_ENCODER["max_position_embeddings"], width)},
                  str(models / "layering" / "fbdd" / "null_embedding.safetensors"))
        HFA.new(*fs.hfa_size()).save(models / "layering" / "hfa")  # untrained HFA, as the product makes one
        log("wrote layering/fbdd/null_embedding.safetensors and layering/hfa")


def check_folders(models: Path) -> list[str]:
    """What would go wrong before any weight is made: ModelManager finds every folder; each part's config, read back
    from its folder, builds (on the meta device: no memory) the published model with the recorded parameter count;
    the pipeline index names the right classes; the tokenizers, processors and schedulers load as the product loads
    them, at their real sizes. Returns the problems (none: an empty list); a check that cannot even run (a folder
    or file missing) is one."""
    import transformers
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from layeringdiff.models import ModelConfig, ModelManager
    from layeringdiff.stages.foreground import TRANSPARENT_QUERY, dino_query
    from layeringdiff.stages.layering import FBDD_IN_CHANNELS, TRAIN_SIZE, HFANet

    from benchmarks import fullsize as fs

    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def manager_finds_them() -> None:
        manager = ModelManager(ModelConfig(device="cpu").with_models_dir(str(models)))
        from layeringdiff.models import ModelMissing

        for key in NEEDED:
            expect(manager.source(key) == str(models / key), f"ModelManager does not find {key} in {models}")
            try:
                manager.resolve(key)
            except ModelMissing as exc:  # its weights are made later, on the GPU: all it may lack
                expect("holds no weights file" in exc.why, f"ModelManager: {exc.text}")

    def part_builds(part: Part) -> None:
        model = fs.meta_model(lambda: build_from_folder(part, models / part.path))
        count, want = fs.params_of(model), fs.MODELS[part.model].counted
        expect(type(model).__name__ == part.cls, f"{part.path}: built a {type(model).__name__}, not a {part.cls}")
        expect(count == want, f"{part.path}: {count:,} parameters, the published {part.model} has {want:,}")
        published = part_config(part)
        if isinstance(published, dict):  # every field read back as written (from_config ignores unknown ones)
            got = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if k in published}
            expect(got == published, f"{part.path}: config.json does not read back as published")
        if part.path.endswith(("unet_fg", "unet_bg")):
            expect(model.conv_in.in_channels == FBDD_IN_CHANNELS, f"{part.path}: conv_in is not 72 channels wide")

    def sdxl_pipeline() -> None:
        index = StableDiffusionXLPipeline.load_config(models / "sdxl")
        for name, cls in (("unet", "UNet2DConditionModel"), ("vae", "AutoencoderKL"),
                          ("text_encoder", "CLIPTextModel"), ("text_encoder_2", "CLIPTextModelWithProjection"),
                          ("tokenizer", "CLIPTokenizer"), ("tokenizer_2", "CLIPTokenizer"),
                          ("scheduler", "EulerDiscreteScheduler")):
            expect(index.get(name, [None, None])[1] == cls, f"sdxl/model_index.json: {name} is {index.get(name)}")
        EulerDiscreteScheduler.from_pretrained(models / "sdxl" / "scheduler")
        for name, encoder in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
            tokenizer = transformers.CLIPTokenizer.from_pretrained(models / "sdxl" / name)
            config = transformers.AutoConfig.from_pretrained(models / "sdxl" / encoder)
            ids = tokenizer(PROMPT, padding="max_length", max_length=tokenizer.model_max_length).input_ids
            expect(len(ids) == config.max_position_embeddings == 77, f"sdxl/{name}: {len(ids)} tokens, not 77")
            expect(max(ids) < config.vocab_size, f"sdxl/{name}: token id {max(ids)} beyond the vocabulary")

    # the processors as ModelManager loads them (AutoProcessor, SamProcessor, AutoImageProcessor)
    def grounding_dino() -> None:
        dino = transformers.AutoProcessor.from_pretrained(models / "grounding-dino", local_files_only=True)
        size = dino.image_processor.size
        expect((size.shortest_edge, size.longest_edge) == (800, 1333), f"grounding-dino: processor size {size}")
        bert = transformers.AutoConfig.from_pretrained(models / "grounding-dino").text_config
        for text in (dino_query(PHRASE), dino_query(PEEL_PHRASE), dino_query(TRANSPARENT_QUERY)):
            ids = dino.tokenizer(text).input_ids
            expect(max(ids) < bert.vocab_size, f"grounding-dino: token id {max(ids)} beyond the vocabulary")
        expect([dino.tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", ".")] == [101, 102, 1012],
               "grounding-dino: [CLS], [SEP] and '.' are not 101, 102, 1012 (its text side hard-codes them)")

    def sam() -> None:
        processor = transformers.SamProcessor.from_pretrained(models / "sam", local_files_only=True).image_processor
        expect(processor.size.longest_edge == 1024 and (processor.pad_size.height, processor.pad_size.width)
               == (1024, 1024), f"sam: processor size {processor.size}, pad {processor.pad_size}")

    def vitmatte() -> None:
        matte = transformers.AutoImageProcessor.from_pretrained(models / "vitmatte", local_files_only=True)
        expect(matte.size_divisor == 32 and matte.do_pad, "vitmatte: processor does not pad to a multiple of 32")

    def layering() -> None:
        fbdd = models / "layering" / "fbdd"
        expect(DDIMScheduler.load_config(fbdd / "scheduler")["prediction_type"] == "v_prediction",
               "layering: the FBDD scheduler does not predict v")
        expect(json.loads((fbdd / "fbdd.json").read_text()) == {"size": TRAIN_SIZE}, "layering: fbdd.json")
        hfa = json.loads((models / "layering" / "hfa" / "hfa.json").read_text())
        hfa.pop("training", None)
        net = fs.meta_model(lambda: HFANet(**hfa))
        expect(fs.params_of(net) == fs.MODELS["fan"].counted, f"layering: HFA of {hfa} is not the trained size")

    checks: list[tuple[str, Callable[[], None]]] = [("ModelManager", manager_finds_them)]
    checks += [(part.path, lambda part=part: part_builds(part)) for part in PARTS]
    checks += [("sdxl", sdxl_pipeline), ("grounding-dino", grounding_dino), ("sam", sam), ("vitmatte", vitmatte),
               ("layering", layering)]
    for what, check in checks:
        try:
            check()
        except Exception as exc:  # noqa: BLE001  # a check that cannot run is a problem like the others
            problems.append(f"{what}: {type(exc).__name__}: {first_line(exc)}")
    return problems


def tiling_note(models: Path, settings: Settings) -> str:
    """ModelConfig.vae_tiling changes nothing below a VAE's tile size (its config's sample_size): say so, since the
    tiled and untiled rows then differ only by noise."""
    def read(path: str) -> Any:
        return json.loads((models / path).read_text())

    sdxl, fbdd = read("sdxl/vae/config.json")["sample_size"], read("layering/fbdd/vae/config.json")["sample_size"]
    working = settings.layering_size or read("layering/fbdd/fbdd.json")["size"]
    note = (f"vae_tiling: the SDXL VAE tiles only images over {sdxl} px a side (this canvas: {settings.size}), the "
            f"FBDD VAE over {fbdd} px (FBDD works at the area of {working} x {working}, longer on a long crop)")
    if settings.size <= sdxl and working <= fbdd:
        note += ": here it changes nothing unless a crop is elongated"
    return note + "."


def build_models(models: Path, reduced: bool, device: str, seed: int, log: Log) -> None:
    """The model folders, once: a folder left by --keep with the same build is used again."""
    stamp = models / "built.json"
    want = {"reduced": reduced, "seed": seed, "std": STD}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        log(f"using the models already in {models}")
        return
    if models.exists():
        shutil.rmtree(models)
    models.mkdir(parents=True)
    if reduced:
        from tests.models.tiny import build_all

        build_all(models, seed=seed, only=NEEDED)
        log(f"built the tiny models in {models}")
    else:
        write_configs(models)
        problems = check_folders(models)
        if problems:
            raise SystemExit("the full-size folders are wrong:\n  " + "\n  ".join(problems))
        log("configs, tokenizers and processors written and checked")
        write_weights(models, device, seed, log=log)
        size = sum(f.stat().st_size for f in models.rglob("*") if f.is_file())
        log(f"built the full-size models in {models}: {size / 1e9:.1f} GB on disk")
    stamp.write_text(json.dumps(want))


# ---- main -------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fp16, fp16 + offload + tiling and bf16 only")
    parser.add_argument("--only", help="configurations by name, comma-separated (e.g. 'fp16,bf16 + offload')")
    parser.add_argument("--reduced", action="store_true", help="tiny models on the CPU at 64 x 64, 2 steps")
    parser.add_argument("--cpu", action="store_true",
                        help="the full-size models on the CPU: slow, to check the full-size path without a GPU "
                             "(give a small --size, --steps, --layering-steps and --layering-size)")
    parser.add_argument("--check-configs", action="store_true",
                        help="write the full-size configs and processors (no weights), check them and stop")
    parser.add_argument("--work", help="folder for the model folders (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the model folders (a later run uses them again)")
    parser.add_argument("--size", type=int, help="canvas side (default 1024; --reduced 64)")
    parser.add_argument("--steps", type=int, help="SDXL steps (default 30; --reduced 2)")
    parser.add_argument("--layering-steps", type=int, help="steps of each FBDD UNet (default 25; --reduced 2)")
    parser.add_argument("--layering-size", type=int, help="FBDD's working size (default its own, 512; --reduced 64)")
    parser.add_argument("--warmup-steps", type=int, help="steps of the untimed warm-up run (default 2; 0: none)")
    parser.add_argument("--limit-gb", type=float, help="cap PyTorch's GPU memory at this many GiB (a smaller card)")
    parser.add_argument("--deadline", type=float,
                        help="seconds after which no further configuration starts (default with --quick: 420)")
    parser.add_argument("--json", help="also write the rows and the recommendation to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.deadline is None and args.quick:
        args.deadline = 420.0  # of a lent machine's 8 minutes: the last configuration, the table and the clean-up
    return args


def chosen_configs(args: argparse.Namespace) -> tuple[Config, ...]:
    configs = QUICK if args.quick else ALL
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
        by_name = {c.name: c for c in ALL}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise SystemExit(f"unknown configuration(s) {unknown}; known: {', '.join(by_name)}")
        configs = tuple(by_name[n] for n in names)
    return configs


def quiet_libraries() -> None:
    """Loading bars and cast notices of every load would bury the figures."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def report(rows: list[Row], settings: Settings, models: Path, context: int, cuda: bool, json_path: str | None,
           finished: bool) -> None:
    """The table, the notes and the recommendation (and the JSON file)."""
    print("\n## Per configuration and stage\n")
    if not finished:
        print("(stopped before the end: the rows measured so far)\n")
    print(markdown(rows, context))
    memory = (f"the driver's figure; 'by allocations only': tensors plus the {gib(context)} CUDA context" if cuda
              else "not measured on the CPU")
    print(f"\nTargets: {JOB} at {settings.size} x {settings.size} in at most {TARGET_JOB_GIB:g} GiB ({memory}), "
          f"every stage in at most {TARGET_STAGE_S:g} s with the models loaded. s/step: one denoising step (SDXL "
          "with classifier-free guidance: two images; FBDD: one UNet). ModelConfig.cpu_offload offloads the SDXL "
          "pipeline only (ModelManager._place): the split models, FBDD and HFA stay on the GPU once loaded. The "
          "transformers models and HFA run in fp32 whatever the dtype (as ModelManager loads them).")
    with contextlib.suppress(OSError, KeyError, ValueError):  # the folders may be half-built when stopped early
        print(tiling_note(models, settings))
    print(f"\n## Recommendation per card (from the rows above; {HEADROOM_GIB:g} GiB left to the desktop)\n")
    lines = recommend(rows, context=context)
    print("\n".join(lines), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({"rows": [asdict(r) for r in with_job_rows(rows)],
                                               "recommendation": lines, "context_bytes": context,
                                               "finished": finished}, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a timeout's SIGTERM as an exception: the table so far is printed and the model folders are deleted
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    log = Log()
    created = args.work is None
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-gpu-fullsize-"))
    models = work / ("models-reduced" if args.reduced else "models-fullsize")
    try:
        if args.check_configs:
            if models.exists():
                shutil.rmtree(models)
            write_configs(models)
            problems = check_folders(models)
            for problem in problems:
                print(f"PROBLEM: {problem}")
            log(f"full-size configs and processors in {models}: "
                + ("all checked" if not problems else f"{len(problems)} problem(s)"))
            return 1 if problems else 0
        import torch

        cuda = torch.cuda.is_available() and not args.reduced and not args.cpu
        if not (args.reduced or args.cpu or cuda):
            print("no CUDA device: this benchmark is for a GPU; --reduced runs it on tiny models on the CPU, "
                  "--check-configs checks the full-size folders without weights, --cpu runs them (slowly)")
            return 2
        quiet_libraries()
        reduced = args.reduced
        settings = Settings("cuda" if cuda else "cpu", args.size or (64 if reduced else 1024),
                            args.steps or (2 if reduced else 30), args.layering_steps or (2 if reduced else 25),
                            args.layering_size or (64 if reduced else None),
                            2 if args.warmup_steps is None else args.warmup_steps, args.seed)
        configs = chosen_configs(args)
        import diffusers
        import transformers

        what = "tiny models on the CPU (--reduced)" if reduced else "full-size models" + (" on the CPU" * args.cpu)
        print(f"# bench_gpu_fullsize: {what}, random weights\n")
        print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, "
              f"transformers {transformers.__version__}")
        context = 0
        if cuda:
            torch.cuda.init()
            total = torch.cuda.get_device_properties(0).total_memory
            context = device_used()  # the CUDA context (and anything else on the device) before any model
            print(f"device: {torch.cuda.get_device_name()}, {gib(total)}; {gib(context)} used after CUDA init; "
                  f"PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')!r}")
            if args.limit_gb:
                torch.cuda.set_per_process_memory_fraction(min(1.0, args.limit_gb * GIB / total))
                print(f"PyTorch's memory capped at {args.limit_gb:g} GiB (--limit-gb): as on a smaller card")
        else:
            print("device: CPU (memory columns n/a); the figures check the script, not the product's speed")
        print(f"canvas {settings.size} x {settings.size}, SDXL {settings.steps} steps, FBDD 2 x "
              f"{settings.layering_steps} steps at {settings.layering_size or 'its own working size'}, warm-up "
              f"{settings.warmup_steps} steps; configurations: {', '.join(c.name for c in configs)}\n", flush=True)

        build_models(models, reduced, settings.device, args.seed, log)
        rows: list[Row] = []
        longest, finished = 0.0, False
        try:
            for config in configs:
                if args.deadline and log.elapsed() + longest > args.deadline:
                    log(f"{config.name}: skipped, it would end after the {args.deadline:g} s deadline")
                    rows += [Row(config.name, key, "skipped: deadline") for key in ("load", *TIMED)]
                    continue
                started = log.elapsed()
                run_config(config, models, settings, log, rows)
                longest = max(longest, log.elapsed() - started)
            finished = True
        finally:  # stopped (SIGTERM at a machine's limit, Ctrl-C): still the table of what was measured
            report(rows, settings, models, context, cuda, args.json, finished)
        log("done")
        return 0
    finally:
        if args.keep:
            print(f"models kept in {models}", flush=True)
        elif created:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(models, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
