"""benchmarks/scale.py's data growth: the sizes asked for, natural data first, then edited copies the prefix cache
cannot share rows between; and its memory figures: the peak a child process really held."""

from __future__ import annotations

import sys

import pytest

from benchmarks.scale import grown_data, measured
from spamtune.data import read_split


def test_grown_data_has_the_size_and_no_repeated_message(data_dir, tmp_path):
    train = read_split(data_dir / "train.csv")
    assert grown_data(data_dir, 1, tmp_path / "x1") == len(train)
    n = grown_data(data_dir, 7, tmp_path / "x7")
    grown = read_split(tmp_path / "x7" / "train.csv")
    assert n == len(grown) == 7 * len(train)
    unused = read_split(data_dir / "unused.csv")
    assert grown["Text"][len(train):len(train) + len(unused)].tolist() == unused["Text"].tolist()  # natural first
    synthetic = grown[len(train) + len(unused):]
    assert len(synthetic) > len(train)  # 7x needs the edited copies
    assert synthetic["Text"].isin(set(train["Text"])).mean() < 0.01  # (a message already in upper case stays)
    # every copy k keeps its labels: the class balance of the synthetic part is the original's
    assert synthetic["Label"].value_counts(normalize=True).round(2).to_dict() == \
        train["Label"].value_counts(normalize=True).round(2).to_dict()
    for name in ("validation.csv", "test.csv", "labels.json"):
        assert (tmp_path / "x7" / name).read_bytes() == (data_dir / name).read_bytes()


def test_measured_catches_a_childs_peak_anonymous_memory():
    # the child holds 300 MB of its own (anonymous) memory for a second, then lets it go
    code = "import time; b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1); del b"
    wall, peak_rss, peak_anon = measured([sys.executable, "-c", code])
    assert wall >= 1 and 300 <= peak_anon <= peak_rss < 600
    with pytest.raises(SystemExit, match="failed"):
        measured([sys.executable, "-c", "raise SystemExit(3)"])
