"""The notebook under the test command (nbmake): the chapter on a small setting, in a temporary directory, with the
shared data copy when there is one. The kernel inherits the environment; only the notebook's own CHAPTER6_*
variables are set, so no test sees a changed environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "SMSSpamCollection"


def pytest_configure(config) -> None:
    os.environ.setdefault("CHAPTER6_LIMIT", "64")  # messages per split
    os.environ.setdefault("CHAPTER6_EPOCHS", "1")
    work = tempfile.mkdtemp(prefix="chapter6-")
    os.environ.setdefault("CHAPTER6_WORK", work)
    os.environ.setdefault("CHAPTER6_CACHE", os.path.join(work, "cache"))  # the prefix cache, never ~/.cache
    if SHARED_DATA.is_file():
        os.environ.setdefault("CHAPTER6_DATA", str(SHARED_DATA))
