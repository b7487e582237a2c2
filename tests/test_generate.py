"""Greedy generation and the zero-shot baseline."""

import torch
from torch import nn

from spamtune.cli import main
from spamtune.inference.generate import generate_text_simple, zero_shot
from spamtune.tokenizers import load_tokenizer


class PositionParity(nn.Module):
    """Prefers " yes" at even positions and " no" at odd ones: the verdict reveals which position was read."""

    def __init__(self, yes: int, no: int, vocab: int) -> None:
        super().__init__()
        self.yes, self.no, self.vocab = yes, no, vocab

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, t = ids.shape
        logits = torch.zeros(b, t, self.vocab)
        even = torch.arange(t) % 2 == 0
        logits[:, even, self.yes] = 1.0
        logits[:, ~even, self.no] = 1.0
        return logits


def test_zero_shot_reads_each_prompts_last_real_token():
    tok = load_tokenizer("gpt2")
    model = PositionParity(tok.encode(" yes")[0], tok.encode(" no")[0], tok.vocab_size)
    texts = ["short", "a somewhat longer message here", "mid length text", "x", "another one of these"]
    from spamtune.inference.generate import zero_shot_ids

    lengths = [len(zero_shot_ids(tok, t, chat=False)) for t in texts]
    labels = [int((n - 1) % 2 == 0) for n in lengths]  # what reading the last real token must give
    assert 0 < sum(labels) < len(labels)  # both verdicts occur, so a wrong position would be caught
    r = zero_shot(model, tok, texts, labels, context_length=1024, batch_size=8)
    assert r.accuracy == 1.0 and r.predicted_spam == sum(labels) and not r.chat


def test_generate_simple_is_greedy():
    class Next(nn.Module):  # always predicts token (last + 1)
        def forward(self, ids):
            logits = torch.zeros(*ids.shape, 20)
            logits.scatter_(2, ((ids + 1) % 20)[..., None], 1.0)
            return logits

    out = generate_text_simple(Next(), torch.tensor([[3, 4]]), max_new_tokens=4, context_size=8)
    assert out.tolist() == [[3, 4, 5, 6, 7, 8]]
    out = generate_text_simple(Next(), torch.tensor([[3]]), max_new_tokens=10, context_size=8, eos_id=6)
    assert out.tolist() == [[3, 4, 5, 6]]  # stops at eos


def test_generate_and_zero_shot_cli(tiny_gpt2_dir, data_dir, capsys):
    assert main(["generate", "--model", str(tiny_gpt2_dir), "Hello there", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("Hello there")
    assert main(["zero-shot", "--data-dir", str(data_dir), "--model", str(tiny_gpt2_dir), "--limit", "12"]) == 0
    out = capsys.readouterr().out
    assert "12 messages, plain prompt" in out and "accuracy" in out
