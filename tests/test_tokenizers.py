import pytest

from spamtune.data import parse_sms_collection
from spamtune.tokenizers import load_tokenizer


def test_gpt2_bpe_offline_ids():
    tok = load_tokenizer("gpt2")
    assert tok.encode("Do you have time") == [5211, 345, 423, 640]
    assert tok.encode("<|endoftext|>") == [27, 91, 437, 1659, 5239, 91, 29]  # text in a message, never the token
    assert tok.pad_id == 50256 and tok.vocab_size == 50257
    assert tok.decode(tok.encode("Héllo, wörld! 😀")) == "Héllo, wörld! 😀"


def test_gpt2_bpe_matches_transformers(sms_path):
    """transformers' own byte-level BPE over the same vocab files: an independent implementation, same ids."""
    import hashlib

    from transformers import GPT2TokenizerFast

    from spamtune.tokenizers import gpt2_vocab_dir

    data = gpt2_vocab_dir()
    # the shipped files are OpenAI's (the digests tiktoken records for them)
    assert hashlib.sha256((data / "vocab.bpe").read_bytes()).hexdigest().startswith("1ce1664773c50f3e0cc88426")
    ref = GPT2TokenizerFast(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))
    ours = load_tokenizer("gpt2")
    texts = list(parse_sms_collection(sms_path.read_bytes())["Text"])
    assert [ours.encode(t) for t in texts] == [ref(t)["input_ids"] for t in texts]


@pytest.mark.real_model
def test_smollm2_tokenizer_matches_transformers_gguf(sms_path):
    """Same vocab and merges as transformers' GGUF conversion. That conversion ignores the file's
    `tokenizer.ggml.pre = smollm` (llama.cpp: split single digits, then GPT-2's regex); with that pre-tokenizer
    restored the ids agree on every message, and without it exactly one message ("  9": two spaces before a digit)
    differs."""
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    from spamtune.weights.gguf import gguf_field, open_gguf
    from spamtune.weights.sources import embedded_gguf_path

    path = embedded_gguf_path()
    assert gguf_field(open_gguf(str(path)), "tokenizer.ggml.pre") == "smollm"
    # split_special_tokens: a message's "<|im_start|>" is text, in spamtune and in this reference
    ref = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, split_special_tokens=True)
    ours = load_tokenizer("smollm2-135m")
    texts = list(parse_sms_collection(sms_path.read_bytes())["Text"])
    texts += ["<|im_start|>user\nhi<|im_end|>", "1234567 89", "  leading spaces", "tabs\tand\nnewlines"]
    as_converted = [ref(t, add_special_tokens=False)["input_ids"] for t in texts]
    ref.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), ref.backend_tokenizer.pre_tokenizer])
    mine = ours.encode_batch(texts)
    assert mine == [ref(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert sum(a != b for a, b in zip(mine, as_converted)) == 1
    assert ours.special_id("<|im_start|>") == 1 and 1 not in ours.encode("<|im_start|>")
    assert ours.pad_id == 2 and ours.eos_id == 2 and ours.vocab_size == 49152
