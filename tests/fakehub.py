"""A stand-in for the Hugging Face hub on loopback (the real one is out of reach here): the few endpoints
`snapshot_download` and layeringdiff's own hub_fetch use (repo info with sizes and hashes, file tree, HEAD/GET of
files with Range), serving local folders as repos. Point the clients at it with HF_ENDPOINT; HF_HUB_DISABLE_XET
keeps downloads on plain HTTP. Faults on demand: `drop_after[path] = n` ends the next download of that file after
n bytes (the connection drops), `corrupt[path] = k` serves damaged bytes k times."""

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, str]] = []  # (file path, Range header) of every GET that had one
        self.drop_after: dict[str, int] = {}
        self.corrupt: dict[str, int] = {}
        self.lfs_suffixes = (".safetensors", ".bin", ".onnx", ".pt")
        self.slow: dict[str, float] = {}  # path -> seconds per 64 kB sent (a slow network)
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

    def sibling(self, path: Path, name: str) -> dict:
        """A file as the hub's repo info lists it with ?blobs=true: size, git blob id, and LFS's sha256."""
        data = path.read_bytes()
        entry = {"rfilename": name, "size": len(data),
                 "blobId": hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()}
        if name.endswith(self.lfs_suffixes):
            entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

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
                        body = {"id": repo, "sha": COMMIT, "siblings": [hub.sibling(root / f, f) for f in files]}
                    else:  # tree
                        body = [{"type": "file", "path": f, "size": (root / f).stat().st_size,
                                 "oid": hashlib.sha1((root / f).read_bytes()).hexdigest()} for f in files]
                    return self.send(json.dumps(body).encode(), head, {"Content-Type": "application/json"})
                if len(parts) >= 5 and parts[2] == "resolve":
                    file = hub.repos.get("/".join(parts[:2]), Path("/nonexistent")) / "/".join(parts[4:])
                    if not file.is_file():
                        return self.send_error(404, "Entry not found")
                    data = file.read_bytes()
                    name = "/".join(parts[4:])
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
                    if not head and hub.corrupt.get(name):
                        hub.corrupt[name] -= 1
                        data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                    start = 0
                    ranged = self.headers.get("Range", "")
                    if ranged and not head:
                        hub.ranges.append((name, ranged))
                        start = int(ranged.split("=")[1].split("-")[0])
                    if not head and name in hub.drop_after:  # headers promise it all, the body stops short
                        cut = hub.drop_after.pop(name)
                        self.send_response(206 if start else 200)
                        self.send_header("Content-Length", str(len(data) - start))
                        self.end_headers()
                        self.wfile.write(data[start:start + cut])
                        self.wfile.flush()
                        self.close_connection = True
                        return None
                    if not head and name in hub.slow:
                        self.send_response(206 if start else 200)
                        self.send_header("Content-Length", str(len(data) - start))
                        self.end_headers()
                        for at in range(start, len(data), 65536):
                            self.wfile.write(data[at:at + 65536])
                            time.sleep(hub.slow[name])
                        return None
                    if start:
                        self.send_response(206)
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                        for k, v in {**headers, "Content-Length": str(len(data) - start)}.items():
                            self.send_header(k, v)
                        self.end_headers()
                        self.wfile.write(data[start:])
                        return None
                    return self.send(data, head, headers)
                self.send_error(404)

        return Handler
