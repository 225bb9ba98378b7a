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
    python: str = ""  # empty: the `layeringdiff` command on PATH, else python3
    model_dirs: Dict[str, str] = field(default_factory=dict)  # model name -> local folder
    max_pixels: int = 64 * 1024 * 1024

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        known = {f.name for f in fields(cls)}
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

    def backend_command(self) -> List[str]:
        """Command that starts the backend on a free loopback port (it prints a READY line)."""
        # --parent-pid: the backend exits by itself if Krita goes away without stopping it
        serve = ["serve", "--port", "0", "--max-pixels", str(self.max_pixels), "--parent-pid", str(os.getpid())]
        if self.model_dirs.get("all"):
            serve += ["--models-dir", self.model_dirs["all"]]  # one sub-folder per model name
        serve += [f"--model={name}={folder}" for name, folder in sorted(self.model_dirs.items()) if name != "all"]
        if self.python:
            return [self.python, "-m", "layeringdiff", *serve]
        exe = shutil.which("layeringdiff")
        if exe:
            return [exe, *serve]
        return ["python3", "-m", "layeringdiff", *serve]

    def describe(self) -> Dict[str, Any]:
        return asdict(self)
