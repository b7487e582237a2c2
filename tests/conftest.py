import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMS_PATH = Path(os.environ.get("SPAMTUNE_TEST_DATA", ROOT.parent / "shared" / "data" / "SMSSpamCollection"))


@pytest.fixture(scope="session")
def sms_path() -> Path:
    assert SMS_PATH.is_file(), f"test data missing: {SMS_PATH} (CI has ../shared beside the clone)"
    return SMS_PATH


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, sms_path) -> Path:
    """The book's split, prepared once per session."""
    from spamtune.data import prepare

    out = tmp_path_factory.mktemp("data")
    prepare(out, sms_path)
    return out
