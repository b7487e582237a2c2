"""`spamtune export --format onnx` and `--runtime onnx`: ONNX Runtime gives the torch fp32 logits within 1e-4 on
every test message (dynamic batch and sequence axes; scratch GPT-2 with LoRA merged, SmolLM2/Llama with its RoPE
tables on the first 120, `--backend hf` runs); int8 agrees on the labels; errors are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.training import train_run
from tests.conftest import REAL_MODEL_TEXTS
from tests.helpers import minilm_args

pytest.importorskip("onnxruntime")


def _parity(run, export, texts, batch_sizes=(1, 7, 16)) -> float:
    torch_logits, _ = TextClassifier.load(run).logits(texts)
    onnx = TextClassifier.load(export, runtime="onnx")
    worst = 0.0
    for bs in batch_sizes:  # other batch compositions: other padded widths through the dynamic axes
        logits, _ = onnx.logits(texts, batch_size=bs)
        worst = max(worst, float(np.abs(logits - torch_logits).max()))
    return worst


@pytest.mark.parametrize("trainable", ["last_block", "lora"])
def test_onnx_matches_torch_on_every_test_message(tmp_path, tiny_run, tiny_gpt2_dir, data_dir, trainable):
    run = tiny_run
    if trainable == "lora":
        run = tmp_path / "lora"
        train_run(TrainArgs(model=str(tiny_gpt2_dir), trainable="lora", epochs=1, limit=32, lr=1e-2), data_dir, run)
    assert main(["export", str(run), "--format", "onnx", "--quantize", "int8", "--out", str(tmp_path / "x")]) == 0
    texts = list(read_split(data_dir / "test.csv")["Text"])
    assert _parity(run, tmp_path / "x", texts) < 1e-4
    marker = json.loads((tmp_path / "x" / "spamtune-export.json").read_text())
    assert marker["runtime"] == "onnx" and marker["int8"] is True
    fp32 = TextClassifier.load(run).predict(texts)
    int8 = TextClassifier.load(tmp_path / "x", runtime="onnx", quantize="int8").predict(texts)
    assert (int8 == fp32).mean() >= 0.9


def test_onnx_export_of_an_hf_backend_run(tmp_path, data_dir):
    run = tmp_path / "run"
    train_run(minilm_args(trainable="last_block", epochs=1, limit=32), data_dir, run)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    texts = list(read_split(data_dir / "test.csv")["Text"])[:64]
    assert _parity(run, tmp_path / "x", texts, (16,)) < 1e-4


def test_classify_and_evaluate_with_the_onnx_runtime(tmp_path, tiny_run, data_dir, capsys):
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    capsys.readouterr()
    assert main(["classify", str(tmp_path / "x"), "--runtime", "onnx", "--json", "WINNER! claim now"]) == 0
    onnx_answer = json.loads(capsys.readouterr().out)
    assert main(["classify", str(tiny_run), "--json", "WINNER! claim now"]) == 0
    torch_answer = json.loads(capsys.readouterr().out)
    assert onnx_answer["label"] == torch_answer["label"]
    assert onnx_answer["score"] == pytest.approx(torch_answer["score"], abs=1e-5)
    assert main(["evaluate", str(tmp_path / "x"), "--runtime", "onnx", "--data-dir", str(data_dir), "--json",
                 "--no-unused"]) == 0
    onnx_eval = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(tiny_run), "--data-dir", str(data_dir), "--json", "--no-unused"]) == 0
    torch_eval = json.loads(capsys.readouterr().out)
    assert onnx_eval["accuracy"] == torch_eval["accuracy"] and onnx_eval["n"] == torch_eval["n"]
    assert onnx_eval["confusion_matrix"] == torch_eval["confusion_matrix"]


def test_onnx_errors_are_one_line(tmp_path, tiny_run, capsys):
    assert main(["classify", str(tiny_run), "--runtime", "onnx", "hi"]) == 2
    assert "no model.onnx; --runtime onnx reads an ONNX export" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    capsys.readouterr()
    assert main(["classify", str(tmp_path / "x"), "--runtime", "onnx", "--quantize", "int8", "hi"]) == 2
    assert "no model.int8.onnx" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "x"), "--runtime", "onnx", "--dtype", "bf16", "hi"]) == 2
    assert "drop --dtype" in capsys.readouterr().err
    (tmp_path / "x" / "model.onnx").write_bytes(b"not a graph")
    assert main(["classify", str(tmp_path / "x"), "--runtime", "onnx", "hi"]) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--format", "hf", "--quantize", "int8", "--out", str(tmp_path / "y")]) == 2
    assert "--quantize goes with --format onnx" in capsys.readouterr().err


@pytest.mark.real_model
def test_onnx_smollm2_matches_torch_on_the_test_split(tmp_path, data_dir, smollm2_run):
    """The Llama path: RoPE tables as buffers make the graph valid for any length up to the context."""
    run = smollm2_run
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    texts = list(read_split(data_dir / "test.csv")["Text"])[:REAL_MODEL_TEXTS]
    assert _parity(run, tmp_path / "x", texts, (16,)) < 1e-4


def test_serve_with_the_onnx_runtime(tmp_path, tiny_run):
    """`spamtune serve EXPORT --runtime onnx`: the service answers with the export's run and torch's scores."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import free_port

    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "spamtune", "serve", str(tmp_path / "x"), "--runtime", "onnx",
                               "--port", str(port), "--no-store", "--no-access-log"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                health = json.loads(urllib.request.urlopen(url + "/health", timeout=1).read())
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:] if server.stderr else ""
                time.sleep(0.1)
        texts = ["WINNER! claim your prize now", "see you at 8 then"]
        req = urllib.request.Request(url + "/predict", json.dumps({"inputs": [[t] for t in texts]}).encode(),
                                     {"Content-Type": "application/json"})
        answers = json.loads(urllib.request.urlopen(req, timeout=30).read())
    finally:
        server.terminate()
        server.wait(30)
    torch_clf = TextClassifier.load(tiny_run)
    assert health["run_id"] == torch_clf.run_id
    expected = torch_clf.predict_proba(texts)
    got = np.array([[{r["label"]: r["score"] for r in a}[lab] for lab in torch_clf.label_names] for a in answers])
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.fixture(scope="module")
def onnx_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx-export") / "x"
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    return out


def crafted(onnx_export, tmp_path, width: int | str = 2, input_name: str = "input_ids", external: dict | None = None,
            columns: int = 2):
    """A copy of a real export whose model.onnx is a small graph of our making: `columns` logits per message from
    the ids' sum, declared of width `width` (a symbolic name leaves it to the check on one message), optionally
    with an initializer stored outside the file as `external` declares."""
    import shutil

    import onnx
    from onnx import TensorProto, helper

    out = tmp_path / "crafted"
    shutil.copytree(onnx_export, out)
    nodes = [helper.make_node("Cast", [input_name], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
             helper.make_node("Tile", ["s", "reps"], ["logits"])]
    n = width if isinstance(width, int) else columns
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("reps", TensorProto.INT64, [2], [1, n])]
    if external is not None:
        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[external["n"]])
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", external["location"]), ("length", str(4 * external["n"]))):
            w.external_data.add(key=k, value=v)
        inits.append(w)
    graph = helper.make_graph(nodes, "g", [
        helper.make_tensor_value_info(input_name, TensorProto.INT64, ["B", "T"]),
        helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", width])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(out / "model.onnx"))
    return out


@pytest.mark.parametrize("kw,message", [
    ({"input_name": "ids"}, "not spamtune's input_ids and lengths"),
    ({"width": 3}, "gives 3 logits per message, the run has 2"),
    ({"width": "C", "columns": 3}, "not \\(1, 2\\)"),  # a symbolic width: checked on one message
    ({"external": {"n": 250_000_000, "location": "w.bin"}}, "does not hold"),  # 1 GB declared, 10 bytes there
    ({"external": {"n": 4, "location": "../outside.bin"}}, "outside the export directory"),
])
def test_a_wrong_or_forged_graph_is_refused_at_load(onnx_export, tmp_path, kw, message):
    from spamtune.errors import CheckpointError

    (tmp_path / "outside.bin").write_bytes(bytes(16))
    out = crafted(onnx_export, tmp_path, **kw)
    (out / "w.bin").write_bytes(bytes(10))
    with pytest.raises(CheckpointError, match=message):
        TextClassifier.load(out, runtime="onnx")


def test_a_well_formed_crafted_graph_loads(onnx_export, tmp_path):
    """The control: the same crafted graph with spamtune's shapes loads and decides (the checks refuse what is
    wrong, not what is unfamiliar)."""
    clf = TextClassifier.load(crafted(onnx_export, tmp_path), runtime="onnx")
    (d,) = clf.decide(["hello there"])
    assert set(d.scores) == {"ham", "spam"} and d.checks[0].check == "model"
