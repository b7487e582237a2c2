"""torchrun: 2 CPU processes (gloo) train the tiny model to the same losses and weights as 1 process with the same
global batch; only rank 0 writes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from spamtune.weights import read_safetensors

TOLERANCE = 1e-5  # gloo's all-reduce sums the two halves' gradients in another order than one process does


def _train(tiny_gpt2_dir, data_dir, out, batch, nproc, cache_dir, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "spamtune", "train", "--data-dir", str(data_dir), "--out", str(out),
           "--model", str(tiny_gpt2_dir), "--random-init", "--epochs", "2", "--limit", "64", "--batch-size",
           str(batch), "--eval-freq", "3", "--device", "cpu", "--cache-dir", str(cache_dir), *extra]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("trainable", ["last_block", "all", "lora"])
def test_two_processes_match_one_with_the_same_global_batch(tiny_gpt2_dir, data_dir, tmp_path, trainable):
    runs = {}
    for nproc, batch in ((1, 8), (2, 4)):
        out = tmp_path / f"np{nproc}"
        r = _train(tiny_gpt2_dir, data_dir, out, batch, nproc, tmp_path / f"cache{nproc}", "--trainable", trainable)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[nproc] = out
    h1, h2 = (json.loads((runs[n] / "history.json").read_text()) for n in (1, 2))
    assert len(h1["train_losses"]) == len(h2["train_losses"]) >= 3
    for key in ("train_losses", "val_losses", "val_loss_full", "examples_seen"):
        assert h2[key] == pytest.approx(h1[key], abs=TOLERANCE), key
    w1, w2 = (read_safetensors(runs[n] / "model.safetensors") for n in (1, 2))
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=TOLERANCE, rtol=0)
    log = [json.loads(x) for x in (runs[2] / "log.jsonl").read_text().splitlines()]
    assert len([r for r in log if "val_loss_full" in r]) == 2  # one writer: no duplicated records


def test_nproc_must_be_positive(tiny_gpt2_dir, data_dir, tmp_path):
    r = _train(tiny_gpt2_dir, data_dir, tmp_path / "x", 4, 1, tmp_path / "c", "--nproc", "0")
    assert r.returncode == 2 and "--nproc must be at least 1" in r.stderr
    assert not (tmp_path / "x").exists()


def test_a_stopped_two_process_run_resumes_to_the_uninterrupted_result(tiny_gpt2_dir, data_dir, tmp_path):
    """SIGTERM to torchrun (a preempted job) after the first resume checkpoint; `train --resume RUN --nproc 2`
    finishes it with the weights and history of a run that was never stopped."""
    import signal
    import time

    flags = ["--data-dir", str(data_dir), "--model", str(tiny_gpt2_dir), "--random-init", "--epochs", "30",
             "--limit", "48", "--batch-size", "4", "--eval-freq", "4", "--eval-iter", "1", "--lr", "1e-3",
             "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--nproc", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    spamtune = [sys.executable, "-m", "spamtune", "train"]
    run = tmp_path / "stopped"
    proc = subprocess.Popen([*spamtune, *flags, "--out", str(run)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = run / "resume" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)  # `spamtune train --nproc` is torchrun (exec'd): it stops both workers
    proc.wait(timeout=120)
    assert proc.returncode != 0, "training finished before it could be stopped"
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 30

    r = subprocess.run([*spamtune, "--resume", str(run), "--nproc", "2"], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {run} after epoch" in r.stdout
    r = subprocess.run([*spamtune, *flags, "--out", str(tmp_path / "straight")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    h1, h2 = (json.loads((d / "history.json").read_text()) for d in (run, tmp_path / "straight"))
    assert len(h1["train_losses"]) == len(h2["train_losses"]) == 30 * 6 // 4
    for key in ("train_losses", "val_losses", "val_loss_full"):
        assert h1[key] == pytest.approx(h2[key], abs=1e-6), key
    w1, w2 = (read_safetensors(d / "model.safetensors") for d in (run, tmp_path / "straight"))
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], atol=1e-6, rtol=0)
