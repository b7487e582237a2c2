"""Key maps between checkpoint tensor names and our modules' names (`models/gpt2.py`, `models/llama.py`).

Public: the loaders (convert.py) read them one way, the exporters (export/hf.py) the other, so a renamed module
attribute breaks both in one place.
"""

from __future__ import annotations

import re

# GPT-2, HF names inside transformer.h.N -> (our name inside trf_blocks.N, transpose). HF GPT-2 uses Conv1D, whose
# weight is (in, out): every projection is transposed. The fused c_attn (q, k, v) is split by the converter.
GPT2_BLOCK_MAP: dict[str, tuple[str, bool]] = {
    "ln_1.weight": ("norm1.scale", False), "ln_1.bias": ("norm1.shift", False),
    "attn.c_proj.weight": ("att.out_proj.weight", True), "attn.c_proj.bias": ("att.out_proj.bias", False),
    "ln_2.weight": ("norm2.scale", False), "ln_2.bias": ("norm2.shift", False),
    "mlp.c_fc.weight": ("ff.layers.0.weight", True), "mlp.c_fc.bias": ("ff.layers.0.bias", False),
    "mlp.c_proj.weight": ("ff.layers.2.weight", True), "mlp.c_proj.bias": ("ff.layers.2.bias", False),
}
GPT2_TOP_MAP: dict[str, str] = {"wte.weight": "tok_emb.weight", "wpe.weight": "pos_emb.weight",
                                "ln_f.weight": "final_norm.scale", "ln_f.bias": "final_norm.shift"}
# old checkpoints carry the causal-mask buffers; they are constants, not weights
GPT2_IGNORED = re.compile(r"h\.\d+\.attn\.(masked_)?bias$")

# Llama, HF `LlamaForCausalLM` names (same layouts as ours; only names change)
LLAMA_HF_BLOCK_MAP: dict[str, str] = {
    "input_layernorm.weight": "norm1.weight", "post_attention_layernorm.weight": "norm2.weight",
    "self_attn.q_proj.weight": "att.W_query.weight", "self_attn.k_proj.weight": "att.W_key.weight",
    "self_attn.v_proj.weight": "att.W_value.weight", "self_attn.o_proj.weight": "att.out_proj.weight",
    "mlp.gate_proj.weight": "ff.fc1.weight", "mlp.up_proj.weight": "ff.fc2.weight",
    "mlp.down_proj.weight": "ff.fc3.weight",
}
LLAMA_HF_TOP_MAP: dict[str, str] = {"model.embed_tokens.weight": "tok_emb.weight",
                                    "model.norm.weight": "final_norm.weight", "lm_head.weight": "out_head.weight"}

# Llama, llama.cpp's GGUF names (Q/K rows permuted for its RoPE layout: see convert.unpermute_rope)
LLAMA_GGUF_BLOCK_MAP: dict[str, str] = {
    "attn_norm.weight": "norm1.weight", "ffn_norm.weight": "norm2.weight",
    "attn_q.weight": "att.W_query.weight", "attn_k.weight": "att.W_key.weight",
    "attn_v.weight": "att.W_value.weight", "attn_output.weight": "att.out_proj.weight",
    "ffn_gate.weight": "ff.fc1.weight", "ffn_up.weight": "ff.fc2.weight", "ffn_down.weight": "ff.fc3.weight",
}
LLAMA_GGUF_TOP_MAP: dict[str, str] = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "final_norm.weight",
                                      "output.weight": "out_head.weight"}
