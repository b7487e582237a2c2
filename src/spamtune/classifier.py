"""Model surgery (book §6.5): swap the vocabulary head for a `num_classes` head, choose what trains, pool a position.

The classifier is split at the first trainable block: `prefix` (embeddings + frozen blocks) and `suffix` (trainable
blocks + final norm + pooling + head). When the prefix is frozen and deterministic, its output per message can be
computed once and cached (training/prefix_cache.py), which is exact because padding is on the right and attention
is causal: a real token never attends to a pad. `CachedSuffix` is the module that trains on the cached output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from spamtune.batching import PASS_COST_TOKENS, attention_mask_from_lengths, length_batches, pad_ids
from spamtune.config import ADAPTERS, ModelConfig, Padding, Pooling, Trainable
from spamtune.errors import ConfigError
from spamtune.models import Decoder


def pad_width(pooling: Pooling, max_length: int) -> int | None:
    """The width messages are padded to when a run scores them: the training width for the book's `last` pooling,
    which reads position -1 (a wider or narrower batch would move it onto another token); None (each batch's own
    longest message) for the poolings that read real tokens only."""
    return max_length if pooling == "last" else None


def pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(B, T, D) hidden states -> (B, D), the same function in training, evaluation and prediction.

    last: position -1 as in the book (a pad position for short messages); last_real: each message's last real
    token (from `lengths`, never from a pad id); first: position 0; mean: average over real tokens.
    """
    if pooling == "last":
        return hidden[:, -1]
    if pooling == "last_real":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask_from_lengths(lengths, hidden.shape[1]).to(hidden.dtype)[..., None]  # (B, T, 1)
        return (hidden * mask).sum(1) / lengths[:, None].to(hidden.dtype)
    raise ValueError(f"unknown pooling {pooling!r}")


def default_head_bias(arch: str) -> bool:
    """The book's biased head for GPT-2; none for Llama (as `LlamaForSequenceClassification`, see export/hf.py)."""
    return arch == "gpt2"


def trainable_start(trainable: Trainable, n_layers: int) -> int:
    """Index of the first block that trains: everything before it is the frozen prefix."""
    return {"head": n_layers, "last_block": n_layers - 1, "last_two_blocks": max(n_layers - 2, 0),
            "all": 0, "lora": 0, "ia3": 0, "prefix": 0}[trainable]


class Classifier(nn.Module):
    """A decoder backbone (`GPTModel` / `LlamaModel`) whose `out_head` is replaced by Linear(emb_dim, num_classes).

    Args:
        backbone: the pretrained model; its vocabulary head is dropped (for tied models this unties it).
        num_classes: number of labels.
        pooling: see `pool`.
        trainable: head | last_block | last_two_blocks | all | lora (see `apply_trainable`).
        seed: seeds the new head's init (the book: torch.manual_seed(123) before the swap).
        head_bias: None = the book's biased head for GPT-2, none for Llama, like `transformers`'
            LlamaForSequenceClassification: RMSNorm has no shift that could absorb a bias at export (export.py).
    """

    def __init__(self, backbone: Decoder, num_classes: int, pooling: Pooling = "last_real",
                 trainable: Trainable = "last_block", seed: int = 123, head_bias: bool | None = None) -> None:
        super().__init__()
        self.backbone: Decoder = backbone
        self.pooling, self.trainable = pooling, trainable
        cfg = backbone.cfg
        self.head_bias = default_head_bias(cfg.arch) if head_bias is None else head_bias
        torch.manual_seed(seed)
        backbone.out_head = nn.Linear(cfg.emb_dim, num_classes, bias=self.head_bias,
                                      dtype=next(backbone.parameters()).dtype)
        self.start = trainable_start(trainable, cfg.n_layers)

    @property
    def cfg(self) -> ModelConfig:
        return self.backbone.cfg

    def prefix(self, input_ids: torch.Tensor | None, hidden: torch.Tensor | None = None,
               begin: int = 0) -> torch.Tensor:
        """(B, T) ids -> (B, T, D) hidden states after the frozen blocks; or continue from `hidden`, the output of
        the first `begin` blocks (a shallower cached prefix)."""
        if hidden is None:
            assert input_ids is not None, "prefix needs input_ids or hidden"
            hidden = self.backbone.embed(input_ids)
        x = hidden
        for block in self.backbone.trf_blocks[begin : self.start]:
            x = block(x)
        return x

    def suffix(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) prefix output -> (B, num_classes) logits."""
        return self.backbone.out_head(self.pooled(hidden, lengths))

    def pooled(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) prefix output -> (B, D): the normalised vector the head reads (drift monitoring compares
        these)."""
        for block in self.backbone.trf_blocks[self.start :]:
            hidden = block(hidden)
        if self.pooling == "mean":
            return pool(self.backbone.final_norm(hidden), lengths, "mean")
        # the norm is per position: pool first, normalise one vector per message
        return self.backbone.final_norm(pool(hidden, lengths, self.pooling))

    def embed(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B,) lengths -> (B, D) the pooled, normalised vectors."""
        return self.pooled(self.prefix(input_ids), lengths)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids and (B,) lengths -> (B, num_classes) logits."""
        return self.suffix(self.prefix(input_ids), lengths)

    def forward_pooled(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B,) lengths -> (B, num_classes + D): the logits and the pooled vector they were read
        from, in one pass (the memory of corrections compares the vectors)."""
        pooled = self.pooled(self.prefix(input_ids), lengths)
        return torch.cat([self.backbone.out_head(pooled), pooled], dim=1)

    def frozen_features(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B,) lengths -> (B, D): the frozen layers' output averaged over real tokens. The fine-tuning
        never changed these layers, so the features carry no trace of the training labels (`spamtune audit`)."""
        return pool(self.prefix(input_ids), lengths, "mean")


class CachedSuffix(nn.Module):
    """The trainable part of a `Classifier` as a module of its own: (B, T, D) cached prefix output + (B,) lengths
    -> logits. Training on the prefix cache calls this through `__call__` (so hooks and DistributedDataParallel
    see the forward), and its parameters are the classifier's own."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classifier.suffix(hidden, lengths)


def apply_trainable(classifier: Classifier, lora_rank: int = 16, lora_alpha: int = 16) -> nn.Module:
    """Freeze everything, then unfreeze per `classifier.trainable` (book §6.5: last block + final norm + head).

    `lora` and `ia3` wrap the classifier with peft (LoRA: adapters on every attention and MLP projection; IA³:
    scales of keys, values and the MLP's down projection), the head in `modules_to_save` (trained and saved in
    full). Returns the module to train (the peft wrapper for an adapter).
    """
    bb = classifier.backbone
    for p in classifier.parameters():
        p.requires_grad = False
    for p in bb.out_head.parameters():
        p.requires_grad = True
    if classifier.trainable in ("lora", "ia3"):
        import re

        from peft import IA3Config, LoraConfig, get_peft_model

        def targets(names: list[str]) -> str:
            # a full-path regex: GPT-2's MLP linears are named `layers.0`/`layers.2`; a bare "0" would match blocks
            return r".*trf_blocks\.\d+\.(" + "|".join(map(re.escape, names)) + ")"

        if classifier.trainable == "lora":
            inner = sorted(name for name, m in bb.trf_blocks[0].named_modules() if isinstance(m, nn.Linear))
            config: Any = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=0.0,
                                     target_modules=targets(inner), modules_to_save=["out_head"])
        else:  # IA³ (Liu et al. 2022): learned scales of the keys, the values and the MLP's down projection input
            down = "ff.layers.2" if classifier.cfg.arch == "gpt2" else "ff.fc3"
            config = IA3Config(target_modules=targets(["att.W_key", "att.W_value", down]),
                               feedforward_modules=targets([down]), modules_to_save=["out_head"])
        return get_peft_model(classifier, config)
    if classifier.trainable == "prefix":
        raise ConfigError("--trainable prefix needs --backend hf")
    if classifier.trainable == "all":
        for p in classifier.parameters():
            p.requires_grad = True
        return classifier
    if classifier.trainable != "head":
        for block in bb.trf_blocks[classifier.start :]:
            for p in block.parameters():
                p.requires_grad = True
        for p in bb.final_norm.parameters():
            p.requires_grad = True
    return classifier


def prefix_is_cacheable(classifier: Classifier, padding: Padding) -> bool:
    """The frozen prefix's output can be computed once per message and reused across epochs when it is frozen
    (not all, not an adapter), deterministic (no dropout) and independent of batch composition (pooling `last`
    with dynamic padding reads a pad position whose value depends on the batch's width)."""
    return (classifier.trainable not in ("all", *ADAPTERS) and classifier.cfg.drop_rate == 0.0
            and not (classifier.pooling == "last" and padding == "dynamic"))


@torch.inference_mode()
def batched_logits(model: nn.Module, encoded: list[list[int]], pad_id: int, batch_size: int = 16,
                   pad_to: int | None = None, progress: bool = False, desc: str = "classifying",
                   method: str = "forward") -> np.ndarray:
    """(N, C) float32 logits of a (B, T) ids + (B,) lengths -> logits model, in input order, from batches of
    similar length (batching.length_batches: little padding; a message's logits do not depend on its batch mates).
    `pad_to`: pad every batch to this width (the book's `last` pooling reads a pad position at the training
    width). `method`: another method with the same signature (a Classifier's "embed" gives the pooled vectors)."""
    from tqdm.auto import tqdm

    device = next(model.parameters(), torch.empty(0)).device  # an ONNX Runtime predictor has none: the CPU
    pass_cost = PASS_COST_TOKENS["cpu" if device.type == "cpu" else "other"]
    out: np.ndarray | None = None
    batches = length_batches([len(ids) for ids in encoded], batch_size, pass_cost, pad_to)
    for rows in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        ids, lengths = pad_ids([encoded[i] for i in rows], pad_id, pad_to)
        call = model if method == "forward" else getattr(model, method)
        logits = call(ids.to(device), lengths.to(device)).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(encoded), logits.shape[1]), dtype=np.float32)
        out[rows] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
