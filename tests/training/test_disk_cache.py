"""The disk-backed prefix cache: the same run as in memory, reused across runs, a damaged entry rebuilt (never
used), a size cap, and `spamtune cache list|clear`."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.training import prefix_cache, train_run
from spamtune.training.prefix_cache import DiskCache


def _args(model, cache_dir, **kw) -> TrainArgs:
    return TrainArgs(**{**dict(model=str(model), epochs=1, limit=48, eval_freq=2, eval_iter=2, lr=1e-3,
                               cache_dir=str(cache_dir)), **kw})


def _history(run):
    return json.loads((run / "history.json").read_text())


@pytest.fixture
def builds(monkeypatch):
    """How many messages' prefixes were computed (a reused cache computes none)."""
    count = {"rows": 0}
    real = prefix_cache.prefix_rows

    def counting(*a, **kw):
        for item in real(*a, **kw):
            count["rows"] += 1
            yield item

    monkeypatch.setattr(prefix_cache, "prefix_rows", counting)
    return count


def test_disk_cache_trains_exactly_as_memory_and_is_reused(tiny_gpt2_dir, data_dir, tmp_path, builds):
    train_run(_args(tiny_gpt2_dir, "none"), data_dir, tmp_path / "mem")
    in_memory = builds["rows"]
    train_run(_args(tiny_gpt2_dir, tmp_path / "c"), data_dir, tmp_path / "disk")
    assert builds["rows"] == 2 * in_memory == 2 * 96  # 48 train + 48 validation messages, each once
    assert _history(tmp_path / "disk") == _history(tmp_path / "mem")  # bit-exact: float32 rows read back
    entries = DiskCache(tmp_path / "c").entries()
    assert sorted(e.index["rows"] for e in entries) == [48, 48]
    used = {e.path.name: e.last_used for e in entries}

    train_run(_args(tiny_gpt2_dir, tmp_path / "c", seed=7), data_dir, tmp_path / "again")  # another seed
    assert builds["rows"] == 2 * in_memory  # nothing recomputed: the head's seed does not touch the prefix
    after = {e.path.name: e.last_used for e in DiskCache(tmp_path / "c").entries()}
    assert after.keys() == used.keys() and all(after[k] > used[k] for k in used)


@pytest.mark.parametrize("damage", ["flip", "truncate", "index"])
def test_a_damaged_cache_is_rebuilt_never_used(tiny_gpt2_dir, data_dir, tmp_path, builds, caplog, damage):
    train_run(_args(tiny_gpt2_dir, tmp_path / "c"), data_dir, tmp_path / "first")
    entry = DiskCache(tmp_path / "c").entries()[0].path
    data = entry / "hidden.f32"
    if damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:-100])
    else:
        (entry / "index.json").write_text("{not json")
    (tmp_path / "c" / "leftover.partial").mkdir()  # a killed build's directory is never read
    before = builds["rows"]
    with caplog.at_level(logging.WARNING):
        train_run(_args(tiny_gpt2_dir, tmp_path / "c"), data_dir, tmp_path / "second")
    assert builds["rows"] - before == 48  # the damaged entry only
    assert "damaged or incomplete: rebuilding" in caplog.text
    assert _history(tmp_path / "second") == _history(tmp_path / "first")


def test_size_cap_keeps_the_newest_entry(tiny_gpt2_dir, data_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        train_run(_args(tiny_gpt2_dir, tmp_path / "c", cache_max_gb=1e-9), data_dir, tmp_path / "run")
    entries = DiskCache(tmp_path / "c").entries()
    assert len(entries) == 1 and entries[0].index["rows"] == 48
    assert "exceeds the size cap" in caplog.text
    with pytest.raises(Exception, match="--cache-max-gb must be positive"):
        _args(tiny_gpt2_dir, tmp_path / "c", cache_max_gb=0)


def test_cache_cli_lists_and_clears(tiny_gpt2_dir, data_dir, tmp_path, capsys):
    train_run(_args(tiny_gpt2_dir, tmp_path / "c"), data_dir, tmp_path / "run")
    capsys.readouterr()
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    sizes = [e["bytes"] for e in listed["entries"]]
    assert len(sizes) == 2 and listed["bytes"] == sum(sizes) > 0
    hidden = sum(np.load(e / "offsets.npy")[-1] for e in (tmp_path / "c").iterdir() if e.is_dir()) * 32 * 4
    assert listed["bytes"] == hidden  # tiny model: 32-wide float32 rows
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "c")]) == 0
    assert "MB freed" in capsys.readouterr().out
    assert DiskCache(tmp_path / "c").entries() == []
    (tmp_path / "file").write_text("x")
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err
