"""Training: the cached fast path is exact, the scopes train what they say, runs save/load/resume, CLI end to end."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spamtune.batching import pad_ids
from spamtune.classifier import Classifier, apply_trainable, pool
from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.inference import TextClassifier, load_run
from spamtune.training import fit, setup, train_run
from spamtune.training.loss import collect_logits


def _args(model, **kw) -> TrainArgs:
    base = dict(model=str(model), epochs=1, limit=64, eval_freq=3, eval_iter=2, lr=1e-3)
    return TrainArgs(**{**base, **kw})


def _trained_tensors(s):
    return {k: p.detach().clone() for k, p in s.model.module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("pooling,padding", [("last_real", "dynamic"), ("mean", "dynamic"),
                                             ("last", "longest_train"), ("first", "longest_train")])
def test_cached_prefix_is_exact(tiny_gpt2_dir, data_dir, tmp_path, pooling, padding):
    """Same batches, same losses, same weights after a whole epoch, with and without the prefix cache."""
    runs = {}
    init = None
    for cached in (True, False):
        torch.manual_seed(123)
        s = setup(_args(tiny_gpt2_dir, pooling=pooling, padding=padding, cache_prefix=cached), data_dir,
                  tmp_path / str(cached))
        (tmp_path / str(cached)).mkdir()
        assert s.model.cached is cached
        init = init or _trained_tensors(s)
        state = fit(s)
        runs[cached] = (state.history, _trained_tensors(s))
    (h_c, w_c), (h_u, w_u) = runs[True], runs[False]
    assert len(h_c.train_losses) == 2  # 64 messages / 8 = 8 steps, evaluated at steps 3 and 6
    torch.testing.assert_close(torch.tensor(h_c.train_losses), torch.tensor(h_u.train_losses), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(h_c.val_loss_full), torch.tensor(h_u.val_loss_full), rtol=1e-5,
                               atol=1e-6)
    assert w_c.keys() == w_u.keys()
    # AdamW divides by sqrt(v): float noise in near-zero gradients becomes noise of up to ~lr/10 in a weight, so
    # the weights are compared at 1e-4 (lr 1e-3, 8 steps); training moved them by far more than that
    moved = max((w_c[k] - init[k]).abs().max().item() for k in w_c)
    assert moved > 5e-3
    for k in w_c:
        torch.testing.assert_close(w_c[k], w_u[k], rtol=1e-3, atol=1e-4)


def test_context_padding(tiny_gpt2_dir, data_dir, tmp_path):
    """--padding context: the book's `last` token is then the pad at position 255 (this model's context), so every
    batch is that wide; the last real token's state does not depend on padding (causal attention), so its logits
    equal dynamic padding's (the cache keeps such messages unpadded)."""
    logits = {}
    for pooling, padding in (("last_real", "dynamic"), ("last_real", "context"), ("last", "context")):
        s = setup(_args(tiny_gpt2_dir, pooling=pooling, padding=padding), data_dir, tmp_path)
        widths = {b.hidden.shape[1] for b in s.data.train_loader}
        assert (widths == {256}) is (pooling == "last")
        # file order; untrained head
        logits[pooling, padding] = collect_logits(s.data.val_eval_loader, s.model.forward)[0]
    torch.testing.assert_close(logits["last_real", "context"], logits["last_real", "dynamic"])
    assert not torch.allclose(logits["last", "context"], logits["last_real", "dynamic"], atol=1e-3)


def test_last_pooling_with_dynamic_padding_is_not_cached(tiny_gpt2_dir, data_dir, tmp_path):
    s = setup(_args(tiny_gpt2_dir, pooling="last", padding="dynamic"), data_dir, tmp_path)
    assert not s.model.cached


@pytest.mark.parametrize("trainable,expected", [
    ("head", {"backbone.out_head"}),
    ("last_block", {"backbone.out_head", "backbone.final_norm", "backbone.trf_blocks.2"}),
    ("last_two_blocks", {"backbone.out_head", "backbone.final_norm", "backbone.trf_blocks.2",
                         "backbone.trf_blocks.1"}),
])
def test_trainable_scopes(tiny_gpt2_dir, trainable, expected):
    from spamtune.weights import load_backbone

    clf = Classifier(load_backbone(str(tiny_gpt2_dir)).model, 2, trainable=trainable)
    apply_trainable(clf)
    names = {n for n, p in clf.named_parameters() if p.requires_grad}
    got = {n.rsplit(".", 1)[0] if "trf_blocks" not in n else ".".join(n.split(".")[:3]) for n in names}
    got = {g.removesuffix(".scale").removesuffix(".shift") for g in got}
    assert got == expected
    assert clf.backbone.out_head.weight.shape == (2, 32)


def test_head_is_seeded():
    from spamtune.config import ModelConfig
    from spamtune.models import GPTModel

    cfg = ModelConfig(arch="gpt2", vocab_size=50, context_length=16, emb_dim=8, n_layers=1, n_heads=2)
    a = Classifier(GPTModel(cfg), 2, seed=123).backbone.out_head.weight
    b = Classifier(GPTModel(cfg), 2, seed=123).backbone.out_head.weight
    assert torch.equal(a, b)


def test_pooling_positions():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    lengths = torch.tensor([2, 4])
    assert pool(h, lengths, "last_real").flatten().tolist() == [1.0, 7.0]
    assert pool(h, lengths, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(h, lengths, "first").flatten().tolist() == [0.0, 4.0]
    assert pool(h, lengths, "mean").flatten().tolist() == [0.5, 5.5]


def test_prediction_does_not_depend_on_batch_mates(tiny_gpt2_dir, data_dir, tmp_path):
    train_run(_args(tiny_gpt2_dir), data_dir, tmp_path / "run")
    clf = TextClassifier.load(tmp_path / "run")
    msg = "Free entry in 2 a wkly comp to win FA Cup final tkts"
    encoded = [clf.tokenizer.encode(t) for t in (msg, "a much longer message " * 30)]
    # alone, then padded in one pass with a long message (batched_logits would give each its own pass)
    passes = [pad_ids(encoded[:1], clf.tokenizer.pad_id), pad_ids(encoded, clf.tokenizer.pad_id)]
    assert passes[1][0].shape[1] > 3 * len(encoded[0])
    with torch.inference_mode():
        alone, with_long = (clf.run.predictor(ids, lengths).float() for ids, lengths in passes)
    torch.testing.assert_close(alone[0], with_long[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba([msg], calibrated=False)[0], torch.softmax(alone[0], -1), atol=1e-6)


def test_lora_saves_and_restores(tiny_gpt2_dir, data_dir, tmp_path):
    args = _args(tiny_gpt2_dir, trainable="lora", lora_rank=4, lora_alpha=8)
    train_run(args, data_dir, tmp_path / "lora")
    run = load_run(tmp_path / "lora")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "lora" / "model.safetensors")
    assert any("lora_A" in k for k in saved) and any("modules_to_save" in k and "out_head" in k for k in saved)
    assert not any("tok_emb" in k for k in saved)  # the frozen base is not copied into the run
    ids, lengths = torch.tensor([[464, 3290, 318, 50256]]), torch.tensor([3])
    with torch.no_grad():
        once = run.predictor(ids, lengths)
        again = load_run(tmp_path / "lora").predictor(ids, lengths)
    torch.testing.assert_close(once, again)
    # the adapters are not zero: a fresh, untrained wrapper gives other logits
    from spamtune.backends import build_run_model

    fresh = build_run_model(run.run_config, run.label_set).predictor
    with torch.no_grad():
        assert not torch.allclose(fresh.eval()(ids, lengths), once)


@pytest.mark.parametrize("extra", [{}, {"lr_schedule": "cosine", "warmup_ratio": 0.2}])
def test_resume_equals_uninterrupted(tiny_gpt2_dir, data_dir, tmp_path, extra):
    """A run killed after epoch 1 and resumed ends with the same weights and history (the lr schedule included)."""
    args = _args(tiny_gpt2_dir, epochs=3, limit=48, **extra)
    train_run(args, data_dir, tmp_path / "full")

    from spamtune.training import Callback, resume_run

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, s, state):
            if state.epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(args, data_dir, tmp_path / "cut", callbacks=[StopAfterFirstEpoch()])
    assert json.loads((tmp_path / "cut" / "resume" / "state.json").read_text())["epoch"] == 1
    run_id = json.loads((tmp_path / "cut" / "run.json").read_text())["run_id"]
    resume_run(tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["run_id"] == run_id  # the same run
    from safetensors.torch import load_file

    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    ha = json.loads((tmp_path / "full" / "history.json").read_text())
    hb = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert ha.keys() == hb.keys()
    for key in ha:
        assert ha[key] == pytest.approx(hb[key]), key


def test_cli_prepare_train_evaluate_classify(tiny_gpt2_dir, sms_path, tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["prepare", "--data", str(sms_path), "--out", str(data)]) == 0
    assert main(["train", "--data-dir", str(data), "--out", str(run), "--model", str(tiny_gpt2_dir),
                 "--epochs", "2", "--limit", "40", "--eval-freq", "2", "--lr", "1e-3"]) == 0
    for name in ("run.json", "labels.json", "train_args.json", "model.safetensors", "history.json",
                 "metrics.json", "log.jsonl", "loss.png", "loss.pdf", "accuracy.png", "accuracy.pdf"):
        assert (run / name).is_file(), name
    config = json.loads((run / "run.json").read_text())
    assert config["tokenizer"] == "gpt2" and config["pooling"] == "last_real" and config["trainable"] == "last_block"
    assert config["format"] == "spamtune-run/2" and len(config["run_id"]) == 23
    assert config["versions"]["torch"] == torch.__version__ and config["versions"]["spamtune"]
    assert config["data"]["train.csv"] == hashlib.sha256((data / "train.csv").read_bytes()).hexdigest()
    assert json.loads((run / "metrics.json").read_text())["run_id"] == config["run_id"]
    assert json.loads((run / "metrics.json").read_text())["cached_prefix"] is True
    capsys.readouterr()

    assert main(["evaluate", str(run), "--data-dir", str(data), "--json", "--limit", "30"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "precision", "recall", "f1", "mcc", "roc_auc", "confusion_matrix", "fpr_unused"):
        assert key in report, key
    assert set(report["accuracy"]) == {"train", "validation", "test"}
    assert sum(map(sum, report["confusion_matrix"])) == 30
    assert 0.0 <= report["fpr_unused"] <= 1.0
    assert (run / "eval-limit30.json").is_file() and not (run / "eval.json").exists()  # a partial evaluation

    assert main(["classify", str(run), "--json", "WINNER!! Claim your prize", "see you at 6"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [set(x["scores"]) for x in lines] == [{"ham", "spam"}] * 2
    assert all(abs(sum(x["scores"].values()) - 1) < 1e-5 for x in lines)
    assert all(x["decision"] in ("allow", "review", "block") for x in lines)

    # an existing run is not overwritten without --overwrite
    before = (run / "model.safetensors").read_bytes()
    assert main(["train", "--data-dir", str(data), "--out", str(run), "--model", str(tiny_gpt2_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before


def test_no_pickle_anywhere_in_the_package():
    src = Path(__file__).resolve().parents[2] / "src" / "spamtune"
    files = list(src.rglob("*.py"))
    assert len(files) > 40  # the whole package, not an empty glob
    for path in files:
        text = path.read_text()
        assert "torch.load(" not in text and "import pickle" not in text, path


@pytest.mark.real_model
def test_smollm2_few_steps_end_to_end(data_dir, tmp_path, capsys):
    run = tmp_path / "smol"
    assert main(["train", "--data-dir", str(data_dir), "--out", str(run), "--limit", "48", "--epochs", "1",
                 "--eval-freq", "3", "--eval-iter", "1"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["cached_prefix"] is True
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data-dir", str(data_dir), "--json", "--limit", "16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["accuracy"]) == {"train", "validation", "test"} and report["fpr_unused"] is not None
    # only the trained tensors are stored: the last block, the final norm and the head (~3.5M of 135M)
    from safetensors.torch import load_file

    saved = load_file(run / "model.safetensors")
    assert {k.split(".")[1] for k in saved} == {"trf_blocks", "final_norm", "out_head"}
    assert {k.split(".")[2] for k in saved if "trf_blocks" in k} == {"29"}


def test_max_steps_stops_mid_epoch(tiny_gpt2_dir, data_dir, tmp_path):
    metrics = train_run(_args(tiny_gpt2_dir, epochs=3, max_steps=5), data_dir, tmp_path / "run")
    assert metrics["steps"] == 5 and metrics["examples_seen"] == 40 and metrics["epochs_run"] == 1
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_early_stopping_and_best_checkpoint(tiny_gpt2_dir, data_dir, tmp_path):
    """With a learning rate too small to change the validation loss, epoch 2 is no better than epoch 1:
    early stopping after 1 bad epoch ends the run at epoch 2 and keeps epoch 1's weights."""
    metrics = train_run(_args(tiny_gpt2_dir, epochs=5, lr=1e-12, early_stopping=1), data_dir, tmp_path / "run")
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] == 1
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if "val_loss_full" in r] == [1, 2]


@pytest.mark.parametrize("pooling, fixed", [("last_real", None), ("last", 40)])
def test_prefix_store_extends_a_shallower_cache_exactly(tiny_gpt2_dir, data_dir, pooling, fixed):
    """A deeper prefix built on top of a stored shallower one equals one computed from the tokens."""
    from spamtune.batching import TextDataset
    from spamtune.data import read_split
    from spamtune.tokenizers import load_tokenizer
    from spamtune.training.prefix_cache import PrefixStore, build_prefix_cache
    from spamtune.weights import load_backbone

    df = read_split(data_dir / "validation.csv")[:40]
    ds = TextDataset(df["Text"], df["Label"], load_tokenizer("gpt2"), 40)
    backbone = load_backbone(str(tiny_gpt2_dir)).model
    store = PrefixStore()
    shallow = Classifier(backbone, 2, pooling, "last_two_blocks")  # frozen: block 0
    store.get("tiny", shallow, ds, fixed, "validation")
    deep = Classifier(backbone, 2, pooling, "head")  # frozen: blocks 0-2, extended from the stored block-0 cache
    extended = store.get("tiny", deep, ds, fixed, "validation")
    direct = build_prefix_cache(deep, ds, fixed)
    assert len(store.entries) == 2
    for a, b, n in zip(extended.hidden, direct.hidden, ds.lengths):
        assert a.shape == b.shape == ((fixed or n), 32)
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_lr_schedule_warms_up_and_decays_to_zero(tiny_gpt2_dir, data_dir, tmp_path, schedule):
    """6 steps per epoch x 2 epochs with 25 % warm-up: the lr climbs for 3 steps to --lr, then decays to 0."""
    train_run(_args(tiny_gpt2_dir, epochs=2, limit=48, eval_freq=1, lr_schedule=schedule, warmup_ratio=0.25),
              data_dir, tmp_path / "run")
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines()) if "lr" in r]
    assert len(lrs) == 12  # the lr in force after each step
    assert lrs[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] == 0.0
    if schedule == "linear":
        assert lrs[3:] == pytest.approx([1e-3 * (12 - s) / 9 for s in range(4, 13)])


def test_constant_lr_is_the_book_default(tiny_gpt2_dir, data_dir, tmp_path):
    train_run(_args(tiny_gpt2_dir, epochs=1, limit=48, eval_freq=1), data_dir, tmp_path / "run")
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs == [1e-3] * 6


def test_class_weighted_loss():
    """Cross-entropy weighted per class: sum(w_y * nll) / sum(w_y), as transformers' users write it by hand."""
    from spamtune.tasks import SingleLabel

    task_loss = SingleLabel().loss
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 0])
    w = torch.tensor([2.0, 1.0])
    nll = -torch.log_softmax(logits, -1)[torch.arange(4), y]
    assert task_loss(logits, y, weight=w).item() == pytest.approx(((w[y] * nll).sum() / w[y].sum()).item())
    assert task_loss(logits, y, weight=torch.ones(2)).item() == pytest.approx(nll.mean().item())


def test_class_weights_parse_and_balance(data_dir, tmp_path):
    from spamtune.errors import SpamtuneError
    from spamtune.training.setup import loss_weights

    assert TrainArgs(class_weights="2,1").class_weight_values() == [2.0, 1.0]
    for bad in ("2,x", "0,1", "", "-1,1"):
        with pytest.raises(ValueError, match="class-weights"):
            TrainArgs(class_weights=bad)
    from spamtune.data import LabelSet, read_label_set

    labels = read_label_set(data_dir)
    # scikit-learn's "balanced": n / (k * count), over the (limited) training split
    y = read_split(data_dir / "train.csv")["Label"][:40]
    n_ham, n_spam = int((y == 0).sum()), int((y == 1).sum())
    w = loss_weights(TrainArgs(class_weights="balanced", limit=40), data_dir, labels)
    assert w.tolist() == pytest.approx([40 / (2 * n_ham), 40 / (2 * n_spam)])
    assert loss_weights(TrainArgs(class_weights="2,1"), data_dir, labels).tolist() == [2.0, 1.0]
    with pytest.raises(SpamtuneError, match="3 values for 2 classes"):
        loss_weights(TrainArgs(class_weights="1,2,3"), data_dir, labels)
    with pytest.raises(SpamtuneError, match="single-label"):
        loss_weights(TrainArgs(class_weights="2,1"), data_dir, LabelSet(labels.names, "multi_label"))
    only_ham = tmp_path / "d"
    only_ham.mkdir()
    df = read_split(data_dir / "train.csv")
    df[df["Label"] == 0].to_csv(only_ham / "train.csv", index=False)
    with pytest.raises(SpamtuneError, match="no training example"):
        loss_weights(TrainArgs(class_weights="balanced"), only_ham, labels)


def test_ham_weight_moves_predictions_towards_ham(tiny_gpt2_dir, data_dir, tmp_path):
    """Weights 1,1 train exactly as no weights; a heavy ham weight lowers the spam probabilities it learns."""
    from safetensors.torch import load_file

    runs = {}
    for name, cw in (("none", None), ("ones", "1,1"), ("ham", "20,1")):
        train_run(_args(tiny_gpt2_dir, epochs=2, limit=48, class_weights=cw), data_dir, tmp_path / name)
        runs[name] = load_file(tmp_path / name / "model.safetensors")
    for k in runs["none"]:
        torch.testing.assert_close(runs["none"][k], runs["ones"][k])
    texts = list(read_split(data_dir / "validation.csv")["Text"][:48])
    p_spam = {name: TextClassifier.load(tmp_path / name).predict_proba(texts, calibrated=False)[:, 1]
              for name in ("none", "ham")}
    assert p_spam["ham"].mean() < p_spam["none"].mean() - 0.05


@pytest.mark.parametrize("flags, message", [
    (["--class-weights", "2,x"], "--class-weights must be"),
    (["--warmup-ratio", "0.1"], "--warmup-ratio needs --lr-schedule"),
    (["--lr-schedule", "cosine", "--warmup-ratio", "1.5"], "--warmup-ratio must be in [0, 1)"),
    (["--class-weights", "1,2,3"], "3 values for 2 classes"),
])
def test_cli_bad_training_flags_one_line_exit_2(tiny_gpt2_dir, data_dir, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny_gpt2_dir), "--data-dir", str(data_dir), "--out", str(out), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert err.startswith("spamtune: error: ") and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())
