"""Files, safely: atomic writes (a crash never leaves a half-written file or directory where a finished one is
expected), output paths checked before any work, and bounded reads of files that should be small.

Rules for a path the user names as an output:
- A symlink is followed: its target is written (atomically), the link stays a link.
- A FIFO or a character device (`/dev/null`, `/dev/stdout`, a named pipe) is written into directly: it is a sink,
  and no rename may ever replace it. A block device, socket or directory is refused.
- An existing regular file is replaced only with `--overwrite`, and never when it is one of the command's inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spamtune.errors import ConfigError, SpamtuneError

MAX_JSON_BYTES = 64 * 2**20  # manifests, label maps, resume state: far below this; /dev/zero is refused first


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_sink(path: str | os.PathLike) -> bool:
    """A FIFO or character device (written into, never renamed over); follows symlinks."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def require_regular_file(path: str | os.PathLike, error: type[SpamtuneError] = SpamtuneError,
                         what: str = "file") -> Path:
    """`path` if it is an existing regular file (after symlinks); else one error that says what it is instead."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"no such {what}: {path}") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise error(f"{path} is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        raise error(f"{path} is not a regular file (a pipe or device cannot be a {what})")
    return path


def check_output_file(dest: str | os.PathLike, overwrite: bool = False,
                      inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Fail before any work if `dest` cannot take the output: see the module docstring for the rules."""
    if str(dest) == "":
        raise ConfigError("the output path is empty")
    dest = Path(dest)
    real = Path(os.path.realpath(dest))
    for src in inputs:
        if real.exists() and Path(src).exists() and os.path.samefile(real, src):
            raise ConfigError(f"{dest} is the input {src}: writing it would destroy the input")
    if is_sink(real):
        return
    if real.exists():
        if real.is_dir():
            raise ConfigError(f"{dest} is a directory; give a file name")
        if not real.is_file():
            raise ConfigError(f"{dest} is not a regular file, a pipe or a character device; refusing to write it")
        if not overwrite:
            raise ConfigError(f"{dest} already exists; pass --overwrite to replace it")
    check_writable_dir(real.parent)


def check_writable_dir(path: Path) -> None:
    """The directory exists (or can be made) and accepts a new file: tried for real, so read-only file systems
    and permissions are caught (root passes permission bits, not a read-only mount)."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot write under {path}: {existing} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".spamtune-write-check."):
            pass
    except OSError as e:
        raise ConfigError(f"cannot write to {existing}: {e.strerror}") from None


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike, mode: str = "w", **open_kw) -> Iterator:
    """Open a temp file beside `dest`; rename it onto `dest` only if the block finishes. A symlink's target is
    what is replaced; a FIFO or character device is written into directly (see the module docstring)."""
    dest = Path(os.path.realpath(dest))
    if is_sink(dest):
        with open(dest, mode, **open_kw) as f:
            yield f
        return
    if dest.exists() and not dest.is_file():
        raise ConfigError(f"{dest} is not a regular file; refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        with open(tmp, mode, **open_kw) as f:
            yield f
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def swap_dir(new: Path, dest: Path) -> None:
    """Put directory `new` at `dest` in one rename; an existing `dest` is moved aside first and deleted only after
    the new one is in place (a crash in between leaves both, never neither)."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temp directory beside `dest`; when the block finishes, it replaces `dest` in one rename.

    An existing non-empty `dest` is refused unless `overwrite` (callers check what it is first: a run, an export).
    A symlink is followed: its target directory is the one replaced.
    """
    dest = Path(os.path.realpath(dest))
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise ConfigError(f"{dest} already exists and is not empty; pass --overwrite to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        swap_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def jsonable(obj: Any) -> Any:
    """NaN and ±inf as null (JSON has no such numbers; json.dumps would write invalid JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (NaN/inf written as null), atomically."""
    with atomic_file(path) as f:
        json.dump(jsonable(obj), f, indent=2, allow_nan=False)
        f.write("\n")


def read_json(path: str | os.PathLike, error: type[SpamtuneError] = SpamtuneError) -> Any:
    """Parse a small JSON file; a missing, special, oversized or malformed file raises `error` naming it."""
    path = require_regular_file(path, error)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise error(f"{path}: {path.stat().st_size} bytes is too large for this file (limit {MAX_JSON_BYTES})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
