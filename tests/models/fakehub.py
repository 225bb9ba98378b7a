"""A stand-in for the Hugging Face hub on loopback (the real one is out of reach here): the few endpoints
`snapshot_download` uses (repo info, file tree, HEAD/GET of files), serving local folders as repos.
Point the libraries at it with HF_ENDPOINT; HF_HUB_DISABLE_XET keeps downloads on plain HTTP."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self, **extra: str) -> dict[str, str]:
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1", **extra}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo: str) -> list[str]:
        root = self.repos[repo]
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def _handler(self) -> type:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(head=True)

            def do_GET(self) -> None:
                self.answer(head=False)

            def send(self, body: bytes, head: bool, headers: dict[str, str]) -> None:
                self.send_response(200)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def answer(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path).strip("/")
                hub.requests.append((self.command, path))
                parts = path.split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 5:
                    repo = "/".join(parts[2:4])
                    if repo not in hub.repos:
                        return self.send_error(404, "Repository not found")
                    root, files = hub.repos[repo], hub.files(repo)
                    if parts[4] == "revision":
                        body = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
                    else:  # tree
                        body = [{"type": "file", "path": f, "size": (root / f).stat().st_size,
                                 "oid": hashlib.sha1((root / f).read_bytes()).hexdigest()} for f in files]
                    return self.send(json.dumps(body).encode(), head, {"Content-Type": "application/json"})
                if len(parts) >= 5 and parts[2] == "resolve":
                    file = hub.repos.get("/".join(parts[:2]), Path("/nonexistent")) / "/".join(parts[4:])
                    if not file.is_file():
                        return self.send_error(404, "Entry not found")
                    data = file.read_bytes()
                    return self.send(data, head, {"X-Repo-Commit": COMMIT,
                                                  "ETag": f'"{hashlib.sha1(data).hexdigest()}"'})
                self.send_error(404)

        return Handler
