"""The container's figures: image size, build time (cold and cached), cold start to healthy, memory in the container.

    python -m benchmarks.container --run runs/demo                # the image with a SmolLM2 run baked in
    python -m benchmarks.container --run runs/demo --no-record

Starts a Docker daemon of its own (Debian's dockerd: vfs storage, no iptables, no bridge; its data root cached in
~/.cache/spamtune/docker, or $SPAMTUNE_DOCKER_CACHE), makes the base image locally when it is not cached (Docker
Hub is out of reach here: a debootstrap bookworm, whose python3 is 3.11), builds the Dockerfile from a copy of the
repository with this machine's torch wheel and CA bundle in deploy/local/, builds it again (every layer cached),
runs it on host networking and times: the first 200 from /health, the image's own HEALTHCHECK turning healthy
(interval 30 s), and the served process's RSS after 20 requests. The helpers here are the container tests' too.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE_TAG = "spamtune-base:bookworm"
LABEL = {"spamtune-test": "1"}  # everything made here carries it, so the clean-up finds it


def cache_root() -> Path:
    return Path(os.environ.get("SPAMTUNE_DOCKER_CACHE") or Path.home() / ".cache" / "spamtune" / "docker")


@contextlib.contextmanager
def docker_daemon() -> Iterator[Any]:
    """A dockerd of our own on the cached data root (one at a time: a second waits for the first), and a client
    to it; stopped at the end."""
    import docker

    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        raise RuntimeError("dockerd is required (scripts/test.sh installs Debian's docker.io)")
    data = cache_root() / "data"
    data.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="spamtune-dockerd-", dir="/tmp"))  # short: its sockets live under it
    lock = open(cache_root() / ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    log = open(run / "dockerd.log", "w")
    proc = subprocess.Popen([dockerd, "--storage-driver=vfs", "--iptables=false", "--bridge=none",
                             "--data-root", str(data), "--exec-root", str(run / "exec"),
                             "--pidfile", str(run / "dockerd.pid"), "--host", f"unix://{run / 'docker.sock'}"],
                            stdout=log, stderr=subprocess.STDOUT)
    client = None
    try:
        deadline = time.monotonic() + 90
        while client is None:  # the client negotiates the API version on creation: the daemon must be up
            try:
                client = docker.DockerClient(base_url=f"unix://{run / 'docker.sock'}", version="auto", timeout=3000)
                client.ping()
            except Exception:
                client = None
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dockerd did not start: " + (run / "dockerd.log").read_text()[-2000:])
                time.sleep(0.5)
        yield client
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        lock.close()
        shutil.rmtree(run, ignore_errors=True)


def clean_up(client, tags: tuple[str, ...]) -> None:
    """What we made: labelled containers and volumes, the given images, dangling layers (the base stays)."""
    mine = {"label": list(LABEL)}
    for c in client.containers.list(all=True, filters=mine):
        c.remove(force=True, v=True)
    for v in client.volumes.list(filters=mine):
        v.remove(force=True)
    for tag in tags:
        with contextlib.suppress(Exception):  # never built (a failed build): nothing to remove
            client.images.remove(tag, force=True)
    client.images.prune(filters={"dangling": True})


def base_image(client) -> str:
    """Debian bookworm with python3 (3.11) and python3-venv from debootstrap, imported once and cached: what
    python:3.11-slim gives, made here. A cached base a non-root user cannot use is made again."""
    try:
        client.containers.run(BASE_TAG, ["python3", "-c", "import venv"], user="65534", remove=True,
                              network_mode="host")
        return BASE_TAG
    except Exception:
        with contextlib.suppress(Exception):
            client.images.remove(BASE_TAG, force=True)
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RuntimeError("debootstrap is required (scripts/test.sh installs it)")
    rootfs = Path(tempfile.mkdtemp(prefix="spamtune-rootfs-", dir="/tmp"))
    try:
        subprocess.run([debootstrap, "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", str(rootfs), "http://deb.debian.org/debian"], check=True, capture_output=True)
        os.chmod(rootfs, 0o755)  # the image's / (mkdtemp makes it 0700: no other user could reach /bin)
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], check=True, capture_output=True).stdout
        repository, tag = BASE_TAG.split(":")
        client.api.import_image_from_data(tar, repository=repository, tag=tag)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_TAG


def build_context(dest: Path, run: Path) -> Path:
    """The repository's files the Dockerfile reads, the run as runs/default, and what this machine's build needs
    in deploy/local/: its own torch wheel (pip here finds a local CPU wheel; the default would pull the CPU index)
    and the CA bundle its pip trusts."""
    for name in ("Dockerfile", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    local = dest / "deploy" / "local"
    local.mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "local" / "README.md", local)
    wheels = cache_root() / "wheels"
    if not list(wheels.glob("torch-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "torch==2.13.0", "--no-deps", "-q", "-d",
                        str(wheels)], check=True)
    for wheel in wheels.glob("torch-*.whl"):
        shutil.copy(wheel, local)
    ca = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    if Path(ca).is_file():
        shutil.copy(ca, local / "ca.crt")
    shutil.copytree(run, dest / "runs" / "default", ignore=shutil.ignore_patterns("resume"))
    return dest


def build(client, context: Path, tag: str, base: str) -> float:
    """`docker build` (legacy builder, host network for pip); seconds."""
    start = time.monotonic()
    client.images.build(path=str(context), tag=tag, buildargs={"BASE": base}, network_mode="host", rm=True,
                        forcerm=True)
    return time.monotonic() - start


def run_container(client, image: str, port: int, volume: str | None = None, command: list[str] | None = None,
                  mounts: dict | None = None, check_every_s: float | None = None):
    """The image on host networking, serving on `port`; `check_every_s`: its own HEALTHCHECK command, run that
    often instead of every 30 s (the test is inherited from the image)."""
    volumes = {volume: {"bind": "/data", "mode": "rw"}} if volume else {}
    volumes.update(mounts or {})
    health = {"interval": int(check_every_s * 1e9)} if check_every_s else None
    return client.containers.run(image, command=command, detach=True, network_mode="host", healthcheck=health,
                                 environment={"SPAMTUNE_PORT": str(port)}, volumes=volumes, labels=LABEL)


def wait_healthy(container, timeout: float = 240) -> str:
    """The status the image's own HEALTHCHECK reaches (healthy, or where it stood at the timeout or exit)."""
    deadline = time.monotonic() + timeout
    status = "starting"
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status", "none")
        if status == "healthy" or container.status == "exited":
            break
        time.sleep(1)
    return status


def first_ok(url: str, timeout: float = 240) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> None:
    from benchmarks.common import free_port, publish

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/demo"), help="the run baked into the image")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args(argv)
    tag = "spamtune:benchmark"
    with docker_daemon() as client, tempfile.TemporaryDirectory() as tmp:
        try:
            made = time.monotonic()
            base = base_image(client)
            base_s = time.monotonic() - made
            context = build_context(Path(tmp), args.run)
            clean_up(client, (tag,))
            cold = build(client, context, tag, base)
            cached = build(client, context, tag, base)
            size = client.images.get(tag).attrs["Size"]
            port = free_port()
            start = time.monotonic()
            c = run_container(client, tag, port)
            up = time.monotonic() - start if first_ok(f"http://127.0.0.1:{port}/health") else float("nan")
            status = wait_healthy(c)
            healthy = time.monotonic() - start
            for i in range(20):
                body = json.dumps({"texts": [f"message {i}", "WINNER claim your prize"]}).encode()
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/classify", body,
                                                              {"Content-Type": "application/json"}), timeout=60)
            status_lines = c.exec_run(["cat", "/proc/1/status"]).output.decode().splitlines()
            rss = {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in status_lines)
                   if k in ("VmRSS", "VmHWM")}
        finally:
            clean_up(client, (tag,))
    body = (f"Run baked in: {args.run}. Docker 20.10 (Debian's docker.io), vfs storage driver (copies every layer: "
            "builds here are slower than on overlayfs), host networking; base: debootstrap bookworm (python 3.11)"
            # a cached base is only checked (one container run, seconds); debootstrap takes minutes
            f"{f', made in {base_s:.0f} s' if base_s > 30 else ', cached'}.\n\n"
            "| image size | build, cold | build, cached | start to first /health 200 | to HEALTHCHECK healthy "
            "(interval 30 s) | RSS after 20 requests (peak) |\n|---|---|---|---|---|---|\n"
            f"| {size / 1e9:.2f} GB | {cold:.0f} s | {cached:.1f} s | {up:.1f} s | {healthy:.0f} s ({status}) | "
            f"{rss.get('VmRSS', 0):.0f} MB ({rss.get('VmHWM', 0):.0f} MB) |")
    publish("Container image", body, record=not args.no_record)


if __name__ == "__main__":
    main()
