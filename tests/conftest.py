import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SMS_PATH = Path(os.environ.get("SPAMTUNE_TEST_DATA", ROOT.parent / "shared" / "data" / "SMSSpamCollection"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run only where PyTorch sees a GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def cache_dirs(tmp_path_factory) -> None:
    """The whole session's caches in temporary directories, never in the user's ~/.cache: the frozen prefixes
    ($SPAMTUNE_CACHE_DIR) and what was read from GGUF files ($SPAMTUNE_CACHE). Their keys are contents or file
    identities, so tests share them safely: the embedded model's GGUF file is parsed once per session."""
    os.environ["SPAMTUNE_CACHE_DIR"] = str(tmp_path_factory.mktemp("prefix-cache"))
    os.environ["SPAMTUNE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


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


CASCADE_LIMIT = 200  # rows per split: enough spam for the cascade's out-of-fold margins


@pytest.fixture(scope="session")
def cascade_run(tmp_path_factory, tiny_gpt2_dir, data_dir) -> Path:
    """A finished `--cascade ngrams` run of the tiny GPT-2 (tests/inference/test_cascade.py, the benchmark)."""
    from spamtune.config import TrainArgs
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("cascade") / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=CASCADE_LIMIT, lr=1e-3, cascade="ngrams"),
              data_dir, run)
    return run


@pytest.fixture(scope="session")
def smollm2_run(tmp_path_factory, data_dir) -> Path:
    """A short run of the embedded SmolLM2 (20 steps: a partly trained head and last block), shared by the real-model
    export and container checks."""
    from spamtune.config import TrainArgs
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("smollm2") / "run"
    train_run(TrainArgs(epochs=1, max_steps=20, limit=160), data_dir, run)
    return run


REAL_MODEL_TEXTS = 120  # test messages a real-model parity check reads (59 of them spam): ~8 s a pass on 2 cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app):
    """A real uvicorn server for `app` on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def server(tiny_run, tmp_path_factory):
    """The service on the tiny run, with a SQLite prediction store in a temp dir."""
    from spamtune.inference import TextClassifier
    from spamtune.monitoring.store import PredictionStore
    from spamtune.serving import ServeLimits, ServeOptions, create_app

    clf = TextClassifier.load(tiny_run)
    store = PredictionStore.open(f"sqlite:///{tmp_path_factory.mktemp('store') / 'predictions.sqlite'}")
    # shared by every test of the session, all from 127.0.0.1: the correction rate limit is tested on its own
    # server (tests/serving/test_access.py), not here where it would count every test's corrections together
    limits = ServeLimits(max_texts=8, max_chars=500, max_body_bytes=20_000, batch_window_ms=20,
                         feedback_per_minute_client=1e6, feedback_per_minute_key=1e6)
    app = create_app(clf, limits, ServeOptions(store=store))
    with running(app) as url:
        yield url, app, clf


@pytest.fixture(scope="session")
def server_url(server) -> str:
    return server[0]


# ---------------------------------------------------------------------------------------------------------------
# A real PostgreSQL: Debian's package (scripts/test.sh installs it), a throw-away cluster per session


def postgres_bindir() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs else None


@pytest.fixture(scope="session")
def postgres_url():
    """initdb + pg_ctl in a temp dir on a free loopback port (as the postgres user when run as root: initdb
    refuses root), stopped and deleted at the end of the session."""
    bindir = postgres_bindir()
    assert bindir, "PostgreSQL is required (scripts/test.sh installs Debian's postgresql)"
    root = tempfile.mkdtemp(prefix="spamtune-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), free_port()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "spamtune", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, env=env, cwd=root)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(root, "log"), "-w",
                    "start"], check=True, capture_output=True, env=env, cwd=root)
    try:
        yield f"postgresql+psycopg://spamtune@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True,
                       env=env, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The same store tests on the embedded SQLite file and on a real PostgreSQL (a fresh database each)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    import sqlalchemy

    base = request.getfixturevalue("postgres_url")
    name = "t_" + os.urandom(6).hex()
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return base.rsplit("/", 1)[0] + "/" + name
