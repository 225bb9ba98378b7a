"""All-or-nothing output files for the CLI.

Every target is checked and reserved (a temporary file beside it) before the work starts, so a bad output
path fails in a second, not after the split; each file is written under its temporary name and all are
renamed into place only once every one is written. On any failure, or Ctrl+C, the temporary files are
removed: no half-written or stale file is left behind. The report of the files written (the CLI's list on
stdout) is part of it: if it cannot be written, the renames are undone.
"""

import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import InputError

# a disk, a quota or a file size limit reached while writing (Windows may have no EDQUOT)
FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def remove_stale_parts(target: Path) -> None:
    """The files a run killed while it wrote `target` left beside it (a kill -9, the out-of-memory killer: no
    clean-up ran), each named with its writer's process id: those whose writer is gone (a 6000^2 split left 113 MB
    of them, which later runs never removed). A live writer's, and a replaced file's copy (.old: the files that
    were there before, should a rename have been cut short), are left alone."""
    pattern = re.compile(rf"\.{re.escape(_side_stem(target))}\.(\d+)-[0-9a-f]{{8}}\.part{re.escape(target.suffix)}")
    try:
        found = [(p, pattern.fullmatch(p.name)) for p in target.parent.iterdir()]
    except OSError:
        return
    for part, match in found:
        if match is not None and not _alive(int(match.group(1))):
            part.unlink(missing_ok=True)


NAME_BYTES = 255  # the longest file name most file systems hold
SIDE_NAME_EXTRA = len(".") + len(".4294967295-") + 8 + len(".part")  # what a part's name adds to the stem


def _side_stem(target: Path) -> str:
    """The target's stem as the files written beside it use it: cut (whole characters) so that their names, which
    add a pid, a random part and .part or .old, still fit NAME_BYTES (a valid 240-byte name was refused before)."""
    room = NAME_BYTES - SIDE_NAME_EXTRA - len(target.suffix.encode())
    return target.stem.encode()[:max(room, 1)].decode(errors="ignore")


def _too_long(target: Path) -> InputError:
    return InputError(f"cannot write '{target.name}': the name is too long for its folder's file system",
                      "choose a shorter name")


def _alive(pid: int) -> bool:
    """psutil's, not os.kill(pid, 0): on Windows that terminates the process."""
    import psutil

    try:
        return bool(psutil.pid_exists(pid))
    except (OverflowError, OSError, ValueError):
        return True  # a number we cannot ask about: not ours to remove


class Outputs:
    def __init__(self, targets: list[Path], report: Callable[[], None] | None = None) -> None:
        self.targets = targets
        self.report = report  # called once every file is in place; if it raises, they are taken back
        self.temps: dict[Path, Path] = {}

    def __enter__(self) -> "Outputs":
        for target in self.targets:
            parent = target.parent
            if not parent.exists():
                raise InputError(f"output folder '{parent}' does not exist")
            if not parent.is_dir():
                raise InputError(f"'{parent}' is a file, not a folder: cannot write '{target.name}' in it")
            try:
                if target.is_dir():
                    raise InputError(f"'{target}' is a folder: choose another output name")
                if target.exists() and not target.is_file():
                    raise InputError(f"'{target}' exists and is not a regular file")
            except OSError as exc:  # pathlib raises what it cannot ask about
                if exc.errno == errno.ENAMETOOLONG:
                    raise _too_long(target) from None
                raise
        for target in self.targets:
            remove_stale_parts(target)
        try:
            for target in self.targets:
                self.temps[target] = self._reserve(target)
        except BaseException:
            self.discard()
            raise
        return self

    @staticmethod
    def _reserve(target: Path) -> Path:
        """An empty file beside the target, with the target's extension (writers pick the format by it)."""
        temp = target.with_name(f".{_side_stem(target)}.{os.getpid()}-{secrets.token_hex(4)}.part{target.suffix}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise _too_long(target) from None
            # the folder exists (checked above): a read-only one, or a kernel's (/proc says "No such file")
            raise InputError(f"cannot write to '{target.parent}': creating a file there failed ({exc.strerror})",
                             "choose a folder you can write to") from None
        return temp

    def path(self, target: Path) -> Path:
        """Where to write `target` for now."""
        return self.temps[target]

    def commit(self) -> None:
        """Rename every file into place, then report; if a rename or the report fails (or Ctrl+C comes), the
        renames done are undone (the files that were there before come back), so the outputs are all new or all
        as they were."""
        done: list[tuple[Path, Path | None]] = []  # (target, the file it replaced, moved aside)
        try:
            for target in self.targets:
                old = None
                if target.exists():
                    old = target.with_name(f".{_side_stem(target)}.{secrets.token_hex(4)}.old{target.suffix}")
                    os.replace(target, old)
                try:
                    os.replace(self.temps[target], target)
                except OSError:
                    if old is not None:
                        os.replace(old, target)
                    raise
                del self.temps[target]
                done.append((target, old))
            if self.report is not None:
                self.report()
        except BaseException:
            for target, old in reversed(done):
                if old is not None:
                    os.replace(old, target)
                else:
                    target.unlink(missing_ok=True)
            raise
        for _, old in done:
            if old is not None:
                old.unlink(missing_ok=True)

    def discard(self) -> None:
        for temp in self.temps.values():
            temp.unlink(missing_ok=True)
        self.temps.clear()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self.discard()
            if isinstance(exc, OSError) and exc.errno in FULL and not exc.filename:  # a write says no more
                raise InputError(f"cannot write {', '.join(str(t) for t in self.targets)}: "
                                 f"{exc.strerror or os.strerror(exc.errno or 0)}",
                                 "free some space there, or write elsewhere with -o; the files that were there are "
                                 "kept") from None
            return
        try:
            self.commit()
        except OSError as error:
            self.discard()
            raise InputError(f"cannot write the output files: {error.strerror}: {error.filename}") from None
        except BaseException:
            self.discard()
            raise
