"""The course's other fine-tuning strategies as `train` options, each shown doing what it says on the tiny GPT-2:
discriminative learning rates (the first AdamW step moves each depth by its own rate), gradual unfreezing (which
tensors have moved after each epoch), IA³ (peft scales, merged for inference with the same outputs) and prefix
tuning (peft, --backend hf)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spamtune.config import TrainArgs
from spamtune.errors import ConfigError
from spamtune.training import train_run
from spamtune.training.fit import Callback
from spamtune.weights import load_backbone, read_safetensors

N_LAYERS = 3  # the tiny GPT-2 of conftest.py


def base_tensors(tiny_gpt2_dir) -> dict[str, torch.Tensor]:
    """The pretrained tensors under the Classifier's names."""
    return {f"backbone.{k}": v.clone() for k, v in load_backbone(str(tiny_gpt2_dir)).model.state_dict().items()}


def depth_of(name: str) -> int:
    if ".trf_blocks." in name:
        return N_LAYERS - int(name.split(".trf_blocks.")[1].split(".")[0])
    return N_LAYERS + 1 if "_emb" in name else 0


def test_discriminative_learning_rates(tiny_gpt2_dir, data_dir, tmp_path):
    lr, decay = 1e-3, 0.5
    run = tmp_path / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), trainable="all", lr=lr, lr_decay=decay, max_steps=1, limit=16,
                        epochs=1, weight_decay=0.0), data_dir, run)
    trained, base = read_safetensors(run / "model.safetensors"), base_tensors(tiny_gpt2_dir)
    seen = set()
    for name, t in trained.items():
        if t.ndim != 2 or name not in base or "out_head" in name:
            continue
        # AdamW's first step moves every weight by lr * g / (|g| + eps): its group's rate, up to eps
        moved = (t - base[name]).abs().flatten()
        moved = moved[moved > 0]
        expected = lr * decay ** depth_of(name)
        assert float(moved.median()) == pytest.approx(expected, rel=0.05), name
        seen.add(depth_of(name))
    assert seen == {1, 2, 3, 4}  # every block and the embeddings


class Snapshots(Callback):
    def __init__(self) -> None:
        self.after: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, s, state) -> None:
        self.after.append({k: v.detach().clone() for k, v in s.model.module.state_dict().items()})


def test_gradual_unfreezing_opens_one_block_per_epoch(tiny_gpt2_dir, data_dir, tmp_path):
    snaps = Snapshots()
    train_run(TrainArgs(model=str(tiny_gpt2_dir), trainable="last_two_blocks", unfreeze_every=1, epochs=3,
                        limit=24, lr=1e-3), data_dir, tmp_path / "run", callbacks=[snaps])
    base = base_tensors(tiny_gpt2_dir)

    def moved(epoch: int) -> set[int]:
        return {depth_of(k) for k, v in snaps.after[epoch].items()
                if k in base and "out_head" not in k and not torch.equal(v, base[k])}

    assert moved(0) == {0}  # the final norm (and the head) only
    assert moved(1) == {0, 1}  # + the last block
    assert moved(2) == {0, 1, 2}  # + the one below: the whole scope; nothing below it ever moves


def test_ia3_trains_scales_and_merges_for_inference(tiny_gpt2_dir, data_dir, tmp_path):
    from spamtune.classifier import batched_logits
    from spamtune.inference import TextClassifier

    run = tmp_path / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), trainable="ia3", epochs=1, limit=32, lr=1e-2), data_dir, run)
    tensors = read_safetensors(run / "model.safetensors")
    scales = {k: v for k, v in tensors.items() if "ia3_l" in k}
    assert len(scales) == 3 * N_LAYERS
    assert any(not torch.allclose(v, torch.ones_like(v)) for v in scales.values())  # IA³ starts at 1 and moved
    assert {k for k in tensors if "ia3_l" not in k} <= {k for k in tensors if "out_head" in k}
    clf = TextClassifier.load(run)  # merged into the base weights
    texts = ["WINNER!! claim your prize now", "see you at 6", "call 09061701461 to claim"]
    encoded = clf.encode(texts)
    unmerged = batched_logits(clf.run.predictor, encoded, clf.tokenizer.pad_id)
    np.testing.assert_allclose(clf.logits(texts)[0], unmerged, atol=1e-5)


def test_prefix_tuning_needs_the_hf_backend_and_trains_there(tiny_gpt2_dir, data_dir, tmp_path):
    import inspect

    from transformers import GPT2ForSequenceClassification

    from spamtune.backends.hf import PREFIX_TOKENS
    from spamtune.inference import TextClassifier

    with pytest.raises(ConfigError, match="--backend hf"):
        TrainArgs(model=str(tiny_gpt2_dir), trainable="prefix")
    run = tmp_path / "run"
    args = TrainArgs(backend="hf", model=str(tiny_gpt2_dir), trainable="prefix", epochs=1, limit=32, lr=1e-2)
    if "past_key_values" not in inspect.signature(GPT2ForSequenceClassification.forward).parameters:
        # transformers >= 5.24 renamed it; peft 0.21 cannot prefix-tune there: one clear error, nothing written
        with pytest.raises(ConfigError, match="transformers<5.24"):
            train_run(args, data_dir, run)
        assert not run.exists()
        return
    train_run(args, data_dir, run)
    tensors = read_safetensors(run / "model.safetensors")
    prompt = [v for k, v in tensors.items() if "prompt_encoder" in k]
    assert prompt and prompt[0].shape[0] == PREFIX_TOKENS
    assert not any("transformer.h." in k for k in tensors)  # the base is re-read, not saved
    probs = TextClassifier.load(run).predict_proba(["WINNER!! claim your prize now", "see you at 6"])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_strategy_flags_are_checked():
    with pytest.raises(ConfigError, match="--lr-decay"):
        TrainArgs(lr_decay=1.5)
    with pytest.raises(ConfigError, match="--unfreeze-every"):
        TrainArgs(unfreeze_every=0)
