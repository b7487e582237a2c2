"""Where the SMS Spam Collection comes from, first hit wins: an explicit path, `$SPAMTUNE_DATA`, the user cache,
then a download of the UCI zip (the book's backup URL if UCI fails). Everything read or downloaded is
sha256-checked against the published file."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from spamtune.errors import DataError
from spamtune.fsutil import atomic_file, require_regular_file, sha256_file

log = logging.getLogger(__name__)

SMS_FILENAME = "SMSSpamCollection"
SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
SMS_URLS = (
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    # the book's backup mirror (LLMs-from-scratch ch06), used when UCI is down
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
)


def cache_dir() -> Path:
    """`$SPAMTUNE_CACHE`, else `$XDG_CACHE_HOME/spamtune`, else `~/.cache/spamtune`."""
    if env := os.environ.get("SPAMTUNE_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spamtune"


def read_source_bytes(path: Path) -> bytes:
    """The bytes of the SMS collection: the file itself, or the `SMSSpamCollection` member of a zip."""
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if path.is_dir():
        path = path / SMS_FILENAME
        if not path.exists():
            raise DataError(f"no {SMS_FILENAME} in directory {path.parent}")
    require_regular_file(path, DataError)  # a FIFO or /dev/zero would be read forever
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                return zf.read(SMS_FILENAME)
        except KeyError:
            raise DataError(f"{path}: zip has no member named {SMS_FILENAME}") from None
        except (zipfile.BadZipFile, OSError) as e:  # truncated download, CRC error
            raise DataError(f"{path}: damaged zip ({e})") from None
    return path.read_bytes()


def download(url: str, dest: Path) -> Path:
    """Download `url` to `dest` through a temp file, renamed only when complete (never a partial file at `dest`)."""
    from tqdm.auto import tqdm

    log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=30) as resp, atomic_file(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while block := resp.read(1 << 16):
                out.write(block)
                bar.update(len(block))
    return dest


def check_sha256(data: bytes, where: str, verify: bool) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if verify and digest != SMS_SHA256:
        raise DataError(
            f"{where}: sha256 mismatch (got {digest[:12]}…, expected {SMS_SHA256[:12]}…); "
            "pass --no-verify to use this file anyway"
        )


def resolve_sms_collection(data: str | os.PathLike | None = None, verify: bool = True) -> tuple[bytes, str]:
    """Find the SMS Spam Collection and return (its bytes, where they came from).

    Args:
        data: a file, a zip or a directory; None means `$SPAMTUNE_DATA`, then the cache, then a download.
        verify: check the sha256 of what was read against the published file.
    """
    if data is None:
        data = os.environ.get("SPAMTUNE_DATA") or None
    if data is not None:
        raw = read_source_bytes(Path(data))
        check_sha256(raw, str(data), verify)
        return raw, str(data)

    cached = cache_dir() / SMS_FILENAME
    if cached.exists() and sha256_file(cached) == SMS_SHA256:
        return cached.read_bytes(), str(cached)

    errors = []
    for url in SMS_URLS:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                raw = read_source_bytes(download(url, Path(tmp) / "sms.zip"))
                check_sha256(raw, url, verify)
            except (OSError, DataError) as e:
                errors.append(f"{url}: {e}")
                continue
        with atomic_file(cached, "wb") as f:
            f.write(raw)
        return raw, url
    raise DataError("could not get the SMS Spam Collection (" + "; ".join(errors) + "); pass --data PATH")
