"""Docker settings, stored by Krita as one JSON string (Krita.writeSetting), plus environment overrides."""

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List

ENV_ENDPOINT = "LAYERINGDIFF_BACKEND"  # connect to this running backend instead of starting one
ENV_PYTHON = "LAYERINGDIFF_BACKEND_PYTHON"  # Python that has the layeringdiff backend installed
ENV_SERVER_KEY = "LAYERINGDIFF_SERVER_KEY"  # remote backend served with --keys: its public key (or server.key)
ENV_CLIENT_KEY = "LAYERINGDIFF_CLIENT_KEY"  # ... and this machine's .key_secret file


@dataclass
class Settings:
    autostart: bool = True  # start `layeringdiff serve` as a child process
    endpoint: str = "tcp://127.0.0.1:5557"  # used when autostart is off
    server_key: str = ""  # a backend served with --keys: its public key (Z85 text or server.key path)
    client_key: str = ""  # ... and this machine's .key_secret file
    python: str = ""  # Python with the backend; empty: the docker's own (set up from the zip), else PATH's
    models_dir: str = ""  # a folder with one sub-folder per model (`layeringdiff models fetch --models-dir`)
    model_dirs: Dict[str, str] = field(default_factory=dict)  # model name -> its own local folder
    index_url: str = ""  # the package index the docker's setup installs from (empty: pip's own setting)
    max_pixels: int = 64 * 1024 * 1024
    cpu_offload: bool = False  # the docker's own backend keeps one model part on the GPU at a time (small GPUs)

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        known = {f.name for f in fields(cls)}
        if isinstance(data, dict) and isinstance(data.get("model_dirs"), dict) and "all" in data["model_dirs"]:
            # settings of 0.1: the models folder was model_dirs["all"]
            dirs = dict(data["model_dirs"])
            data = {**data, "model_dirs": dirs, "models_dir": data.get("models_dir") or dirs.pop("all")}
        settings = cls(**{k: v for k, v in data.items() if k in known}) if isinstance(data, dict) else cls()
        if os.environ.get(ENV_ENDPOINT):
            settings.autostart = False
            settings.endpoint = os.environ[ENV_ENDPOINT]
        if os.environ.get(ENV_PYTHON):
            settings.python = os.environ[ENV_PYTHON]
        if os.environ.get(ENV_SERVER_KEY):
            settings.server_key = os.environ[ENV_SERVER_KEY]
        if os.environ.get(ENV_CLIENT_KEY):
            settings.client_key = os.environ[ENV_CLIENT_KEY]
        return settings

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def cli(self, own_python: str = "") -> List[str]:
        """The backend's command line: the Python set here (or a `layeringdiff` command), else the docker's own
        environment's (own_python), else `layeringdiff` on PATH."""
        python = self.python or own_python
        if python:
            if os.path.basename(python).lower().startswith("layeringdiff"):  # the backend's own command
                return [python]
            return [python, "-m", "layeringdiff"]
        exe = shutil.which("layeringdiff")
        return [exe] if exe else ["python3", "-m", "layeringdiff"]

    def backend_command(self, own_python: str = "", models_dir: str = "") -> List[str]:
        """Command that starts the backend on a free loopback port (it prints a READY line); own_python: the
        docker's own environment's, used when no Python is set; models_dir: the folder when none is set."""
        # --parent-pid: the backend exits by itself if Krita goes away without stopping it
        serve = ["serve", "--port", "0", "--max-pixels", str(self.max_pixels), "--parent-pid", str(os.getpid())]
        if self.models_dir or models_dir:
            serve += ["--models-dir", self.models_dir or models_dir]  # one sub-folder per model name
        serve += [f"--model={name}={folder}" for name, folder in sorted(self.model_dirs.items())]
        if self.cpu_offload:
            serve.append("--cpu-offload")
        return [*self.cli(own_python), *serve]

    def describe(self) -> Dict[str, Any]:
        return asdict(self)
