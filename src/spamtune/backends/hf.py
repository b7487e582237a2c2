"""The Hugging Face backend (`--backend hf`): `AutoModelForSequenceClassification` as the model; spamtune's data,
batches, training loop, metrics and run directory around it.

The model keeps `transformers`' own head and pooling: decoders (`LlamaForSequenceClassification`,
`GPT2ForSequenceClassification`) read the last non-pad token, found through `config.pad_token_id`; encoders (BERT,
MiniLM) the [CLS] token through their pooler. It serves every task of tasks.py through `problem_type`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spamtune.backends import BuiltModel, NewModel, model_spec
from spamtune.batching import attention_mask_from_lengths
from spamtune.config import ADAPTERS, DType, Trainable, TrainArgs
from spamtune.data.labels import LabelSet
from spamtune.errors import ConfigError, ModelSourceError
from spamtune.runs import LoraSpec, RunConfig
from spamtune.tasks import task_for
from spamtune.weights.sources import embedded_gguf_path, minilm_path

log = logging.getLogger(__name__)

FINAL_MODULES = ("norm", "ln_f", "final_layer_norm", "pooler")  # after the last block; trained with it
PREFIX_TOKENS = 20  # prefix tuning: virtual tokens per layer (peft's examples use 10-30)


def label_kwargs(label_set: LabelSet) -> dict[str, Any]:
    """A label set as the num_labels / id2label / label2id of a transformers config (int ids)."""
    return {"num_labels": len(label_set), "id2label": label_set.id2label, "label2id": label_set.label2id}


def require_transformers() -> None:
    if importlib.util.find_spec("transformers") is None:
        raise ModelSourceError("the Hugging Face backend and export need transformers: pip install 'spamtune[hf]'")


def resolve_hf(spec: str) -> tuple[str, dict[str, Any]]:
    """A model spec -> (`from_pretrained` path or Hub id, extra kwargs such as `gguf_file`)."""
    if spec == "smollm2-135m":
        spec = str(embedded_gguf_path())
    elif spec == "all-minilm-l6-v2":
        return str(minilm_path()), {}
    if spec.endswith(".gguf"):
        p = Path(spec)
        if not p.is_file():
            raise ModelSourceError(f"no such file: {spec}")
        return str(p.parent), {"gguf_file": p.name}
    return spec, {}


class TransformersTokenizer:
    """A `transformers` tokenizer with spamtune's interface (encode, encode_batch, pad_id): the model's own
    special tokens added around the text ([CLS]/[SEP] for encoders), no padding (the batches pad). Loaded with
    `split_special_tokens=True`: "[SEP]" or "<|endoftext|>" inside a message is plain text."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.pad_id = tok.pad_token_id
        self.special_tokens = {t.content: i for i, t in tok.added_tokens_decoder.items() if t.special}

    def encode(self, text: str) -> list[int]:
        return self.tok(text)["input_ids"]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts)["input_ids"] if texts else []

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids))

    def special_id(self, token: str) -> int | None:
        return self.special_tokens.get(token)


class HFClassifier(nn.Module):
    """(B, T) right-padded ids + (B,) lengths -> logits, like `classifier.Classifier`; `model` is the
    (possibly peft-wrapped) AutoModelForSequenceClassification."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = attention_mask_from_lengths(lengths, input_ids.shape[1]).long()
        return self.model(input_ids=input_ids, attention_mask=mask).logits


def load_hf(spec: str, label_set: LabelSet, dtype: DType = "fp32", seed: int = 123,
            allow_download: bool = True) -> tuple[Any, TransformersTokenizer, list[str]]:
    """`AutoModelForSequenceClassification.from_pretrained` with the run's labels and task.

    Returns (model, tokenizer, head module names: the ones `from_pretrained` had to initialise).
    """
    require_transformers()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path, kw = resolve_hf(spec)
    kw["local_files_only"] = not allow_download
    hf_logging.set_verbosity_error()  # the "newly initialized: score.weight" notice is the point of the exercise
    try:
        tok = AutoTokenizer.from_pretrained(path, **kw, split_special_tokens=True)
        torch.manual_seed(seed)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, **kw, **label_kwargs(label_set), problem_type=task_for(label_set).problem_type,
            dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[dtype], output_loading_info=True)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"cannot load {spec!r} with transformers: {str(e).splitlines()[0]}") from None
    if tok.pad_token is None:  # decoders ship none; batches > 1 need one, and the model must know its id
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model.config.pad_token_id = tok.pad_token_id
    head = sorted({k.rsplit(".", 1)[0].split(".")[0] for k in info["missing_keys"]})
    if not head:
        raise ModelSourceError(f"{spec!r} already has a classification head; spamtune trains a new one")
    return model, TransformersTokenizer(tok), head


def layer_list(model: Any) -> nn.ModuleList:  # model: a transformers PreTrainedModel
    """The transformer blocks: the longest ModuleList of the base model."""
    lists = [m for m in model.base_model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ModelSourceError("cannot find the transformer blocks of this model")
    return max(lists, key=len)


def check_prefix_tuning(model: Any) -> None:
    """peft feeds prefix tuning's virtual tokens as `past_key_values`; transformers 5.24 renamed that argument
    (`cache`), which peft 0.21 does not know yet: refuse before training rather than fail in the first step."""
    import inspect

    import peft
    import transformers

    takes = [name for m in (model, model.base_model) for name in inspect.signature(m.forward).parameters]
    if "past_key_values" not in takes:
        raise ConfigError(f"--trainable prefix: peft {peft.__version__} passes prefixes as past_key_values, which "
                          f"transformers {transformers.__version__}'s {type(model).__name__} no longer takes; use "
                          "--trainable lora or ia3, or install transformers<5.24 for prefix tuning")


def apply_hf_trainable(model: Any, head: list[str], trainable: Trainable, lora_rank: int = 16,
                       lora_alpha: int = 16) -> nn.Module:
    """spamtune's scopes on HF modules: head (`score`/`classifier`), last_block(s) + final norm/pooler, all,
    lora (peft on every linear layer), ia3 (peft's per-model targets) or prefix (prefix tuning, PREFIX_TOKENS
    virtual tokens per layer), the head in `modules_to_save`. Returns the module to train."""
    for p in model.parameters():
        p.requires_grad = False
    for name in head:
        for p in model.get_submodule(name).parameters():
            p.requires_grad = True
    if trainable == "prefix":
        check_prefix_tuning(model)
    if trainable in ADAPTERS:
        from peft import IA3Config, LoraConfig, PrefixTuningConfig, TaskType, get_peft_model

        config: Any = {
            "lora": lambda: LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_rank, lora_alpha=lora_alpha,
                                       lora_dropout=0.0, target_modules="all-linear", modules_to_save=head),
            "ia3": lambda: IA3Config(task_type=TaskType.SEQ_CLS, modules_to_save=head),  # peft's per-model targets
            "prefix": lambda: PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=PREFIX_TOKENS),
        }[trainable]()
        return get_peft_model(model, config)
    if trainable == "all":
        for p in model.parameters():
            p.requires_grad = True
    elif trainable in ("last_block", "last_two_blocks"):
        blocks = layer_list(model)[-(1 if trainable == "last_block" else 2) :]
        finals = [m for n, m in model.base_model.named_children() if n in FINAL_MODULES]
        for m in [*blocks, *finals]:
            for p in m.parameters():
                p.requires_grad = True
    elif trainable != "head":
        raise ConfigError(f"--trainable {trainable} is not available with --backend hf")
    return model


def build_new(args: TrainArgs, label_set: LabelSet) -> NewModel:
    """`AutoModelForSequenceClassification` with a new head for `label_set`, and the scope."""
    model, tok, head = load_hf(args.model, label_set, args.dtype, args.seed)
    built = _assemble(model, head, args.trainable, args.lora_rank, args.lora_alpha, tok)
    manifest = {"backend": "hf", "model": model_spec(args, False), "pooling": "last_real", "weights": "trainable",
                "tokenizer": "transformers", "head": head, "dtype": args.dtype}
    context = getattr(model.config, "max_position_embeddings", None) or tok.tok.model_max_length
    return NewModel(built, manifest, context)


def build(run_config: RunConfig, label_set: LabelSet, allow_download: bool = False) -> BuiltModel:
    """A run's model before its trained tensors are loaded."""
    model, tok, head = load_hf(run_config.model, label_set, run_config.dtype, run_config.seed, allow_download)
    lora = run_config.lora or LoraSpec()
    return _assemble(model, head, run_config.trainable, lora.rank, lora.alpha, tok)


def _assemble(model: Any, head: list[str], trainable: Trainable, lora_rank: int, lora_alpha: int,
              tok: TransformersTokenizer) -> BuiltModel:
    """The transformers model with its scope, the same for a new run and a run rebuilt from its manifest."""
    module = apply_hf_trainable(model, head, trainable, lora_rank, lora_alpha)
    classifier = HFClassifier(module)
    return BuiltModel(predictor=classifier, classifier=classifier, module=module, tokenizer=tok)
