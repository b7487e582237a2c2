import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """A random GPT-2 with the real vocabulary (the GPT-2 BPE ids reach 50256), saved like HF does."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(GPT2Config(n_positions=256, n_embd=32, n_layer=3, n_head=4)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_gpt2_dir, data_dir) -> Path:
    """A finished run of the tiny GPT-2 (one short epoch): for prediction, serving and evaluation tests."""
    from spamtune.config import TrainArgs
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("run") / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=32, lr=1e-3), data_dir, run)
    return run


@pytest.fixture(scope="session")
def server(tiny_run):
    """A real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    from spamtune.inference import TextClassifier
    from spamtune.serving import ServeLimits, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clf = TextClassifier.load(tiny_run)
    app = create_app(clf, ServeLimits(max_texts=8, max_chars=500, max_body_bytes=20_000, batch_window_ms=20))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app, clf
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def server_url(server) -> str:
    return server[0]
