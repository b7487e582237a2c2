"""`classify --file --engine ray` on a local Ray: the same rows, columns and order as the local engine."""

from __future__ import annotations

import csv
import json

import pytest

from spamtune.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sms_path):
    rows = [line.split("\t", 1) for line in sms_path.read_text(encoding="utf-8").splitlines()[:120]]
    d = tmp_path_factory.mktemp("ray-inputs")
    texts = [t for _, t in rows]
    (d / "m.txt").write_text("\n".join(texts[:50]) + "\n\n  \n" + "\n".join(texts[50:]) + "\n", encoding="utf-8")
    with open(d / "m.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "body"])
        w.writerows([[lab, t] for lab, t in rows] + [["ham", '=cmd|"/c calc"!A1'], ["ham", "two\nlines"]])
    with open(d / "m.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(texts[:40]):
            f.write(json.dumps(t if i % 2 else {"body": t}) + "\n")
    return d


@pytest.mark.parametrize("name, out, extra", [("m.txt", "o.csv", []), ("m.csv", "o.jsonl", ["--text-col", "body"]),
                                              ("m.jsonl", "o.tsv", ["--text-col", "body"])])
def test_ray_engine_writes_what_the_local_engine_writes(local_ray, tiny_run, inputs, tmp_path, name, out, extra):
    for engine in ("local", "ray"):
        argv = ["classify", str(tiny_run), "--file", str(inputs / name), "--out", str(tmp_path / f"{engine}-{out}"),
                "--engine", engine, "--num-workers", "2", "--device", "cpu", *extra]
        assert main(argv) == 0
    local, distributed = (_rows(tmp_path / f"{e}-{out}") for e in ("local", "ray"))
    assert len(local) >= 40 and [_exact(r) for r in distributed] == [_exact(r) for r in local]
    # scores: a message's logits can differ in the last bit with its batch mates' padding width
    assert sum(map(_floats, distributed), []) == pytest.approx(sum(map(_floats, local), []), abs=2e-6)
    # a check's score is written with 4 decimals in a CSV cell: a last-bit difference may round either way
    check_scores = ([c["score"] for r in rows for c in _checks(r)] for rows in (distributed, local))
    assert next(check_scores) == pytest.approx(next(check_scores), abs=1e-4 + 2e-6)


def _rows(path) -> list[dict]:
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [{**{k: v for k, v in r.items() if k != "scores"}, **{f"p_{k}": v for k, v in r["scores"].items()}}
                for r in rows]
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))


def _checks(row: dict) -> list[dict]:
    """Per-check verdicts: a list in a jsonl row, `check:label:score;...` in a CSV/TSV cell."""
    value = row.get("checks", [])
    if not isinstance(value, str):
        return value
    cells = [cell.split(":") for cell in value.split(";") if cell]  # check:label:score
    return [{"check": c, "label": label, "score": float(score)} for c, label, score in cells]


def _floats(row: dict) -> list[float]:
    return [float(row[k]) for k in sorted(row) if k == "score" or k.startswith("p_")]


def _exact(row: dict) -> dict:
    return {**{k: v for k, v in row.items() if k not in ("score", "checks") and not k.startswith("p_")},
            "checks": [{k: v for k, v in c.items() if k != "score"} for c in _checks(row)]}


def test_ray_engine_errors_are_one_line(tiny_run, inputs, tmp_path, capsys):
    assert main(["classify", str(tiny_run), "--engine", "ray", "hello"]) == 2
    assert "--engine ray scores a --file" in capsys.readouterr().err
    assert main(["classify", str(tiny_run), "--file", str(inputs / "m.txt"), "--engine", "ray", "--db",
                 f"sqlite:///{tmp_path}/p.sqlite"]) == 2
    assert "--db records decisions from the local engine only" in capsys.readouterr().err
    assert main(["classify", str(tiny_run), "--file", str(inputs / "m.txt"), "--engine", "ray",
                 "--num-workers", "0", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--num-workers must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
