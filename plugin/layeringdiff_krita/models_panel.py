"""The docker's Models list: every model of the backend's registry with what it enables, its size, licence and
state; download (bytes, MB/s, ETA; resumable), cancel and delete. Krita-free: the work runs in child processes of
the backend's own Python (`layeringdiff models list --json | fetch --events | delete`, into the same models folder
the backend is started with), and the view gets rows and progress text.
"""

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

from .ports import View
from .setup_run import ChildRun, Download, fmt_bytes, fmt_elapsed

VIEW_UPDATE_S = 0.25
GENERATE_MODELS = ("sdxl", "grounding-dino", "sam", "vitmatte")  # what Generate layered loads (stages 1 and 2)
DESKTOP_GIB = 0.5  # of a GPU's memory the desktop and other programs keep (benchmarks/bench_gpu_fullsize.py's headroom)
NO_LOCAL_BACKEND = ("Set up the backend first: the models are fetched with its Python. (A studio server's models "
                    "are fetched on that server: `layeringdiff models fetch --models-dir FOLDER`.)")


class FetchRun(ChildRun):
    """`layeringdiff models fetch KEY --events`: the model's bytes so far, over all its files."""

    def __init__(self, command: List[str], key: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(command, clock)
        self.key = key
        self.progress = Download(key)
        self.error = ""
        self.done = False

    def on_event(self, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "model":
            self.progress.total = int(event.get("total", 0))
        elif kind == "download":
            self.progress.done = int(event.get("model_done", 0))
            self.progress.total = int(event.get("model_total", self.progress.total))
            self.progress.add(self.clock(), self.progress.done)
        elif kind == "file" and event.get("shared"):
            self.add_log(f"{event.get('path')}: already stored for another model, linked")
        elif kind == "retry":
            self.add_log(f"{event.get('path')}: {event.get('why')}; resuming at {event.get('at')} bytes")
        elif kind == "error":
            self.error = f"{event.get('why', '')} {event.get('detail', '')}".strip()
        elif kind == "done":
            self.done = True

    def text(self) -> str:
        """'downloading 42% (1.20 GB of 2.87 GB, 35.0 MB/s, about 48 s left)'."""
        p = self.progress
        if not p.total:
            return f"starting ({fmt_elapsed(self.clock() - self.started)})"
        speed = p.speed()
        left = f", about {fmt_elapsed((p.total - p.done) / speed)} left" if speed > 0 else ""
        rate = f", {speed / 1e6:.1f} MB/s" if speed > 0 else ""
        return f"downloading {100 * p.done / p.total:.0f}% ({fmt_bytes(p.done)} of {fmt_bytes(p.total)}{rate}{left})"


class ModelsPanel:
    def __init__(self, view: View, cli: Callable[[], List[str]], models_dir: Callable[[], str],
                 on_fetched: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 offload: Callable[[], bool] = lambda: False) -> None:
        self.view = view
        self.offload = offload  # whether the docker starts its backend with CPU offload (Settings)
        self.cli = cli  # the backend's command line ([] while there is none)
        self.models_dir = models_dir  # the folder the backend is started with
        self.on_fetched = on_fetched  # a model arrived: the backend restarts to see it
        self.clock = clock
        self.rows: List[Dict[str, Any]] = []
        self.lister: Optional[ChildRun] = None
        self.fetching: Optional[FetchRun] = None
        self.deleting: Optional[ChildRun] = None
        self.wanted = False  # the list was asked for once: it is refreshed when the backend changes
        self.gpu: Optional[Dict[str, Any]] = None  # the backend's GPU as the list reported it (None: not known yet)
        self._shown = 0.0

    def _command(self, *args: str) -> List[str]:
        folder = self.models_dir()
        os.makedirs(folder, exist_ok=True)
        return [*self.cli(), "models", *args, "--models-dir", folder]

    def _ready(self) -> bool:
        if not self.cli() or not self.models_dir():
            self.view.set_models([], NO_LOCAL_BACKEND)
            return False
        return True

    def refresh(self) -> None:
        self.wanted = True
        if not self._ready() or (self.lister is not None and not self.lister.finished):
            return
        self.lister = ChildRun(self._command("list", "--json"), self.clock)
        self.lister.start()

    def fetch(self, key: str) -> str:
        """Start downloading one model; '' or why not."""
        if not self._ready():
            return "Set up the backend first."
        if self.fetching is not None:
            return f"'{self.fetching.key}' is downloading: wait for it or cancel it first."
        row = next((r for r in self.rows if r["model"] == key), None)
        if row is not None and not row.get("fetchable", True):
            return f"There are no public '{key}' weights to download: {row.get('enables', '')} needs your own."
        self.fetching = FetchRun(self._command("fetch", key, "--events"), key, self.clock)
        self.fetching.start()
        self.view.set_model_progress(key, "starting")
        return ""

    def cancel(self) -> bool:
        if self.fetching is None:
            return False
        self.fetching.cancel()
        return True

    def delete(self, key: str) -> str:
        if not self._ready():
            return "Set up the backend first."
        if self.fetching is not None and self.fetching.key == key:
            return f"'{key}' is downloading: cancel it first."
        self.deleting = ChildRun(self._command("delete", key), self.clock)
        self.deleting.start()
        return ""

    def gpu_need(self, keys: List[str], offload: bool = False) -> float:
        """GiB of GPU memory the weights of these models take as the backend loads them (the registry's figures);
        with CPU offload, a diffusers pipeline's largest part at a time (its row's offload_gib) instead of all."""
        rows = [r for r in self.rows if r["model"] in keys]
        if not offload:
            return sum(float(r.get("gpu_gib") or 0) for r in rows)
        kept = sum(float(r.get("gpu_gib") or 0) for r in rows if not r.get("offload_gib"))
        return kept + max((float(r.get("offload_gib") or 0) for r in rows), default=0.0)

    def proposal(self, keys: List[str]) -> str:
        """What to set for Generate layered on the backend's GPU, from its weights against the GPU's memory less
        the desktop's share; '' while the GPU is not known or there is none."""
        total = float((self.gpu or {}).get("total_gib") or 0)
        loaded, offloaded = self.gpu_need(keys), self.gpu_need(keys, offload=True)
        if not total or not loaded:
            return ""
        usable = total - DESKTOP_GIB
        on = " (it is on)" if self.offload() else ""
        if loaded <= usable:
            change = " (it is on: turn it off in Settings for speed)" if on else ""
            return f"This GPU holds every model at once: leave CPU offload off{change}."
        if offloaded <= usable:
            return (f"This GPU cannot hold every model at once ({loaded:.1f} GB): use CPU offload in Settings{on}, "
                    f"which keeps about {offloaded:.1f} GB on it at a time (slower: the models move for each job).")
        return (f"Even with CPU offload Generate layered keeps about {offloaded:.1f} GB on the GPU, more than this "
                f"one's {usable:.1f} GB: use a backend with a larger GPU (a studio server), or the CPU.")

    def memory_note(self) -> str:
        """What Generate layered needs of the GPU, next to what the backend's GPU has, and what to set for it."""
        need = self.gpu_need(list(GENERATE_MODELS))
        if not need:
            return ""
        gpu = self.gpu or {}
        text = (f"Generate layered needs about {need:.1f} GB of GPU memory for its models' weights (more while it "
                "runs; a guide's ControlNet adds 2.3 GB)")
        if gpu.get("total_gib"):
            return (text + f"; the backend's GPU: {gpu['device']}, {float(gpu['total_gib']):.1f} GB. "
                    + self.proposal(list(GENERATE_MODELS)))
        return text + f"; the backend has no GPU to use ({gpu.get('why') or 'none found'}): it runs on the CPU."

    def fit_warning(self, keys: List[str]) -> str:
        """A sentence when the backend's GPU is known and these models' weights alone exceed its memory (with CPU
        offload when the settings ask for it), else ''."""
        total = float((self.gpu or {}).get("total_gib") or 0)
        offload = self.offload()
        need = self.gpu_need(keys, offload)
        if not total or need <= total:
            return ""
        text = (f"Warning: this job's models need about {need:.1f} GB of GPU memory for their weights alone"
                f"{' with CPU offload' if offload else ''}, more than the {total:.1f} GB of the backend's "
                f"{self.gpu['device']}: it may run out of memory.")
        if not offload and self.gpu_need(keys, offload=True) <= total:
            text += " Turn on CPU offload in Settings: it keeps one model part on the GPU at a time."
        return text

    @property
    def busy(self) -> bool:
        return self.fetching is not None

    def tick(self) -> None:
        lister = self.lister
        if lister is not None and lister.finished:
            self.lister = None
            rows = []
            for line in lister.log:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "model" in row:
                    rows.append(row)
                elif isinstance(row, dict) and "device" in row:
                    self.gpu = row
            self.rows = rows
            note = self.memory_note() if rows else f"Could not list the models: {(lister.log or ['(no output)'])[-1]}"
            self.view.set_models(rows, note)
        if self.deleting is not None and self.deleting.finished:
            self.deleting = None
            self.refresh()
        run = self.fetching
        if run is None:
            return
        if run.finished:
            self.fetching = None
            if run.cancelled:
                self.view.set_model_progress(run.key, "")
                self.view.show_message(f"The download of '{run.key}' was cancelled; Download resumes it.")
            elif run.exit_code == 0 and run.done:
                self.view.set_model_progress(run.key, "")
                self.view.show_message(f"'{run.key}' is downloaded ({fmt_bytes(run.progress.total)}).")
                self.on_fetched(run.key)
            else:
                self.view.set_model_progress(run.key, "")
                why = run.error or (run.log[-1] if run.log else f"exit code {run.exit_code}")
                self.view.show_message(f"The download of '{run.key}' failed: {why}", error=True)
            self.refresh()
            return
        if self.clock() - self._shown >= VIEW_UPDATE_S:
            self._shown = self.clock()
            self.view.set_model_progress(run.key, run.text())
