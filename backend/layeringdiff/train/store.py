"""Samples on disk with cheap random access: 8-bit fields, each PNG-coded (lossless, about a third of the raw
bytes) or stored raw (.npy bytes: no decoding, for few CPU cores), appended to a pack file; an index file maps
each sample id to its offset. Reading one sample is one
positioned read and a PNG decode per field, in any order, without mapping or caching the whole file, so memory
stays flat in the number of samples. Several writers (processes) each append to their own pack + index."""

import io
import os
import struct
from pathlib import Path

import cv2
import numpy as np

PNG_LEVEL = 1  # higher levels save under 1% on photos and cost encode time


CODECS = ("png", "raw")
NPY_MAGIC = b"\x93NUMPY"


def encode(array: np.ndarray, codec: str = "png") -> bytes:
    if array.dtype != np.uint8:
        raise ValueError(f"store 8-bit fields, got {array.dtype}")
    if codec == "raw":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array))
        return buffer.getvalue()
    ok, data = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise ValueError(f"cannot PNG-encode an array of shape {array.shape}")
    return data.tobytes()


def decode(data: bytes) -> np.ndarray:
    """Either codec: a field says which it is by its first bytes."""
    if data[:6] == NPY_MAGIC:
        return np.load(io.BytesIO(data))
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # channel order is kept as written


class PackWriter:
    """Appends samples to NAME.pack and their index records (id, offset, length per field) to NAME.idx; a record
    is written after its data, so a run cut short leaves only whole samples behind and can be resumed."""

    def __init__(self, folder: str | Path, name: str, fields: tuple[str, ...], codec: str = "png") -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        folder = Path(folder)
        self.codec = codec
        folder.mkdir(parents=True, exist_ok=True)
        self.fields = fields
        self.record = struct.Struct(f"<{2 + len(fields)}q")
        index = folder / f"{name}.idx"
        if index.is_file() and index.stat().st_size % self.record.size:  # a record cut off by a crash
            os.truncate(index, index.stat().st_size - index.stat().st_size % self.record.size)
        self.data = open(folder / f"{name}.pack", "ab")  # noqa: SIM115 (closed in close())
        self.index = open(index, "ab")  # noqa: SIM115

    def add(self, sample_id: int, arrays: dict[str, np.ndarray]) -> int:
        blobs = [encode(arrays[f], self.codec) for f in self.fields]
        offset = self.data.seek(0, os.SEEK_END)
        for blob in blobs:
            self.data.write(blob)
        self.data.flush()
        self.index.write(self.record.pack(sample_id, offset, *(len(b) for b in blobs)))
        self.index.flush()
        return sum(len(b) for b in blobs)

    def close(self) -> None:
        self.data.close()
        self.index.close()

    def __enter__(self) -> "PackWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_at(fd: int, length: int, offset: int) -> bytes:
    """os.pread where there is one (no shared file position: safe in threads); elsewhere (Windows) seek + read,
    on this process's own descriptor."""
    if hasattr(os, "pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    parts = []
    while length > 0:
        part = os.read(fd, length)
        if not part:
            break
        parts.append(part)
        length -= len(part)
    return b"".join(parts)


class PackReader:
    """Reads what PackWriters wrote into a folder (every *.idx there with its .pack). File handles are opened per
    process, so a reader can be handed to DataLoader workers."""

    def __init__(self, folder: str | Path, fields: tuple[str, ...]) -> None:
        self.folder, self.fields = Path(folder), fields
        record = struct.Struct(f"<{2 + len(fields)}q")
        self.where: dict[int, tuple[str, int, tuple[int, ...]]] = {}
        for idx in sorted(self.folder.glob("*.idx")):
            raw = idx.read_bytes()
            whole = len(raw) - len(raw) % record.size  # a record cut off by a crash is ignored
            for values in record.iter_unpack(raw[:whole]):
                self.where[values[0]] = (idx.with_suffix(".pack").name, values[1], tuple(values[2:]))
        self._files: dict[str, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, sample_id: int) -> bool:
        return sample_id in self.where

    def bytes_per_sample(self) -> float:
        return sum(sum(v[2]) for v in self.where.values()) / max(1, len(self.where))

    def _fd(self, name: str) -> int:
        if self._pid != os.getpid():  # in a forked worker: its own descriptors
            self._files, self._pid = {}, os.getpid()
        if name not in self._files:
            self._files[name] = os.open(self.folder / name, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self._files[name]

    def __getitem__(self, sample_id: int) -> dict[str, np.ndarray]:
        name, offset, lengths = self.where[sample_id]
        raw = _read_at(self._fd(name), sum(lengths), offset)
        out, start = {}, 0
        for field, length in zip(self.fields, lengths, strict=True):
            out[field] = decode(raw[start:start + length])
            start += length
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files = {}
