"""The model registry: versions, the current pointer, promotion rules, rollback, the log; and its CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from spamtune.cli import main
from spamtune.inference import TextClassifier
from spamtune.lifecycle import Registry, RegistryError, compare_runs, parse_version
from spamtune.runs import RunConfig


@pytest.fixture
def two_runs(tiny_run, tmp_path):
    """The tiny run and a copy of it with another run id (what a retrain would make)."""
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    cfg = RunConfig.from_dir(other)
    cfg.run_id, cfg.parent = cfg.run_id + "-b", cfg.run_id
    cfg.write(other)
    return tiny_run, other


def test_add_promote_rollback_and_the_log(two_runs, data_dir, tmp_path):
    a, b = two_runs
    reg = Registry(tmp_path / "reg")
    assert reg.current() is None and reg.versions() == []
    with pytest.raises(RegistryError, match="no current version"):
        reg.current_dir()
    v1 = reg.add(a, note="first")
    assert v1.number == 1 and (v1.dir / "model.safetensors").is_file() and not (v1.dir / "resume").exists()
    assert a.is_dir()  # copied, not moved
    reg.promote(1)  # the first promotion needs no comparison
    v2 = reg.add(b)
    assert v2.parent == RunConfig.from_dir(a).run_id
    with pytest.raises(RegistryError, match="no comparison with the current version 1"):
        reg.promote(2)
    # a compare.json shipped inside the run (or written there later) proves nothing: the review's forgery
    (v2.dir / "compare.json").write_text(json.dumps({"decision": "promote", "champion": {"run_id": v1.run_id}}))
    with pytest.raises(RegistryError, match="made by this registry"):
        reg.promote(2)
    c = compare_runs(TextClassifier.load(v1.dir), TextClassifier.load(v2.dir), data_dir, progress=False)
    kept = dataclasses.replace(c, promote=False)
    reg.record_comparison(2, kept)
    with pytest.raises(RegistryError, match="did not pass the promotion policy"):
        reg.promote(2)
    forged = dataclasses.replace(c, binding={**c.binding, "challenger": "0" * 64})
    with pytest.raises(RegistryError, match="not made between version 2 and the current version 1"):
        reg.record_comparison(2, forged)
    reg.record_comparison(2, c)  # spamtune's own comparison of exactly these two: promote rests on it
    assert reg.version(2).comparison["decision"] == "promote"
    reg.promote(2)
    assert reg.current() == 2 and reg.current_dir() == v2.dir
    with pytest.raises(RegistryError, match="current already"):
        reg.promote(2)
    assert reg.rollback(reason="bad canary")["version"] == 1 and reg.current() == 1
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback()
    reg.promote(2, force=True, reason="hotfix")
    log = reg.log()
    assert [(e["action"], e["version"]) for e in log] == [("add", 1), ("promote", 1), ("add", 2), ("compare", 2),
                                                          ("compare", 2), ("promote", 2), ("rollback", 1),
                                                          ("promote", 2)]
    assert log[-1]["forced"] and log[-1]["reason"] == "hotfix" and not log[5]["forced"]
    with pytest.raises(RegistryError, match="already in"):
        reg.add(b)


def test_version_numbers():
    assert parse_version("3") == parse_version("0003") == parse_version("v3") == 3
    for bad in ("abc", "0", "-1", "3.5"):
        with pytest.raises(Exception, match="not a version number"):
            parse_version(bad)


def test_cli_one_line_errors_and_list(two_runs, tmp_path, capsys):
    a, _ = two_runs
    reg = str(tmp_path / "reg")
    assert main(["registry", "list", "--registry", reg]) == 0
    assert "no versions yet" in capsys.readouterr().out
    for argv, message in ((["registry", "promote", "1"], "no version 1"),
                          (["registry", "promote", "x1"], "not a version number"),
                          (["registry", "rollback"], "no earlier promoted version"),
                          (["registry", "add", str(tmp_path)], "not a spamtune run")):
        assert main([*argv, "--registry", reg]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["registry", "add", str(a), "--registry", reg, "--note", "first"]) == 0
    assert main(["registry", "promote", "1", "--registry", reg]) == 0
    capsys.readouterr()
    assert main(["registry", "list", "--registry", reg, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["current"] == 1 and listed["versions"][0]["note"] == "first"
    (tmp_path / "reg" / "current.json").write_text("{not json")
    assert main(["registry", "list", "--registry", reg]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_a_damaged_run_is_not_added_and_a_version_damaged_since_is_not_promoted(two_runs, tmp_path):
    a, b = two_runs
    broken = tmp_path / "broken"
    shutil.copytree(b, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="not a loadable run"):
        reg.add(broken)
    assert reg.versions() == []
    reg.add(a)
    reg.promote(1)
    v2 = reg.add(b)
    weights = v2.dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16] + bytes(16))  # damaged after it was added
    with pytest.raises(RegistryError, match="changed or damaged since it was added"):
        reg.promote(2, force=True)  # not even forced
    assert reg.current() == 1


def test_the_lock_never_follows_a_symlink(two_runs, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    reg = Registry(tmp_path / "reg")
    reg.root.mkdir()
    os.symlink(victim, reg.root / ".lock")
    with pytest.raises(RegistryError, match="symlink there is refused"):
        reg.add(two_runs[0])
    assert victim.read_text() == "precious"  # not truncated


@pytest.mark.parametrize("pointer", [
    {"format": "spamtune-registry/1", "version": -1, "history": [-1]},
    {"format": "spamtune-registry/1", "version": 1, "history": []},
    {"format": "spamtune-registry/1", "version": 2, "history": [1]},
    {"format": "spamtune-registry/1", "version": 7, "history": [7]},  # no such version
    {"format": "spamtune-registry/1", "version": True, "history": [True]},
    [1, 2],
])
def test_a_tampered_pointer_is_one_clear_error(two_runs, tmp_path, capsys, pointer):
    reg = Registry(tmp_path / "reg")
    reg.add(two_runs[0])
    reg.promote(1)
    (reg.root / "current.json").write_text(json.dumps(pointer))
    for argv in (["registry", "list"], ["registry", "rollback"], ["registry", "promote", "1"]):
        assert main([*argv, "--registry", str(reg.root)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "current.json" in err and "Traceback" not in err, err
