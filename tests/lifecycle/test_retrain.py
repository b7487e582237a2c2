"""`spamtune retrain` end to end on a real store: corrections in, a warm-started challenger out, compared,
added to the registry and promoted; nothing to do when there is nothing to learn; the warm start itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.errors import ConfigError
from spamtune.lifecycle import Registry
from spamtune.monitoring.store import PredictionStore
from spamtune.runs import RunConfig
from spamtune.training import setup
from spamtune.weights import read_safetensors


def test_warm_start_begins_at_the_champions_tensors(tiny_run, tiny_gpt2_dir, data_dir, tmp_path):
    s = setup(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=16, init_from=str(tiny_run)), data_dir,
              tmp_path / "r")
    champion = read_safetensors(tiny_run / "model.safetensors")
    own = s.model.module.state_dict()
    assert champion and all(torch.equal(own[k], v) for k, v in champion.items())
    assert s.run_config.parent == RunConfig.from_dir(tiny_run).run_id
    cold = setup(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=16), data_dir, tmp_path / "c")
    assert not all(torch.equal(cold.model.module.state_dict()[k], v) for k, v in champion.items())
    with pytest.raises(ConfigError, match="its trainable is 'last_block', this run's is 'all'"):
        setup(TrainArgs(model=str(tiny_gpt2_dir), trainable="all", limit=16, init_from=str(tiny_run)), data_dir,
              tmp_path / "x")


NEW_SCAMS = [f"Hi mum, this is my new number {k}, my phone broke. Can you send £{300 + k} to my friend's account "
             "today? I'll pay you back x" for k in range(60)]


def record(run, texts, db, tmp_path) -> list[str]:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    assert main(["classify", str(run), "--file", str(src), "--db", db, "--out", str(out), "--overwrite"]) == 0
    return [json.loads(x)["id"] for x in out.read_text().splitlines()]


def test_retrain_from_the_store_into_the_registry(tiny_run, data_dir, tmp_path, capsys):
    db, reg_dir = f"sqlite:///{tmp_path / 'p.sqlite'}", str(tmp_path / "reg")
    assert main(["registry", "add", str(tiny_run), "--registry", reg_dir]) == 0
    assert main(["registry", "promote", "1", "--registry", reg_dir]) == 0
    test_spam = read_split(data_dir / "test.csv").query("Label == 1")["Text"].iloc[0]
    ids = record(tiny_run, [*NEW_SCAMS, test_spam], db, tmp_path)
    store = PredictionStore.open(db)
    for i in ids:
        store.add_feedback(i, "spam", source="cli")  # an operator: trusted, held out and learnt
    capsys.readouterr()

    # too few learnable corrections: nothing trained, nothing written
    assert main(["retrain", "--db", db, "--registry", reg_dir, "--min-feedback", "500", "--promote"]) == 0
    assert "nothing to do: " in capsys.readouterr().out
    assert not (tmp_path / "reg" / "incoming").exists() and Registry(reg_dir).current() == 1

    assert main(["retrain", "--db", db, "--registry", reg_dir, "--promote", "--force", "--epochs", "2",
                 "--confident", "1.0", "--max-share", "0.6"]) == 0
    out = capsys.readouterr().out
    reg = Registry(reg_dir)
    assert reg.current() == 2 and "promoted version 2" in out
    v2 = reg.version(2)
    assert v2.parent == RunConfig.from_dir(tiny_run).run_id
    retrain = json.loads((v2.dir / "retrain.json").read_text())
    c = retrain["corrections"]
    assert c["left_out"] == {"in an evaluation split": 1}  # the test message: never learnt
    assert c["train"] + c["validation"] + c["holdout"] == 60 and c["holdout"] >= 5
    train = pd.read_csv(v2.dir / "data" / "train.csv", keep_default_na=False)
    learnt = train[train["Source"].str.startswith("feedback:")]
    assert len(learnt) == c["train"] and set(learnt["Label"]) == {1} and test_spam not in set(train["Text"])
    assert (train["Source"] == "data").sum() == 32  # the champion's --limit 32 applies to the original rows
    assert RunConfig.from_dir(v2.dir).data_dir == str((v2.dir / "data").resolve())
    compare = json.loads((v2.dir / "compare.json").read_text())
    assert compare["champion"]["run_id"] == RunConfig.from_dir(tiny_run).run_id
    assert set(compare["sets"]) == {"test", "unused ham (report half)", "held-out corrections"}
    assert compare["sets"]["held-out corrections"]["n"] == c["holdout"]
    assert compare["decision"] == "promote" and compare["forced"] == (not compare["promote"])
    assert reg.log()[-1]["forced"] == compare["forced"]

    # the learnt corrections are in the new champion's data now: nothing new to learn
    assert main(["retrain", "--db", db, "--registry", reg_dir, "--min-feedback", "1"]) == 0
    assert "nothing to do: 0 new learnable" in capsys.readouterr().out


def test_retrain_bad_input_is_one_line(tiny_run, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    assert main(["retrain", "--db", db, "--run", str(tiny_run), "--out", str(tmp_path / "n")]) == 2
    assert "no prediction store there" in capsys.readouterr().err  # a mistyped --db is not an empty store
    PredictionStore.open(db)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    for argv, message in ((["--run", str(tiny_run), "--out", str(tmp_path / "taken")], "already exists"),
                          (["--run", str(tmp_path), "--out", str(tmp_path / "n")], "not a spamtune run"),
                          (["--run", str(tiny_run)], "give the challenger's directory with --out"),
                          (["--run", str(tiny_run), "--out", str(tmp_path / "n"), "--promote"], "need --registry"),
                          (["--run", str(tiny_run), "--out", str(tmp_path / "n"), "--holdout", "1.5"], "--holdout")):
        assert main(["retrain", "--db", db, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_two_retrains_never_share_a_directory_and_a_killed_ones_leftovers_go(tmp_path):
    from spamtune.lifecycle.retrain import OWNER, claim, clean_stale

    staging = tmp_path / "incoming" / "20261207T000000Z.data"
    claim(staging)
    with pytest.raises(ConfigError, match="another retrain is writing it"):
        claim(staging)  # the second one with the same --out stops before writing anything
    assert (staging / OWNER).read_text() == str(os.getpid())
    assert clean_stale(tmp_path / "incoming") == []  # we are alive: nothing removed
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    killed = tmp_path / "incoming" / "20261206T000000Z"
    (killed / "resume").mkdir(parents=True)
    claim(killed.with_name(killed.name + ".data"))
    (killed.with_name(killed.name + ".data") / OWNER).write_text(dead)
    removed = clean_stale(tmp_path / "incoming")
    assert sorted(removed) == sorted([killed, killed.with_name(killed.name + ".data")])
    assert staging.is_dir() and not killed.exists()
