"""benchmarks/scale.py's data growth: the sizes asked for, natural data first, then edited copies the prefix cache
cannot share rows between."""

from __future__ import annotations

from benchmarks.scale import grown_data
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
