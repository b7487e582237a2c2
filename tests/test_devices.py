"""--device and --dtype plumbing: a missing device is one clear error; bf16 autocast trains; on a GPU (tests marked
`cuda`), training and inference give the CPU's numbers within float tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spamtune.batching import pad_ids
from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.devices import BF16_CPU_WIDTH_MULTIPLE, resolve_device
from spamtune.errors import ConfigError
from spamtune.inference import TextClassifier
from spamtune.training import train_run
from spamtune.training.setup import setup

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _args(model, **kw) -> TrainArgs:
    return TrainArgs(**{**dict(model=str(model), epochs=1, limit=48, eval_freq=2, eval_iter=2, lr=1e-3), **kw})


def _losses(run) -> list[float]:
    return json.loads((run / "history.json").read_text())["train_losses"]


def test_auto_is_cpu_without_a_gpu_and_others_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="must be auto, cpu, cuda or mps"):
        resolve_device("tpu")


@no_cuda
def test_asking_for_a_missing_gpu_is_one_line_and_writes_nothing(tiny_gpt2_dir, data_dir, tiny_run, tmp_path, capsys):
    assert main(["train", "--data-dir", str(data_dir), "--out", str(tmp_path / "r"), "--model", str(tiny_gpt2_dir),
                 "--device", "cuda"]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["classify", str(tiny_run), "--device", "cuda", "hello"]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


@pytest.mark.parametrize("trainable", ["last_block", "all"])
def test_bf16_autocast_trains_close_to_fp32(tiny_gpt2_dir, data_dir, tmp_path, trainable):
    for dtype in ("fp32", "bf16"):
        train_run(_args(tiny_gpt2_dir, dtype=dtype, device="cpu", trainable=trainable), data_dir, tmp_path / dtype)
    fp32, bf16 = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert fp32 != bf16  # bf16 matmuls really ran
    assert bf16 == pytest.approx(fp32, abs=0.05)


def test_bf16_on_the_cpu_rounds_batch_widths_up_and_changes_no_logit(tiny_gpt2_dir, data_dir, tmp_path):
    """oneDNN keeps memory per bf16 input shape on the CPU, so bf16 batches there are padded to a multiple of 32
    (token and cached-prefix batches alike); fp32 keeps exact widths; the extra padding changes no logit."""
    m = BF16_CPU_WIDTH_MULTIPLE
    for dtype in ("bf16", "fp32"):
        for cached in (True, False):
            ts = setup(_args(tiny_gpt2_dir, dtype=dtype, device="cpu", cache_prefix=cached), data_dir,
                       tmp_path / f"{dtype}-{cached}")
            assert ts.model.cached == cached
            batches = [*ts.data.train_loader, *ts.data.val_eval_loader]
            widths = {int(b[0].shape[1]) for b in batches}
            longest = {int(b[1].max()) for b in batches}
            if dtype == "bf16":
                assert all(w % m == 0 for w in widths) and len(widths) < len(longest)
            else:
                assert widths == longest and any(w % m for w in widths)
    clf = ts.model.classifier.eval()
    for pooling in ("last_real", "mean"):
        clf.pooling = pooling
        seqs = [ts.data.train_loader.dataset.encoded[i] for i in range(8)]
        with torch.inference_mode():
            exact = clf(*pad_ids(seqs, 50256))
            rounded_ids, lengths = pad_ids(seqs, 50256, multiple=m)
            assert rounded_ids.shape[1] % m == 0 and rounded_ids.shape[1] > max(map(len, seqs))
            torch.testing.assert_close(clf(rounded_ids, lengths), exact, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("trainable", ["last_block", "all", "lora"])
def test_training_on_cuda_matches_the_cpu(tiny_gpt2_dir, data_dir, tmp_path, trainable):
    for device in ("cpu", "cuda"):
        train_run(_args(tiny_gpt2_dir, device=device, trainable=trainable), data_dir, tmp_path / device)
    assert _losses(tmp_path / "cuda") == pytest.approx(_losses(tmp_path / "cpu"), abs=1e-4)
    train_run(_args(tiny_gpt2_dir, device="cuda", dtype="bf16", trainable=trainable), data_dir, tmp_path / "bf16")
    assert _losses(tmp_path / "bf16") == pytest.approx(_losses(tmp_path / "cpu"), abs=0.05)


@pytest.mark.cuda
def test_inference_on_cuda_matches_the_cpu(tiny_run):
    texts = ["Free entry in 2 a wkly comp to win FA Cup final tkts", "ok see you at 8", "WINNER!! claim now"] * 7
    cpu = TextClassifier.load(tiny_run, device="cpu").predict_proba(texts)
    gpu = TextClassifier.load(tiny_run, device="cuda").predict_proba(texts)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    bf16 = TextClassifier.load(tiny_run, "bf16", device="cuda").predict_proba(texts)
    np.testing.assert_allclose(bf16, cpu, atol=0.03)


@pytest.mark.parametrize("flags,auto,warns", [
    ({"avx2", "fma"}, "fp32", True),  # the AVX2 EPYC the review measured bf16 at 0.17x fp32 on
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16", False),
    ({"avx2", "amx_bf16", "amx_tile"}, "bf16", False),
])
def test_bf16_only_where_the_cpu_computes_it(monkeypatch, caplog, tiny_run, flags, auto, warns):
    from spamtune import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(flags))
    cpu = torch.device("cpu")
    assert devices.resolve_dtype("auto", cpu) == auto and devices.resolve_dtype("fp32", cpu) == "fp32"
    caplog.clear()
    with caplog.at_level("WARNING", logger="spamtune.devices"):
        assert devices.resolve_dtype("bf16", cpu) == "bf16"  # asked for: kept, and said
    assert any("emulation" in r.getMessage() for r in caplog.records) == warns
    clf = TextClassifier.load(tiny_run, dtype="auto")
    assert next(clf.module.parameters()).dtype == (torch.bfloat16 if auto == "bf16" else torch.float32)
