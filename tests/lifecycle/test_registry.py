"""The model registry: versions, the current pointer, promotion rules, rollback, the log; and its CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from spamtune.cli import main
from spamtune.lifecycle import Registry, RegistryError, parse_version
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


def test_add_promote_rollback_and_the_log(two_runs, tmp_path):
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
    (v2.dir / "compare.json").write_text(json.dumps({"decision": "keep", "champion": {"run_id": v1.run_id}}))
    with pytest.raises(RegistryError, match="did not pass the promotion policy"):
        reg.promote(2)
    (v2.dir / "compare.json").write_text(json.dumps({"decision": "promote", "champion": {"run_id": "another"}}))
    with pytest.raises(RegistryError, match="no comparison with the current version"):
        reg.promote(2)  # compared with some other champion: not evidence against this one
    (v2.dir / "compare.json").write_text(json.dumps({"decision": "promote", "champion": {"run_id": v1.run_id}}))
    reg.promote(2)
    assert reg.current() == 2 and reg.current_dir() == v2.dir
    with pytest.raises(RegistryError, match="current already"):
        reg.promote(2)
    assert reg.rollback(reason="bad canary")["version"] == 1 and reg.current() == 1
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback()
    reg.promote(2, force=True, reason="hotfix")
    log = reg.log()
    assert [(e["action"], e["version"]) for e in log] == [("add", 1), ("promote", 1), ("add", 2), ("promote", 2),
                                                          ("rollback", 1), ("promote", 2)]
    assert log[-1]["forced"] and log[-1]["reason"] == "hotfix" and not log[3]["forced"]
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
