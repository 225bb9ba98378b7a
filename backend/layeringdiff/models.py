"""Model registry and loading: every model by its real Hugging Face id, each overridable by a local folder.

Nothing is ever downloaded implicitly: loading looks in the given folder or in the local Hugging Face
cache (`local_files_only`), and a missing model fails at once with a message that names the model, the
command that fetches it and how to use a folder instead. `layeringdiff models fetch` downloads.
Heavy libraries (torch, diffusers, transformers) are imported on first use, not on import.
"""

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import NotAvailable

CONFIG_ENV = "LAYERINGDIFF_MODELS_CONFIG"
TRAIN_HINT = ("no public FBDD/HFA weights exist: train them with `layeringdiff train fbdd` and `layeringdiff train "
              "hfa` (docs/models.md: Training and evaluation)")
DEFAULT_CONFIG = Path.home() / ".config" / "layeringdiff" / "models.json"
ML_PACKAGES = ("torch", "diffusers", "transformers", "huggingface_hub")
ML_INSTALL = "install torch (the build for your GPU) and then pip install 'layeringdiff[ml]'"


@dataclass(frozen=True)
class ModelSpec:
    key: str
    hub_id: str
    role: str
    size_gb: float
    alternatives: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # fetch only these files of the repo (patterns); empty: all
    packages: tuple[str, ...] = ML_PACKAGES  # what running it needs installed ...
    install: str = ML_INSTALL  # ... and how to install that
    on_cpu: bool = False  # always runs on the CPU (its working memory is the server's, whatever GPU there is)
    enables: str = ""  # what an artist gets with it (the docker's Models list)
    licence: str = ""  # the weights' licence, as their model card names it
    # GiB of GPU memory its weights take as ModelManager loads them on CUDA (diffusers pipelines and FBDD in fp16,
    # transformers models and HFA in fp32): benchmarks/fullsize.py's figures, which tests/unit/test_fullsize.py checks
    # this against; activations come on top. 0: runs on the CPU.
    gpu_gib: float = 0.0
    # with cpu_offload (ModelManager._place: diffusers' model offload, one part of the pipeline on the GPU at a time):
    # the largest part's GiB, which is what the pipeline holds at once. 0: not offloaded (always gpu_gib)
    offload_gib: float = 0.0


REGISTRY: dict[str, ModelSpec] = {s.key: s for s in (
    ModelSpec("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "stage 1: composite generation", 6.9,
              enables="Generate layered", licence="CreativeML Open RAIL++-M", gpu_gib=6.46, offload_gib=4.78),
    ModelSpec("controlnet-canny", "diffusers/controlnet-canny-sdxl-1.0", "stage 1: optional canny ControlNet", 2.5,
              enables="Generate: Guide by sketch lines", licence="CreativeML Open RAIL++-M",
              gpu_gib=2.33, offload_gib=2.33),
    ModelSpec("controlnet-depth", "diffusers/controlnet-depth-sdxl-1.0", "stage 1: optional depth ControlNet", 2.5,
              enables="Generate: Guide by depth map", licence="CreativeML Open RAIL++-M",
              gpu_gib=2.33, offload_gib=2.33),
    ModelSpec("grounding-dino", "IDEA-Research/grounding-dino-tiny", "stage 2: phrase -> box", 0.7,
              ("IDEA-Research/grounding-dino-base",), enables="Split by phrase, Generate layered",
              licence="Apache-2.0", gpu_gib=0.64),
    ModelSpec("sam", "facebook/sam-vit-base", "stage 2: box -> mask", 0.4, ("facebook/sam-vit-huge",),
              enables="Split by phrase, Generate layered", licence="Apache-2.0", gpu_gib=0.35),
    ModelSpec("vitmatte", "hustvl/vitmatte-small-composition-1k", "stage 2: trimap -> alpha", 0.1,
              ("hustvl/vitmatte-base-composition-1k",),
              enables="Split by phrase, Generate layered, Matting: ViTMatte (hair and fur of a selection)",
              licence="Apache-2.0", gpu_gib=0.10),
    ModelSpec("sd2-inpaint", "stabilityai/stable-diffusion-2-inpainting", "stage 3: FBDD init / fallback", 5.2,
              enables="Layering with a GPU (zero-shot), training FBDD", licence="CreativeML Open RAIL++-M",
              gpu_gib=2.40, offload_gib=1.61),
    ModelSpec("depth-anything", "depth-anything/Depth-Anything-V2-Small-hf",
              "split into all layers: which object is in front (monocular depth)", 0.1,
              enables="Split into all layers (with SAM)", licence="Apache-2.0", gpu_gib=0.09),
    # no public FBDD/HFA weights exist: a folder made by this project's training (fbdd/ + hfa/)
    ModelSpec("layering", "", "stage 3: FBDD + HFA weights", 7.0, enables="FBDD + HFA layering (the paper's)",
              licence="your own training", gpu_gib=3.39),
    # LaMa as ONNX for the CPU: its input/output contract is imaging/lama.py's LamaContract (lama.json in the folder)
    ModelSpec("lama", "Carve/LaMa-ONNX", "offline split: learned fill of the hidden background (--fill lama)", 0.21,
              files=("lama_fp32.onnx", "*.json", "README.md"), packages=("onnxruntime",),
              install="pip install 'layeringdiff[lama]'", on_cpu=True, enables="Hidden part: LaMa fill",
              licence="Apache-2.0"),
)}


class ModelMissing(NotAvailable):
    why = ""  # the reason alone (ModelManager.missing): what the Models list shows


# what a model's weights are stored in, by the libraries and exports this project loads
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".pth", ".ckpt")
WEIGHTS_DEPTH = 3  # a diffusers pipeline keeps them a folder down (unet/, vae/); a trained FBDD's the same


def holds_weights(folder: Path, depth: int = WEIGHTS_DEPTH) -> bool:
    """Whether a local model folder holds a weights file within `depth` levels (an empty folder, or one holding
    only notes, was listed as ready, and the split then failed on it)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    if any(e.name.endswith(WEIGHT_SUFFIXES) and e.is_file() for e in entries):
        return True
    return depth > 1 and any(holds_weights(Path(e.path), depth - 1) for e in entries if e.is_dir())


# each key of a models.json: its JSON type, and how a message names it
CONFIG_TYPES: dict[str, tuple[Any, str]] = {
    "paths": (dict, 'an object of model names and folders ({"sam": "/models/sam"})'), "device": (str, "text"),
    "dtype": (str, "text"), "offline": (bool, "true or false"), "cpu_offload": (bool, "true or false"),
    "vae_tiling": (bool, "true or false"), "cache_dir": ((str, type(None)), "a folder's path, or null")}


@dataclass
class ModelConfig:
    paths: dict[str, str] = field(default_factory=dict)  # key -> local folder or another hub id
    device: str = "auto"  # auto | cuda | mps | cpu
    dtype: str = "auto"  # auto | fp16 | bf16 | fp32
    offline: bool = False  # also forbid `models fetch`; sets HF_HUB_OFFLINE for the libraries
    cpu_offload: bool = False  # diffusers model CPU offload for small GPUs
    vae_tiling: bool = False
    cache_dir: str | None = None
    source: str = ""  # the file this came from, for messages

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ModelConfig":
        path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
        if not path.is_file():
            return cls(source=str(path))
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise NotAvailable(f"cannot read the model config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise NotAvailable(f"the model config {path} must hold a JSON object ({{\"paths\": {{...}}}}), not "
                               f"{type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "source"}
        unknown = set(data) - set(known)
        if unknown:
            raise NotAvailable(f"unknown key(s) {sorted(unknown)} in the model config {path}")
        for key, value in known.items():  # the wrong type was an internal error in whatever read it next
            kind, words = CONFIG_TYPES[key]
            if not isinstance(value, kind) or (key == "paths" and not all(isinstance(v, str) for v in value.values())):
                raise NotAvailable(f"'{key}' in the model config {path} must be {words}, got {json.dumps(value)}")
        bad = set(known.get("paths", {})) - set(REGISTRY)
        if bad:
            raise NotAvailable(f"unknown model name(s) {sorted(bad)} in {path}; known: {', '.join(REGISTRY)}")
        return cls(**known, source=str(path))

    def with_models_dir(self, folder: str | None) -> "ModelConfig":
        """A folder with one sub-folder per model name (sdxl/, sam/, ...): each present one is used."""
        if not folder:
            return self
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise NotAvailable(f"models folder {root} does not exist")
        from .hub_fetch import Store

        store = Store(root)  # a model whose fetch stopped part-way, or lost a file, is not used
        found = {key: str(root / key) for key in REGISTRY if store.state(key) in ("ready", "present")}
        return ModelConfig(**{**asdict(self), "paths": {**self.paths, **found}})

    def with_overrides(self, overrides: list[str]) -> "ModelConfig":
        """`key=folder` strings from the command line."""
        paths = dict(self.paths)
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or key not in REGISTRY:
                raise NotAvailable(f"--model takes NAME=FOLDER with NAME one of {', '.join(REGISTRY)}; got {item!r}")
            paths[key] = value
        return ModelConfig(**{**asdict(self), "paths": paths})


def hf_cache() -> str:
    """The Hugging Face cache folder (huggingface_hub's own default when it is installed)."""
    try:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    except ImportError:
        home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
        return os.path.join(home, "hub")


def is_local(source: str) -> bool:
    """Folders, not hub ids ("org/name"): absolute, relative, home or drive paths, or an existing folder."""
    return (source.startswith((".", "/", "~", "\\")) or source[1:3] == ":\\" or source[1:3] == ":/"
            or Path(source).expanduser().is_dir())


class ModelManager:
    """Resolves, loads (lazily, once) and caches models for the pipeline."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or ModelConfig()
        self._cache: dict[tuple, Any] = {}
        self._lock = threading.RLock()  # loaders nest (the ControlNet pipeline reuses the base)
        self.on_load: Callable[[str], None] | None = None  # told the model's name before it is loaded
        if self.config.offline:
            # must be set before huggingface_hub is imported to take effect there
            os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # torchvision fallback notices are noise here

    # ---- where a model comes from ---------------------------------------------------------------
    def source(self, key: str) -> str:
        return self.config.paths.get(key, REGISTRY[key].hub_id)

    def missing(self, key: str, why: str) -> ModelMissing:
        spec, src = REGISTRY[key], self.source(key)
        exc = ModelMissing(f"model '{key}' ({src + ', ' if src else ''}{spec.role}) is not available: {why}",
                           self.how_to_get(key))
        exc.why = why
        return exc

    def how_to_get(self, key: str) -> str:
        """Fetch it, or name a folder holding it (the layering weights: train them)."""
        spec = REGISTRY[key]
        config = self.config.source or str(DEFAULT_CONFIG)
        where = f"`--model {key}=/path/to/folder` or \"paths\": {{\"{key}\": \"/path/to/folder\"}} in {config}"
        if not spec.hub_id and not self.source(key):
            return f"{TRAIN_HINT}, then name the folder holding fbdd/ and hfa/: {where}"
        return (f"fetch it with `layeringdiff models fetch {key}` (about {spec.size_gb:g} GB), or put a "
                f"downloaded copy in a folder and name it: {where}")

    def resolve(self, key: str) -> str:
        """A local folder holding the model, or ModelMissing at once (no network, no retries)."""
        src = self.source(key)
        if not src:
            raise self.missing(key, "no public weights exist; train them with this project's training code")
        if is_local(src):
            folder = Path(src).expanduser()
            if not folder.is_dir():
                raise self.missing(key, f"folder {folder} does not exist")
            if not holds_weights(folder):
                raise self.missing(key, f"folder {folder} holds no weights file ({', '.join(WEIGHT_SUFFIXES)})")
            return str(folder)
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError
        except ImportError:
            spec = REGISTRY[key]  # the model's own extra (LaMa's is not the diffusion stack's), then the fetch
            missing = ModelMissing(f"model '{key}' ({spec.role}) is not available: huggingface_hub is not installed",
                                   f"{spec.install}; then {self.how_to_get(key)}")
            missing.why = "huggingface_hub is not installed"
            raise missing from None
        try:
            return snapshot_download(src, local_files_only=True, cache_dir=self.config.cache_dir)
        except (LocalEntryNotFoundError, OSError, ValueError) as exc:
            raise self.missing(key, f"not in the local Hugging Face cache ({type(exc).__name__})") from None

    def require(self, keys: list[str]) -> None:
        """Check a job's models up front, naming every missing one, before any of them is loaded."""
        import importlib.util

        for key in keys:  # each model's own packages (torch for the diffusion stack, onnxruntime for LaMa)
            spec = REGISTRY[key]
            absent = [m for m in spec.packages if importlib.util.find_spec(m) is None]
            if absent:
                what = "the model stack needs the ml extra" if spec.packages == ML_PACKAGES else f"model '{key}' needs"
                raise NotAvailable(f"{what} ({', '.join(absent)} not installed)", spec.install)
        missing: dict[str, ModelMissing] = {}
        for key in keys:
            try:
                self.resolve(key)
            except ModelMissing as exc:
                missing[key] = exc
        if len(missing) == 1:
            raise next(iter(missing.values()))
        if missing:
            names = list(missing)
            fetchable = [k for k in names if REGISTRY[k].hub_id or self.source(k)]
            trained = f"; the layering weights: {TRAIN_HINT}" if len(fetchable) < len(names) else ""
            raise ModelMissing(
                f"models {', '.join(names)} are not available",
                f"fetch them with `layeringdiff models fetch {' '.join(fetchable)}`, or name local folders with "
                f"--model NAME=/path/to/folder (or \"paths\" in {self.config.source or DEFAULT_CONFIG}){trained}")

    def available(self, key: str) -> bool:
        try:
            self.resolve(key)
            return True
        except ModelMissing:
            return False

    def status(self) -> list[dict[str, str]]:
        rows = []
        for key, spec in REGISTRY.items():
            try:
                where, state = self.resolve(key), "ready"
            except ModelMissing as exc:  # why, not where (the role before it may hold ": " too)
                where, state = exc.why or exc.text, "missing"
            rows.append({"model": key, "source": self.source(key), "role": spec.role, "state": state, "path": where})
        return rows

    def fetch(self, key: str, progress: Callable[[str], None] = print, into: str | None = None,
              report: Callable[[dict], None] | None = None, cancelled: Callable[[], bool] = lambda: False) -> str:
        """Download one model into the Hugging Face cache, or into `into`/KEY (the --models-dir layout, fetched by
        hub_fetch: resumable, hash-checked, shared files once; report gets its events).
        Returns its folder; NotAvailable names the model, the cause and what to do."""
        if self.config.offline:
            raise NotAvailable("offline is set (--offline, or \"offline\" in the model config): fetching is disabled",
                               "leave out --offline, or set \"offline\": false")
        spec, src = REGISTRY[key], self.source(key)
        target = Path(into).expanduser() / key if into else None
        if target is not None and src and is_local(src) and Path(src).expanduser().resolve() == target.resolve():
            src = spec.hub_id  # the folder this fetch fills: resume or update it from the hub
        if not src:
            raise NotAvailable(f"there are no public '{key}' weights to fetch", TRAIN_HINT)
        if is_local(src):
            return self.resolve(key)
        disk = target.parent if target else Path(self.config.cache_dir or hf_cache())
        disk.mkdir(parents=True, exist_ok=True)
        free_gb = shutil.disk_usage(disk).free / 1e9
        if free_gb < spec.size_gb * 1.1:  # before anything is asked of the hub; the store checks exact sizes too
            raise NotAvailable(f"not enough disk space for '{key}' in {disk}: about {spec.size_gb:g} GB needed, "
                               f"{free_gb:.1f} GB free", "free some space or fetch into another folder (--models-dir)")
        if target is not None:  # a models folder: resumable, checked, each file stored once (standard library)
            from .hub_fetch import FetchError, Store

            progress(f"fetching {key} ({src}, about {spec.size_gb:g} GB) into {target}...")
            try:
                return str(Store(target.parent).fetch(key, src, spec.files, report or (lambda e: None), cancelled))
            except FetchError as exc:
                raise NotAvailable(f"could not fetch '{key}' from {src}: {exc}",
                                   "fetch it again to resume (HTTPS_PROXY for a proxy, HF_ENDPOINT for a mirror, "
                                   "HF_TOKEN for a gated model), or download it elsewhere and name the folder: "
                                   f"--model {key}=/path/to/folder") from None
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise NotAvailable("fetching needs the ml extra", "pip install 'layeringdiff[ml]'") from None
        progress(f"fetching {key} ({src}, about {spec.size_gb:g} GB) into {target or 'the Hugging Face cache'}...")
        try:  # tqdm progress bars on stderr
            return snapshot_download(src, cache_dir=self.config.cache_dir, local_dir=str(target) if target else None,
                                     allow_patterns=list(spec.files) or None)
        except Exception as exc:  # network, authorisation, disk: all end the same way for the user
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NotAvailable(
                f"could not fetch '{key}' from {src}: {cause}",
                "check the network (HTTPS_PROXY for a proxy, HF_ENDPOINT for a mirror), `hf auth login` for a gated "
                f"model, or download it elsewhere and name the folder: --model {key}=/path/to/folder") from None

    # ---- device and dtype -------------------------------------------------------------------------
    def device(self) -> str:
        import torch

        if self.config.device != "auto":
            return self.config.device
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def accelerated(self) -> bool:
        """A GPU (CUDA or MPS) to run the diffusion layering on; False without torch."""
        try:
            return self.device() != "cpu"
        except ImportError:
            return False

    def dtype(self) -> Any:
        import torch

        names = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
        if self.config.dtype != "auto":
            return names[self.config.dtype]
        return torch.float16 if self.device() == "cuda" else torch.float32

    # ---- loaders ----------------------------------------------------------------------------------
    def loaded(self) -> set[str]:
        """Names of the models in memory (the server's memory estimate counts only the others' weights)."""
        names = set()
        for key in list(self._cache):
            names.add("sdxl" if key[0] == "sdxl-base" else key[0])
            if key[0] == "sdxl" and key[1]:
                names.add(f"controlnet-{key[1]}")
        return names

    def _cached(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                if self.on_load is not None:  # first use: seconds to minutes of reading weights
                    self.on_load("-".join(k for k in key if k))
                self._cache[key] = build()
            return self._cache[key]

    def _sdxl_base(self) -> Any:
        def build() -> Any:
            folder = self.resolve("sdxl")  # fail fast, before importing diffusers
            from diffusers import StableDiffusionXLPipeline

            return StableDiffusionXLPipeline.from_pretrained(folder, dtype=self.dtype(), local_files_only=True)

        return self._cached(("sdxl-base",), build)

    def sdxl(self, control: str | None = None) -> Any:
        """The SDXL pipeline, with a ControlNet ("canny" or "depth") sharing the base components."""

        def build() -> Any:
            base = self._sdxl_base()
            if control is None:
                return self._place(base)
            folder = self.resolve(f"controlnet-{control}")
            from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

            net = ControlNetModel.from_pretrained(folder, dtype=self.dtype(), local_files_only=True)
            return self._place(StableDiffusionXLControlNetPipeline(**base.components, controlnet=net))

        return self._cached(("sdxl", control), build)

    def _place(self, pipe: Any) -> Any:
        if self.config.vae_tiling:
            pipe.vae.enable_tiling()
        if self.config.cpu_offload and self.device() == "cuda":
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(self.device())
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _transformers(self, key: str, model_cls: str, processor_cls: str) -> tuple[Any, Any]:
        def build() -> tuple[Any, Any]:
            folder = self.resolve(key)
            import transformers

            model = getattr(transformers, model_cls).from_pretrained(folder, local_files_only=True)
            processor = getattr(transformers, processor_cls).from_pretrained(folder, local_files_only=True)
            return model.to(self.device()).eval(), processor

        return self._cached((key,), build)

    def layering(self) -> tuple[Any, Any]:
        """(FBDD, HFA) from a folder holding fbdd/ and hfa/."""

        def build() -> tuple[Any, Any]:
            folder = Path(self.resolve("layering"))
            from .stages.layering import FBDD, HFA

            fbdd = FBDD.from_folder(folder / "fbdd", self.device(), self.dtype())
            if self.config.vae_tiling:  # large working sizes on a small GPU
                fbdd.vae.enable_tiling()
            return fbdd, HFA.from_folder(folder / "hfa", self.device())

        return self._cached(("layering",), build)

    def sd2_inpaint(self) -> Any:
        def build() -> Any:
            folder = self.resolve("sd2-inpaint")
            from diffusers import StableDiffusionInpaintPipeline

            pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, dtype=self.dtype(), local_files_only=True)
            return self._place(pipe)

        return self._cached(("sd2-inpaint",), build)

    def grounding_dino(self) -> tuple[Any, Any]:
        return self._transformers("grounding-dino", "AutoModelForZeroShotObjectDetection", "AutoProcessor")

    def sam(self) -> tuple[Any, Any]:
        return self._transformers("sam", "SamModel", "SamProcessor")

    def vitmatte(self) -> tuple[Any, Any]:
        return self._transformers("vitmatte", "VitMatteForImageMatting", "AutoImageProcessor")

    def depth_anything(self) -> tuple[Any, Any]:
        return self._transformers("depth-anything", "DepthAnythingForDepthEstimation", "AutoImageProcessor")

    def lama(self) -> Any:
        """The LaMa ONNX session (onnxruntime, CPU); ModelMissing at once when its folder is not there."""

        def build() -> Any:
            folder = self.resolve("lama")
            from .imaging.lama import LamaModel

            return LamaModel(folder)

        return self._cached(("lama",), build)
