"""What spamtune reads from a GGUF file (config, tokenizer, dequantized tensors) is kept in the cache directory and
read back from there: the kept copy must be the same, bit for bit and id for id, and a damaged one is rebuilt."""

import pytest
import torch

from spamtune.data import parse_sms_collection
from spamtune.tokenizers import load_tokenizer
from spamtune.weights import load_backbone
from tests.helpers import tiny_gguf


def _no_gguf_reading(monkeypatch) -> None:
    import spamtune.tokenizers
    import spamtune.weights.gguf

    def refuse(path):
        raise AssertionError(f"{path} was parsed although its contents are kept")

    for module in (spamtune.tokenizers, spamtune.weights.gguf):
        monkeypatch.setattr(module, "open_gguf", refuse)


@pytest.mark.real_model
def test_the_embedded_gguf_is_read_once_then_kept_exactly(tmp_path, monkeypatch, sms_path):
    from spamtune.weights.gguf import open_gguf

    monkeypatch.setenv("SPAMTUNE_CACHE", str(tmp_path))
    load_tokenizer.cache_clear()
    read_tok, read = load_tokenizer("smollm2-135m"), load_backbone("smollm2-135m")  # from the GGUF file
    entry, = (tmp_path / "gguf").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["config.json", "tensors.safetensors", "tokenizer.json"]

    with monkeypatch.context() as m:
        _no_gguf_reading(m)
        load_tokenizer.cache_clear()
        kept_tok, kept = load_tokenizer("smollm2-135m"), load_backbone("smollm2-135m")  # from the cache only
    assert kept.cfg == read.cfg and kept.cfg.name == "smollm2-135m"
    read_sd, kept_sd = read.model.state_dict(), kept.model.state_dict()
    assert read_sd.keys() == kept_sd.keys()
    assert all(torch.equal(read_sd[k], kept_sd[k]) for k in read_sd)
    texts = list(parse_sms_collection(sms_path.read_bytes())["Text"])
    texts += ["<|im_start|>user\nhi<|im_end|>", "1234567 89", "  leading spaces", "tabs\tand\nnewlines", "😀 ünï"]
    assert kept_tok.encode_batch(texts) == read_tok.encode_batch(texts)
    assert (kept_tok.pad_id, kept_tok.eos_id, kept_tok.vocab_size, kept_tok.special_tokens) == \
        (read_tok.pad_id, read_tok.eos_id, read_tok.vocab_size, read_tok.special_tokens)

    # a damaged kept file is a miss: read again from the GGUF file and replaced
    tensors = entry / "tensors.safetensors"
    size = tensors.stat().st_size
    with open(tensors, "r+b") as f:
        f.truncate(size // 2)
    (entry / "tokenizer.json").write_text("{not json")
    open_gguf.cache_clear()
    load_tokenizer.cache_clear()
    again, again_tok = load_backbone("smollm2-135m"), load_tokenizer("smollm2-135m")
    assert tensors.stat().st_size == size
    assert torch.equal(again.model.tok_emb.weight, read.model.tok_emb.weight)
    assert again_tok.encode_batch(texts[:50]) == read_tok.encode_batch(texts[:50])
    load_tokenizer.cache_clear()


def test_a_rewritten_gguf_file_is_read_again(tmp_path, monkeypatch):
    """The key is the file's path, inode, size and time: the same path with new contents is a new entry."""
    from spamtune.weights.gguf import open_gguf

    monkeypatch.setenv("SPAMTUNE_CACHE", str(tmp_path / "cache"))
    path = tiny_gguf(tmp_path / "tiny.gguf", "smollm")
    load_tokenizer.cache_clear()
    assert load_tokenizer(str(path)).encode("ab") == [2]
    tiny_gguf(path, "smollm", tokens=("a", "b", "x", "ab"))  # the same name, another vocabulary
    open_gguf.cache_clear()
    load_tokenizer.cache_clear()
    assert load_tokenizer(str(path)).encode("ab") == [3]
    assert len(list((tmp_path / "cache" / "gguf").iterdir())) == 2
    load_tokenizer.cache_clear()
