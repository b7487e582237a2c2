"""Parity with transformers: the converters and modules are right if random HF models give the same logits."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spamtune.config import GPT2_PRESETS, ModelConfig
from spamtune.errors import SpamtuneError
from spamtune.models import GPTModel, LlamaModel
from spamtune.weights import count_parameters, load_backbone
from spamtune.weights.convert import gguf_to_llama, hf_to_gpt2, unpermute_rope
from spamtune.weights.gguf import read_gguf_tensors

torch.manual_seed(0)
IDS = torch.randint(0, 100, (3, 11))
MASK = torch.tensor([[1] * 11, [1] * 7 + [0] * 4, [1] * 3 + [0] * 8])


def tiny_hf_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=100, n_positions=32, n_embd=48, n_layer=3, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg).eval()


def tiny_hf_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    cfg = LlamaConfig(vocab_size=100, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64, rope_theta=5000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def _assert_logits_close(ours, ref, mask=None):
    with torch.no_grad():
        for m in (None, mask):
            got = ours(IDS, attention_mask=m)
            want = ref(IDS, attention_mask=m).logits
            if m is not None:  # pad positions are garbage in both; compare the real ones
                got, want = got[m.bool()], want[m.bool()]
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gpt2_parity_save_pretrained(tmp_path):
    ref = tiny_hf_gpt2()
    ref.save_pretrained(tmp_path / "hf")
    bb = load_backbone(str(tmp_path / "hf"))
    assert isinstance(bb.model, GPTModel) and bb.tokenizer == "gpt2"
    _assert_logits_close(bb.model, ref, MASK)


def test_gpt2_parity_real_file_format(tmp_path):
    """The layout of openai-community/gpt2's model.safetensors: no `transformer.` prefix, no lm_head,
    with the old `attn.bias` causal-mask buffers."""
    ref = tiny_hf_gpt2()
    sd = {k.removeprefix("transformer."): v.contiguous() for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    for i in range(3):
        sd[f"h.{i}.attn.bias"] = torch.ones(1, 1, 32, 32).tril()
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(ref.config.to_dict()))
    _assert_logits_close(load_backbone(str(tmp_path)).model, ref, MASK)


def test_gpt2_padding_does_not_change_real_tokens():
    """Right padding + causal attention: a real token never sees a pad, with or without the mask."""
    torch.manual_seed(0)
    cfg = ModelConfig(arch="gpt2", vocab_size=100, context_length=32, emb_dim=48, n_layers=2, n_heads=4,
                      qkv_bias=True)
    model = GPTModel(cfg).eval()
    short = IDS[:1, :5]
    padded = torch.cat([short, torch.full((1, 6), 99)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(short), model(padded)[:, :5], rtol=1e-5, atol=1e-5)


def test_gpt2_converter_fails_loudly():
    ref = tiny_hf_gpt2()
    cfg = ModelConfig(arch="gpt2", vocab_size=100, context_length=32, emb_dim=48, n_layers=3, n_heads=4,
                      qkv_bias=True)
    sd = dict(ref.state_dict())
    sd["transformer.h.0.attn.c_weird.weight"] = torch.zeros(1)
    with pytest.raises(SpamtuneError, match="c_weird"):
        hf_to_gpt2(sd, cfg)
    from spamtune.weights.load import load_converted

    bad = hf_to_gpt2(dict(ref.state_dict()), cfg)
    bad["trf_blocks.1.ff.layers.0.weight"] = torch.zeros(5, 5)
    with pytest.raises(SpamtuneError, match=r"trf_blocks\.1\.ff\.layers\.0\.weight: shape"):
        load_converted(GPTModel(cfg), bad)
    del bad["trf_blocks.1.ff.layers.0.weight"]
    with pytest.raises(SpamtuneError, match="missing"):
        load_converted(GPTModel(cfg), bad)


def test_gpt2_presets_parameter_counts():
    """The table's sizes: 124M/355M/774M/1558M with the output head tied (OpenAI's counts)."""
    counts = {}
    for name, cfg in GPT2_PRESETS.items():
        with torch.device("meta"):
            model = GPTModel(cfg)
        counts[name] = count_parameters(model) - model.out_head.weight.numel()
    assert counts == {"gpt2-small": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
                      "gpt2-xl": 1_557_611_200}


def test_a_meta_build_draws_nothing_and_loads_no_compiler():
    """weights/load.py builds on the meta device and then loads every tensor: the build must not run torch's Python
    meta references (their first use imports torch._dynamo, seconds of each process start), and a build on a real
    device still draws its random init from the seed (the golden values pin what it draws)."""
    code = ("import sys, torch\n"
            "from spamtune.config import GPT2_PRESETS\n"
            "from spamtune.weights.load import resolve_config\n"
            "from spamtune.models import build_model\n"
            "with torch.device('meta'):\n"
            "    models = [build_model(GPT2_PRESETS['gpt2-small']), build_model(resolve_config('smollm2-135m')[0])]\n"
            "assert all(t.is_meta for m in models for t in [*m.parameters(), *m.buffers()])\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"], out.stderr
    cfg = ModelConfig(arch="llama", vocab_size=100, context_length=64, emb_dim=48, n_heads=6, n_kv_heads=2,
                      n_layers=1, hidden_dim=96)
    torch.manual_seed(3)
    model = LlamaModel(cfg)
    assert 0.015 < model.tok_emb.weight.std().item() < 0.025  # N(0, 0.02), not the meta build's empty tensor
    rope = model.trf_blocks[0].att.rope
    torch.testing.assert_close(rope.cos[5, 0], torch.tensor(5.0).cos())  # position 5, frequency 1: cos(5)


def test_gpt2_download_verifies_sha256(tmp_path, monkeypatch):
    """The real download path with the network replaced by a local file: a hash mismatch is refused."""
    import huggingface_hub

    from spamtune.weights.sources import download_gpt2

    fake = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(2)}, fake)
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append((a, k)) or str(fake))
    with pytest.raises(SpamtuneError, match="does not match openai-community/gpt2@607a30d"):
        download_gpt2("gpt2-small")
    assert calls[0][0] == ("openai-community/gpt2", "model.safetensors")
    assert calls[0][1]["revision"] == "607a30d783dfa663caf39e06633721c8d4cfcd7e"


def test_llama_parity_save_pretrained(tmp_path):
    ref = tiny_hf_llama()
    ref.save_pretrained(tmp_path / "hf")
    # a Llama directory needs a tokenizer.json; any valid one will do for the weights
    from tokenizers import Tokenizer, models

    Tokenizer(models.BPE()).save(str(tmp_path / "hf" / "tokenizer.json"))
    bb = load_backbone(str(tmp_path / "hf"))
    assert isinstance(bb.model, LlamaModel) and bb.cfg.kv_groups == 3 and bb.cfg.rope_base == 5000.0
    assert bb.model.out_head.weight is bb.model.tok_emb.weight
    _assert_logits_close(bb.model, ref, MASK)


def _permute_like_llama_cpp(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf.py's LlamaModel.permute, written independently of our inverse."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpp_permutation():
    w = torch.randn(6 * 8, 5)
    assert torch.equal(unpermute_rope(_permute_like_llama_cpp(w, 6), 6), w)
    assert not torch.equal(_permute_like_llama_cpp(w, 6), w)


def test_llama_parity_through_gguf_file(tmp_path):
    """Write a tiny HF Llama as a GGUF the way llama.cpp's converter does (names, permuted Q/K, metadata), then
    load it with our reader: same logits as the HF model proves the un-permutation and the key map."""
    import gguf

    ref = tiny_hf_llama()
    c = ref.config
    w = gguf.GGUFWriter(str(tmp_path / "tiny.gguf"), "llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(5000.0)
    w.add_vocab_size(c.vocab_size)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    block = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for key, t in ref.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied
        if key in names:
            name = names[key]
        else:
            _, _, i, *rest = key.split(".")
            name = f"blk.{i}.{block['.'.join(rest[:-1])]}.weight"
        if name.endswith("attn_q.weight"):
            t = _permute_like_llama_cpp(t, c.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            t = _permute_like_llama_cpp(t, c.num_key_value_heads)
        w.add_tensor(name, t.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    from spamtune.weights.gguf import llama_config_from_gguf

    cfg = llama_config_from_gguf(tmp_path / "tiny.gguf")
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.tie_embeddings, cfg.rope_base) == (6, 2, True, 5000.0)
    model = LlamaModel(cfg)
    from spamtune.weights.load import load_converted

    load_converted(model, gguf_to_llama(read_gguf_tensors(tmp_path / "tiny.gguf"), cfg))
    _assert_logits_close(model.eval(), ref, MASK)


@pytest.mark.real_model
def test_smollm2_parity_with_transformers_gguf():
    """The embedded SmolLM2-135M through our GGUF reader vs transformers loading the same file."""
    from transformers import AutoModelForCausalLM

    from spamtune.tokenizers import load_tokenizer
    from spamtune.weights.sources import embedded_gguf_path

    bb = load_backbone("smollm2-135m")
    assert count_parameters(bb.model) == 134_515_008
    assert (bb.cfg.n_layers, bb.cfg.emb_dim, bb.cfg.n_heads, bb.cfg.n_kv_heads) == (30, 576, 9, 3)
    path = embedded_gguf_path()
    ref = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tok = load_tokenizer(bb.tokenizer)
    prompts = ["The capital of France is", "WINNER!! You have been selected to receive a £900 prize reward!",
               "Ok lar... Joking wif u oni..."]
    encoded = [tok.encode(p) for p in prompts]
    width = max(map(len, encoded))
    ids = torch.tensor([e + [tok.pad_id] * (width - len(e)) for e in encoded])
    mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded])
    with torch.no_grad():
        ours, want = bb.model(ids, attention_mask=mask), ref(ids, attention_mask=mask).logits
    torch.testing.assert_close(ours[mask.bool()], want[mask.bool()], rtol=1e-4, atol=1e-4)
    assert tok.decode([int(ours[0, len(encoded[0]) - 1].argmax())]) == " Paris"
