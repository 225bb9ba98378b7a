"""Model downloads into a models folder (one sub-folder per model), standard library only, so that the base install
the docker sets up can fetch weights without the ml extra.

- Resumable: a file is downloaded into MODELS/.partial/ and continued with an HTTP Range request after a dropped
  connection (retried here) or a cancel (the next fetch resumes it).
- Checked: against the hashes the hub publishes (sha256 of LFS files, the git blob id of the others); a file that
  does not match is deleted and fetched again once, then reported.
- Stored once: every file lives in MODELS/.blobs/ under its hash and appears in each model folder that has it as
  a hard link (a copy where the file system has no links), so a file two models share takes its space once.
- Ready only when complete: MODELS/.manifests/KEY.json is written after a model's last file, and states are read
  from it (missing, partial, ready, broken).

The hub is https://huggingface.co, or HF_ENDPOINT (a mirror); HF_TOKEN authorises gated models.
"""

import fnmatch
import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import quote

CHUNK = 1 << 20
ATTEMPTS = 5  # per file: a dropped connection resumes where it stopped
TIMEOUT_S = 60
BLOBS, PARTIAL, MANIFESTS = ".blobs", ".partial", ".manifests"

Report = Callable[[dict], None]  # events: {"event": "file"|"download"|"retry"|"done", ...}


class FetchError(Exception):
    """What went wrong, in one sentence that names the model and the file."""


class Cancelled(Exception):
    pass


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str = ""  # LFS files: the sha256 the hub publishes
    git_sha1: str = ""  # other files: the git blob id

    @property
    def digest(self) -> str:
        return f"sha256-{self.sha256}" if self.sha256 else f"git-{self.git_sha1}" if self.git_sha1 else ""


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _request(url: str, headers: Optional[dict] = None) -> urllib.request.Request:
    headers = dict(headers or {})
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers.setdefault("User-Agent", "layeringdiff")
    return urllib.request.Request(url, headers=headers)


def list_files(repo: str, patterns: tuple[str, ...] = (), revision: str = "main") -> tuple[str, list[RemoteFile]]:
    """(commit, files) of a repository, with sizes and hashes; only the files matching patterns when given."""
    url = f"{endpoint()}/api/models/{repo}/revision/{quote(revision)}?blobs=true"
    try:
        with urllib.request.urlopen(_request(url), timeout=TIMEOUT_S) as response:
            info = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise FetchError(f"the hub answered {exc.code} for {repo}" + (" (a gated model: accept its licence on "
                         "its page and set HF_TOKEN)" if exc.code in (401, 403) else "")) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"cannot reach the hub ({endpoint()}) for {repo}: {getattr(exc, 'reason', exc)}") from None
    files = []
    for sib in info.get("siblings", []):
        name = sib.get("rfilename", "")
        if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        lfs = sib.get("lfs") or {}
        files.append(RemoteFile(name, int(lfs.get("size") or sib.get("size") or 0), str(lfs.get("sha256") or ""),
                                "" if lfs else str(sib.get("blobId") or "")))
    return str(info.get("sha") or revision), files


def file_digest(path: Path, remote: RemoteFile) -> str:
    """The file's hash in the form the hub publishes for it."""
    if remote.sha256 or not remote.git_sha1:
        h = hashlib.sha256()
    else:  # git's blob id: sha1 of "blob <size>\0" + content
        h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def manifest_path(self, key: str) -> Path:
        return self.root / MANIFESTS / f"{key}.json"

    def manifest(self, key: str) -> dict:
        try:
            data = json.loads(self.manifest_path(key).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def state(self, key: str) -> str:
        """missing | partial (a fetch stopped part-way) | ready | broken (a file of a fetched model is gone or
        changed size) | present (a folder this store did not fetch: used as it is)."""
        folder, manifest = self.root / key, self.manifest(key)
        if manifest:
            for item in manifest.get("files", []):
                path = folder / item["path"]
                if not path.is_file() or path.stat().st_size != item["size"]:
                    return "broken"
            return "ready"
        if (self.root / PARTIAL / key).is_dir():  # made when a fetch starts, removed when it ends well
            return "partial"
        return "present" if folder.is_dir() else "missing"

    def missing_bytes(self, files: list[RemoteFile]) -> int:
        return sum(f.size for f in files if not (f.digest and (self.root / BLOBS / f.digest).is_file()))

    def fetch(self, key: str, repo: str, patterns: tuple[str, ...] = (), report: Report = lambda e: None,
              cancelled: Callable[[], bool] = lambda: False) -> Path:
        commit, files = list_files(repo, patterns)
        if not files:
            raise FetchError(f"{repo} has no files matching {', '.join(patterns) or '*'}")
        need = self.missing_bytes(files)
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if need * 1.05 > free:
            raise FetchError(f"not enough disk space for '{key}' in {self.root}: {need / 1e9:.2f} GB needed, "
                             f"{free / 1e9:.2f} GB free")
        total, done = sum(f.size for f in files), 0
        report({"event": "model", "model": key, "files": len(files), "total": total, "need": need})
        (self.root / PARTIAL / key).mkdir(parents=True, exist_ok=True)
        self.manifest_path(key).unlink(missing_ok=True)  # not ready while its files change
        folder = self.root / key
        for remote in files:
            blob = self._blob(key, repo, commit, remote, report, cancelled, done, total)
            self._link(blob, folder / remote.path)
            done += remote.size
        manifest = {"repo": repo, "commit": commit, "fetched": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "files": [asdict(f) for f in files]}
        self.manifest_path(key).parent.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        os.replace(tmp, self.manifest_path(key))
        shutil.rmtree(self.root / PARTIAL / key, ignore_errors=True)
        report({"event": "done", "model": key, "total": total})
        return folder

    def _blob(self, key: str, repo: str, commit: str, remote: RemoteFile, report: Report,
              cancelled: Callable[[], bool], before: int, total: int) -> Path:
        name = remote.digest or f"nohash-{hashlib.sha256(f'{repo}/{commit}/{remote.path}'.encode()).hexdigest()}"
        blob = self.root / BLOBS / name
        if blob.is_file():  # another model (or an earlier fetch) has it already: stored once
            report({"event": "file", "model": key, "path": remote.path, "size": remote.size, "shared": True})
            return blob
        part = self.root / PARTIAL / key / (name + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        url = f"{endpoint()}/{repo}/resolve/{commit}/{quote(remote.path)}"
        report({"event": "file", "model": key, "path": remote.path, "size": remote.size,
                "resumed": part.stat().st_size if part.exists() else 0})
        corrupt_once = False
        attempt = 0
        while True:
            attempt += 1
            try:
                self._download(url, part, remote, report, cancelled, key, before, total)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code not in (408, 429, 500, 502, 503, 504):
                    raise FetchError(f"the hub answered {exc.code} for {remote.path} of '{key}'") from None
                if attempt >= ATTEMPTS:
                    raise FetchError(f"the download of {remote.path} for '{key}' kept failing ({exc}); fetch it "
                                     "again to resume") from None
                report({"event": "retry", "model": key, "path": remote.path, "why": str(exc)[:200],
                        "at": part.stat().st_size if part.exists() else 0})
                time.sleep(min(0.5 * attempt, 3))
                continue
            got = file_digest(part, remote) if remote.digest else ""
            want = remote.sha256 or remote.git_sha1
            if want and got != want:
                part.unlink()
                if corrupt_once:
                    raise FetchError(f"{remote.path} of '{key}' does not match the hub's hash twice (expected "
                                     f"{want[:12]}..., got {got[:12]}...): the file on the server or a proxy "
                                     "is damaged")
                corrupt_once = True
                report({"event": "retry", "model": key, "path": remote.path, "why": "hash mismatch", "at": 0})
                continue
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, blob)
            return blob

    def _download(self, url: str, part: Path, remote: RemoteFile, report: Report, cancelled: Callable[[], bool],
                  key: str, before: int, total: int) -> None:
        have = part.stat().st_size if part.exists() else 0
        if remote.size and have >= remote.size:
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        with urllib.request.urlopen(_request(url, headers), timeout=TIMEOUT_S) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            with open(part, "ab" if have else "wb") as out:
                last = 0.0
                while True:
                    if cancelled():
                        raise Cancelled()
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    have += len(chunk)
                    now = time.monotonic()
                    if now - last >= 0.2:
                        last = now
                        report({"event": "download", "model": key, "path": remote.path, "done": have,
                                "size": remote.size, "model_done": before + have, "model_total": total})
        if remote.size and have < remote.size:
            raise ConnectionError(f"the connection closed after {have} of {remote.size} bytes")

    def _link(self, blob: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            if os.path.samefile(blob, dest):
                return
            dest.unlink()
        try:
            os.link(blob, dest)
        except OSError:  # no hard links on this file system: a copy (stored twice there)
            shutil.copy2(blob, dest)

    def holds(self, key: str) -> bool:
        """Whether anything of the model is stored (ready, partial, broken or present)."""
        return self.state(key) != "missing"

    def delete(self, key: str) -> int:
        """Remove a model's folder, manifest and partial files, and the stored files no other model uses; returns
        the bytes freed."""
        freed = 0
        for path in (self.root / key, self.root / PARTIAL / key):
            shutil.rmtree(path, ignore_errors=True)
        self.manifest_path(key).unlink(missing_ok=True)
        blobs = self.root / BLOBS
        if blobs.is_dir():
            for blob in blobs.iterdir():
                st = blob.stat()
                if st.st_nlink <= 1:  # no model folder links it any more
                    freed += st.st_size
                    blob.unlink()
        return freed
