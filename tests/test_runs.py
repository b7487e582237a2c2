"""Run directories that are damaged or do not fit: one clear error naming the file, exit code 2, no traceback."""

import json
import re
import shutil

import pytest

from spamtune.cli import main


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    return dst


def _classify(run, capsys) -> tuple[int, str]:
    code = main(["classify", str(run), "hello"])
    err = capsys.readouterr().err
    return code, err


def test_truncated_weights(run_copy, capsys):
    w = run_copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    code, err = _classify(run_copy, capsys)
    assert code == 2 and "model.safetensors" in err and "corrupt or truncated" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_garbage_config(run_copy, capsys):
    (run_copy / "run.json").write_text("{not json")
    code, err = _classify(run_copy, capsys)
    assert code == 2 and "run.json" in err and "not valid JSON" in err


def test_config_of_another_kind(run_copy, capsys):
    (run_copy / "run.json").write_text(json.dumps({"hello": "world"}))
    code, err = _classify(run_copy, capsys)
    assert code == 2 and "not a spamtune run manifest" in err


def test_incompatible_checkpoint(run_copy, capsys):
    """A manifest edited to 3 classes no longer fits the 2-label labels.json, nor the saved 2-class head."""
    cfg = json.loads((run_copy / "run.json").read_text())
    cfg["num_classes"] = 3
    (run_copy / "run.json").write_text(json.dumps(cfg))
    code, err = _classify(run_copy, capsys)
    assert code == 2 and "incompatible checkpoint" in err and "labels.json (2 labels" in err
    labels = json.loads((run_copy / "labels.json").read_text())
    labels["id2label"]["2"] = "eggs"
    labels["label2id"]["eggs"] = 2
    (run_copy / "labels.json").write_text(json.dumps(labels))
    code, err = _classify(run_copy, capsys)
    assert code == 2 and "incompatible checkpoint" in err and "model.safetensors" in err
    assert re.search(r"out_head\.(weight|bias) has shape \(2(, 32)?,?\), the model expects \(3", err), err


def test_unfinished_run(run_copy, capsys):
    (run_copy / "model.safetensors").unlink()
    code, err = _classify(run_copy, capsys)
    assert code == 2 and "has not finished an epoch" in err


def test_run_files_are_safetensors_and_json_only(tiny_run):
    """Nothing in a run is a pickle: every weight file starts with a safetensors header (8-byte length + JSON)."""
    for path in tiny_run.rglob("*.safetensors"):
        head = path.read_bytes()[:9]
        assert head[8:9] == b"{", path
    assert not [p for p in tiny_run.rglob("*") if p.suffix in (".pt", ".pth", ".bin", ".pkl")]


def test_damaged_labels_json_in_data_dir(data_dir, tmp_path, tiny_gpt2_dir, capsys):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    (data / "labels.json").write_text("{broken")
    code = main(["train", "--data-dir", str(data), "--out", str(tmp_path / "run"), "--model", str(tiny_gpt2_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "labels.json: not valid JSON" in err and err.count("\n") == 1
