"""Sanity checks the book runs before fine-tuning: greedy generation (ch. 4/5) and a zero-shot spam prompt (ch. 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from spamtune.batching import pad_ids
from spamtune.tokenizers import Tokenizer

ZERO_SHOT_PROMPT = "Is the following text 'spam'? Answer with 'yes' or 'no': '{text}'"


@torch.no_grad()
def generate_text_simple(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int,
                         eos_id: int | None = None) -> torch.Tensor:
    """Greedy decoding (the book's `generate_text_simple`): append the argmax token `max_new_tokens` times."""
    for _ in range(max_new_tokens):
        logits = model(idx[:, -context_size:])[:, -1, :]  # (B, vocab) at the last position
        idx_next = logits.argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, idx_next], dim=1)
        if eos_id is not None and bool((idx_next == eos_id).all()):
            break
    return idx


def is_chat_tokenizer(tok: Tokenizer) -> bool:
    """Instruct models with ChatML (SmolLM2-Instruct) have `<|im_start|>` and `<|im_end|>` as special tokens."""
    return tok.special_id("<|im_start|>") is not None and tok.special_id("<|im_end|>") is not None


def zero_shot_ids(tok: Tokenizer, text: str, chat: bool) -> list[int]:
    """The zero-shot prompt's token ids. The chat template's control tokens come from `special_id`; the message
    is always plain text, so it cannot close the user turn itself."""
    prompt = ZERO_SHOT_PROMPT.format(text=text)
    if not chat:
        return tok.encode(prompt + "\nAnswer:")
    start, end = tok.special_id("<|im_start|>"), tok.special_id("<|im_end|>")
    assert start is not None and end is not None
    # SmolLM2-Instruct's chat template, without the default system turn
    return [start, *tok.encode(f"user\n{prompt}"), end, *tok.encode("\n"), start, *tok.encode("assistant\n")]


@dataclass
class ZeroShotResult:
    accuracy: float
    n: int
    predicted_spam: int  # how many it called spam (a model that always says one thing scores ~50 %)
    chat: bool


@torch.no_grad()
def zero_shot(model: nn.Module, tok: Tokenizer, texts: Sequence[str], labels: Sequence[int], context_length: int,
              batch_size: int = 8) -> ZeroShotResult:
    """Ask the model whether each text is spam; read its answer as P(yes) > P(no) at the first answer token.

    Comparing the two answer tokens' logits (both casings, with and without a leading space) scores the model's
    preference even when greedy decoding would ramble.
    """
    chat = is_chat_tokenizer(tok)
    variants = ("yes", "Yes", " yes", " Yes"), ("no", "No", " no", " No")
    yes_ids, no_ids = ([one[0] for v in group if len(one := tok.encode(v)) == 1] for group in variants)
    encoded = [zero_shot_ids(tok, t, chat)[-context_length:] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # length-sorted: little padding
    preds = [0] * len(encoded)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, lengths = pad_ids([encoded[i] for i in rows], tok.pad_id)
        device = next(model.parameters(), torch.empty(0)).device
        # (b, vocab) at each prompt's last token
        at_answer = model(ids.to(device))[torch.arange(len(rows)), lengths.to(device) - 1]
        spam = at_answer[:, yes_ids].max(-1).values > at_answer[:, no_ids].max(-1).values
        for r, i in enumerate(rows):
            preds[i] = int(spam[r])
    correct = sum(int(p == y) for p, y in zip(preds, labels))
    return ZeroShotResult(correct / max(len(preds), 1), len(preds), sum(preds), chat)
