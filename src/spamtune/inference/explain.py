"""Which words pushed a message towards its label, by one of two captum methods over the words of the text the
tokenizer read (runs of non-space characters):

- occlusion (the default): captum's `FeatureAblation` with one feature per word: each word's tokens replaced by
  pad tokens, all words in one batched pass; a word's attribution is how much the label's log-odds fall without
  it. Costs one forward pass per word, no gradients, so it also explains an int8 or ONNX model.
- integrated_gradients: captum's `LayerIntegratedGradients` on the token embeddings (Sundararajan et al. 2017):
  the gradient of the label's log-odds integrated along a straight path from pad-token embeddings to the
  message's, summed over each token's dimensions and a word's tokens; the attributions sum to the log-odds'
  change from the baseline up to the integral's error. Costs `n_steps` forward and backward passes of the whole
  model.

Attributions are in log-odds (nats) of the label, log P / (1 - P) at the model check's temperature: a message the
model is sure of (P 0.9999) still shows which words carry it, where probabilities would all round to 0. Positive:
towards the label. benchmarks/explain.py measures both on the test spam: milliseconds per message and
faithfulness (removing a message's top-3 words lowers P(spam) more than removing 3 random words); the default
is the one that measured better here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
from torch import nn

from spamtune.classifier import pad_width
from spamtune.inference.pipeline import ExplanationUnavailable

if TYPE_CHECKING:
    from spamtune.inference.api import TextClassifier

WORD = re.compile(r"\S+")
EMBEDDING_NAMES = ("tok_emb", "embed_tokens", "wte", "word_embeddings")  # scratch, Llama/HF, GPT-2/HF, BERT-like


def token_embedding(module: nn.Module) -> nn.Embedding:
    """The token-embedding layer of a classifier (ours or a transformers model inside `HFClassifier`)."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Embedding) and name.rsplit(".", 1)[-1] in EMBEDDING_NAMES:
            return sub
    raise ExplanationUnavailable("this model has no token-embedding layer to attribute to (ONNX runtime?)")


def token_words(tokenizer, ids: list[int]) -> tuple[str, list[int | None]]:
    """The text the tokens spell, and for each token the index of the word it belongs to (None: whitespace only).
    Offsets come from decoding growing prefixes, so a character split over two byte-level tokens lands in the
    token that completes it."""
    ends = [len(tokenizer.decode(ids[: i + 1])) for i in range(len(ids))]
    text = tokenizer.decode(ids)
    spans = [m.span() for m in WORD.finditer(text)]
    owner: list[int | None] = []
    start = 0
    for end in ends:
        piece = range(start, max(end, start))
        word = next((w for w, (a, b) in enumerate(spans) if any(a <= c < b for c in piece)), None)
        owner.append(word)
        start = end
    return text, owner


METHODS = ("occlusion", "integrated_gradients")


class WordAttributor:
    """Word attributions for one classifier (see the module docstring).

    Args:
        temperature: the model check's: attributions are to the log-odds of its calibrated P(label).
        n_steps: integrated gradients' steps.
    """

    def __init__(self, clf: TextClassifier, temperature: float = 1.0, n_steps: int = 16,
                 method: str = "occlusion") -> None:
        if method not in METHODS:
            raise ValueError(f"unknown explanation method {method!r}")
        self.clf, self.temperature, self.n_steps, self.method = clf, temperature, n_steps, method
        if method == "integrated_gradients":
            if clf.quantize or not isinstance(clf.module, nn.Module) or not list(clf.module.parameters()):
                raise ExplanationUnavailable(f"the {clf.run.run_config.model} model here has no gradients "
                                             "(an ONNX runtime or int8 model): use occlusion")
            self.layer = token_embedding(clf.module)

    def describe(self) -> str:
        if self.method == "occlusion":
            return "word occlusion: how much the label's log-odds fall when the word's tokens are pads"
        return f"layer integrated gradients on the token embeddings, {self.n_steps} steps"

    def _forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, C) each label's log-odds: z_k - logsumexp of the other labels' z, z = logits / temperature."""
        z = self.clf.module(ids, lengths).float() / self.temperature
        others = z.unsqueeze(1).expand(-1, z.shape[1], -1).masked_fill(
            torch.eye(z.shape[1], dtype=torch.bool, device=z.device), float("-inf"))
        return z - torch.logsumexp(others, dim=-1)

    def _inputs(self, text: str) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """(1, T) ids as the model reads them (padded to the training width for the book's `last` pooling),
        (1,) length, and the ids."""
        clf = self.clf
        (ids,) = clf.encode([text])
        pad_to = pad_width(clf.run.run_config.pooling, clf.max_length) or len(ids)
        row = ids + [clf.tokenizer.pad_id] * (pad_to - len(ids))
        return torch.tensor([row], device=clf.device), torch.tensor([len(ids)], device=clf.device), ids

    def path_gap(self, text: str, target: int) -> float:
        """The target's log-odds for the message minus for the baseline: what the attributions sum to (integrated
        gradients' completeness), up to the integral's discretisation error."""
        x, lengths, _ = self._inputs(text)
        with torch.no_grad():
            both = self._forward(torch.cat([x, torch.full_like(x, self.clf.tokenizer.pad_id)]), lengths.repeat(2))
        return float(both[0, target] - both[1, target])

    def words(self, text: str, target: int) -> list[tuple[str, float]]:
        """(word, attribution towards label id `target`), largest first."""
        return sorted(self.attributions(text, target), key=lambda wa: -wa[1])

    def attributions(self, text: str, target: int) -> list[tuple[str, float]]:
        """(word, attribution towards label id `target`) for each word of the text the model read, in order."""
        clf = self.clf
        x, lengths, ids = self._inputs(text)
        spelled, owner = token_words(clf.tokenizer, ids)
        words = [m.group() for m in WORD.finditer(spelled)]
        if self.method == "occlusion":
            return list(zip(words, self._occlusion(x, lengths, owner, len(words), target)))
        from captum.attr import LayerIntegratedGradients

        baseline = torch.full_like(x, clf.tokenizer.pad_id)
        lig = LayerIntegratedGradients(self._forward, self.layer)
        with torch.enable_grad():
            attr = lig.attribute(x, baselines=baseline, additional_forward_args=(lengths,), target=target,
                                 n_steps=self.n_steps, internal_batch_size=self.n_steps)
        per_token = attr.float().sum(-1)[0, : len(ids)].tolist()
        totals = [0.0] * len(words)
        for a, w in zip(per_token, owner):
            if w is not None:
                totals[w] += a
        return list(zip(words, totals))

    @torch.no_grad()
    def _occlusion(self, x: torch.Tensor, lengths: torch.Tensor, owner: list[int | None], n_words: int,
                   target: int) -> list[float]:
        """captum's FeatureAblation with one feature per word (whitespace and padding in a group of their own,
        never ablated), the word's tokens replaced by pad tokens; every word in one batch."""
        from captum.attr import FeatureAblation

        mask = torch.full_like(x, n_words)  # the group no word is in
        for i, w in enumerate(owner):
            if w is not None:
                mask[0, i] = w
        attr = FeatureAblation(self._forward).attribute(
            x, baselines=self.clf.tokenizer.pad_id, additional_forward_args=(lengths,), target=target,
            feature_mask=mask, perturbations_per_eval=min(max(n_words + 1, 1), 64))
        per_word = [0.0] * n_words
        for i, w in enumerate(owner):  # every token of a word carries the word's attribution
            if w is not None:
                per_word[w] = float(attr[0, i])
        return per_word
