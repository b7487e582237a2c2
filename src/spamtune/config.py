"""Configuration: the architecture (`ModelConfig`, with a table of known presets), run settings (`TrainArgs`),
and the defaults of the production loop: the service's limits (`ServeLimits`), what a retrain learns
(`CorrectionPolicy`) and when it is promoted (`PromotionPolicy`). The CLI reads its defaults from here.

Every choice is a `Literal` type; its values are the CLI's `choices` (cli/args.py reads the types) and the checks
in `__post_init__`, so a new value is added in one place.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from spamtune.errors import ConfigError

Arch = Literal["gpt2", "llama"]
Trainable = Literal["head", "last_block", "last_two_blocks", "all", "lora", "ia3", "prefix"]
ADAPTERS = ("lora", "ia3", "prefix")  # peft methods: the whole model runs every step
Pooling = Literal["last", "last_real", "first", "mean"]
Padding = Literal["longest_train", "dynamic", "context"]
Backend = Literal["scratch", "hf"]
Schedule = Literal["constant", "linear", "cosine"]
Stack = Literal["none", "ngrams"]
Cascade = Literal["none", "ngrams"]
DEFAULT_TARGET_FPR = 0.005  # the operating point's block threshold: this false-positive rate on held-out ham
DEFAULT_REVIEW_FPR = 0.02  # ... and its review threshold
# the cascade's held-out error budgets (decisions.pick_cascade_bands): on runs/demo's data 0.005 / 0.0005 kept the
# test MCC, the modern set's recall and ham blocked equal to the LLM's alone with 19 % of the test messages reaching
# it (benchmarks/cascade.py)
CASCADE_SPAM_ALLOWED = 0.005
CASCADE_HAM_BLOCKED = 0.0005
DType = Literal["fp32", "bf16"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Normalization = Literal["nfkc", "none"]


def choices(tp: Any) -> tuple[str, ...]:
    """The values of a `Literal` type, e.g. `choices(Pooling)`; () for any other type."""
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def check_type(value: Any, tp: Any, name: str) -> None:
    """A manifest value against its field's annotation (Literal, scalars, Optional, list[...], dict[...],
    dataclasses); a mismatch is a `ConfigError` naming the field."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        ok = value in choices(tp)
    elif origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                check_type(value, arm, name)
                return
            except ConfigError:
                continue
        ok = False
    elif origin is list:
        ok = isinstance(value, list)
        if ok:
            for v in value:
                check_type(v, args[0], name)
    elif origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        if ok:
            for v in value.values():
                check_type(v, args[1], name)
    elif tp is type(None):
        ok = value is None
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{name}: {value!r} is not a valid {getattr(tp, '__name__', tp)}")


def check_field_types(obj: Any) -> None:
    """Every field of a dataclass instance against its annotation: configs are read back from JSON files, where
    "12" or false can stand where a number belongs."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        check_type(getattr(obj, f.name), hints[f.name], f.name)


@dataclass
class ModelConfig:
    """Architecture of a decoder-only transformer: GPT-2 (learned positions, LayerNorm, GELU, MHA with qkv bias)
    or Llama (RoPE, RMSNorm, SwiGLU, grouped-query attention, usually tied embeddings)."""

    arch: Arch
    vocab_size: int
    context_length: int
    emb_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int = 0  # 0: same as n_heads (plain multi-head attention)
    hidden_dim: int = 0  # MLP width; 0: 4 * emb_dim (GPT-2)
    qkv_bias: bool = False
    drop_rate: float = 0.0  # the book uses 0.0 for fine-tuning; dropout >0 turns the frozen-prefix cache off
    norm_eps: float = 1e-5
    rope_base: float = 10_000.0
    tie_embeddings: bool = False
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.n_kv_heads in (0, None):  # derived; None as older configs and HF's num_key_value_heads write it
            self.n_kv_heads = self.n_heads
        if self.hidden_dim in (0, None):
            self.hidden_dim = 4 * self.emb_dim if isinstance(self.emb_dim, int) else 0
        check_field_types(self)
        sizes = ("vocab_size", "context_length", "emb_dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim")
        if bad := [name for name in sizes if getattr(self, name) < 1]:
            raise ConfigError(f"{', '.join(bad)} must be at least 1")
        if not (0.0 <= self.drop_rate < 1.0 and self.norm_eps > 0 and self.rope_base > 0):
            raise ConfigError("drop_rate must be in [0, 1), and norm_eps and rope_base positive")
        if self.emb_dim % self.n_heads:
            raise ConfigError(f"emb_dim {self.emb_dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if self.arch == "llama" and self.head_dim % 2:
            raise ConfigError("RoPE needs an even head_dim")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.emb_dim // self.n_heads

    @property
    def kv_groups(self) -> int:
        """How many query heads share one key/value head (1 for plain MHA)."""
        return self.n_heads // self.n_kv_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown ModelConfig keys: {sorted(unknown)}")
        return cls(**d)


# GPT-2 sizes: OpenAI's released checkpoints (`openai-community/gpt2*` config.json files; the book's ch. 5 table).
GPT2_PRESETS: dict[str, ModelConfig] = {
    name: ModelConfig(
        arch="gpt2", vocab_size=50257, context_length=1024, emb_dim=emb, n_layers=layers, n_heads=heads,
        qkv_bias=True, norm_eps=1e-5, name=name,
    )
    for name, emb, layers, heads in [
        ("gpt2-small", 768, 12, 12),  # 124M
        ("gpt2-medium", 1024, 24, 16),  # 355M
        ("gpt2-large", 1280, 36, 20),  # 774M
        ("gpt2-xl", 1600, 48, 25),  # 1558M
    ]
}

# Llama-family presets are read from their GGUF metadata at load time (weights.gguf.llama_config_from_gguf).
LLAMA_PRESETS: tuple[str, ...] = ("smollm2-135m",)
MODEL_CHOICES: tuple[str, ...] = (*LLAMA_PRESETS, *GPT2_PRESETS)
DEFAULT_MODEL = "smollm2-135m"

# AdamW learning rate when --lr is not given. The book's 5e-5 is tuned for GPT-2 and kept for it (and for any
# model not listed). SmolLM2-135M's last block underfits at 5e-5 (96.3 % test, 98.9 % train after 5 epochs);
# 1e-3 reached 98.7 % in a sweep over 5e-5..1e-3 (benchmarks/RESULTS.md, "Learning rate for SmolLM2-135M").
BOOK_LR = 5e-5
DEFAULT_LR: dict[str, float] = {"smollm2-135m": 1e-3}


def _arg(default: Any, help: str) -> Any:
    """A dataclass field whose help text becomes the CLI's --help line (its type gives the flag's type/choices)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainArgs:
    """Settings of one fine-tuning run. Defaults are the book's (ch. 6) unless a comment says why not."""

    model: str = _arg(DEFAULT_MODEL, "preset name (" + ", ".join(MODEL_CHOICES) + "), a .gguf file or a HF directory"
                                     "; with --backend hf also all-minilm-l6-v2 or a Hub id")
    backend: Backend = _arg("scratch", "scratch: spamtune's own GPT-2/Llama modules; hf: transformers' "
                                       "AutoModelForSequenceClassification (also encoders, multi-label, regression)")
    dtype: DType = _arg("fp32", "training precision: bf16 autocasts the matmuls (spamtune's models) or loads the "
                                "weights in bf16 (--backend hf)")
    device: Device = _arg("auto", "where to train: auto (CUDA if present, each torchrun rank on its own GPU), cpu, "
                                  "cuda or mps")
    random_init: bool = _arg(False, "random weights of the same architecture instead of pretrained ones")
    trainable: Trainable = _arg("last_block", "what to fine-tune: the head, the last block(s) (+ final norm), all, or "
                                              "peft adapters with the head: lora, ia3, prefix (prefix tuning, "
                                              "--backend hf only)")
    pooling: Pooling = _arg("last_real", "which position classifies the message")
    padding: Padding = _arg("dynamic", "pad to the longest training message (book), per batch, or to the context")
    normalize: Normalization = _arg("nfkc", "text normalization before tokenizing, stored in the run and applied "
                                            "wherever it reads text: nfkc (NFKC, invisible characters removed, "
                                            "look-alike letters folded; see normalize.py) or none")
    augment: int = _arg(0, "add N perturbed copies of every training message (homoglyphs, leetspeak, spacing, "
                           "disguised links and numbers; data/perturb.py)")
    stack: Stack = _arg("none", "binary runs: ngrams stacks the fine-tuned model with a word + character n-gram "
                                "linear model (fitted on the training split, combined on validation; stacking.py)")
    cascade: Cascade = _arg("none", "binary runs: ngrams lets a word + character n-gram model decide the messages it "
                                    "is sure of, so only the rest reach the LLM (bands picked on held-out messages; "
                                    "inference/cascade.py)")
    cascade_spam_allowed: float = _arg(CASCADE_SPAM_ALLOWED, "--cascade: the share of held-out spam the n-gram "
                                                             "model's allow band may hold")
    cascade_ham_blocked: float = _arg(CASCADE_HAM_BLOCKED, "--cascade: the share of held-out ham its block band "
                                                           "may hold")
    max_length: int | None = _arg(None, "truncate messages to this many tokens (default: longest training message)")
    epochs: int = _arg(5, "training epochs")
    batch_size: int = _arg(8, "messages per batch")
    lr: float | None = _arg(None, "AdamW learning rate (default: 5e-5, the book's, for GPT-2; 1e-3 for "
                                  "smollm2-135m, see benchmarks/RESULTS.md)")
    weight_decay: float = _arg(0.1, "AdamW weight decay")
    lr_decay: float = _arg(1.0, "discriminative learning rates: each block trains at this factor of the rate of "
                                "the one above it (the head at --lr), e.g. 0.8; 1 = one rate")
    unfreeze_every: int | None = _arg(None, "gradual unfreezing: train only the head for N epochs, then add one "
                                            "more block of --trainable's scope every N epochs, top down")
    lr_schedule: Schedule = _arg("constant", "learning rate over the run: constant (the book), or linear/cosine "
                                             "decay to 0 (transformers' schedulers)")
    warmup_ratio: float = _arg(0.0, "share of the training steps over which the lr rises linearly from 0 to --lr "
                                    "before the linear/cosine decay starts (e.g. 0.1)")
    class_weights: str | None = _arg(None, "loss weight per class in label-id order, e.g. 2,1 (a wrong ham costs "
                                           "twice), or balanced (inverse training frequency, as scikit-learn)")
    target_fpr: float = _arg(DEFAULT_TARGET_FPR, "binary runs: the block threshold is the lowest whose false-positive "
                                                 "rate on validation ham + the calibration half of the unused ham is "
                                                 "at most this")
    target_precision: float | None = _arg(None, "binary runs: pick the block threshold for this precision on "
                                                "validation instead of --target-fpr")
    review_fpr: float = _arg(DEFAULT_REVIEW_FPR, "binary runs: the review band starts where this false-positive "
                                                 "rate is reached")
    seed: int = _arg(123, "seed for the head init, shuffling and dropout")
    eval_freq: int = _arg(50, "evaluate every N optimizer steps")
    eval_iter: int = _arg(5, "batches per periodic evaluation")
    early_stopping: int | None = _arg(None, "stop after N epochs in a row without a better full-validation loss")
    lora_rank: int = _arg(16, "LoRA rank (with --trainable lora)")
    lora_alpha: int = _arg(16, "LoRA alpha (with --trainable lora)")
    cache_prefix: bool = _arg(True, "run the frozen layers once per message and train on their cached output")
    cache_dir: str = _arg("auto", "where the frozen layers' output is stored and reused across runs (memory-mapped):"
                                  " auto ($SPAMTUNE_CACHE_DIR, else ~/.cache/spamtune/prefix), a directory, or none "
                                  "(in memory)")
    cache_max_gb: float | None = _arg(None, "size cap of --cache-dir: the least recently used caches are removed "
                                            "first")
    limit: int | None = _arg(None, "use only the first N messages of each split (quick runs, CI)")
    max_steps: int | None = _arg(None, "stop after N optimizer steps (quick runs, benchmarks)")
    init_from: str | None = _arg(None, "warm start: a finished run of the same base model, scope and labels whose "
                                       "trained tensors start this run (spamtune retrain uses it)")

    def __post_init__(self) -> None:
        check_field_types(self)  # train_args.json is read back into this class
        if self.lr is None:
            self.lr = DEFAULT_LR.get(self.model, BOOK_LR)
        if self.lr <= 0:
            raise ConfigError("--lr must be positive")
        hints = typing.get_type_hints(TrainArgs)
        for f in dataclasses.fields(self):
            allowed = choices(hints[f.name])
            if allowed and getattr(self, f.name) not in allowed:
                raise ConfigError(f"--{f.name.replace('_', '-')} must be one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "eval_freq", "eval_iter", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError("--max-length must be at least 1")
        if not 0 <= self.augment <= 20:
            raise ConfigError("--augment must be between 0 and 20 copies")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError("--lr-decay must be in (0, 1]")
        if self.unfreeze_every is not None and self.unfreeze_every < 1:
            raise ConfigError("--unfreeze-every must be at least 1 epoch")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("--warmup-ratio must be in [0, 1)")
        for name in ("target_fpr", "review_fpr", "target_precision", "cascade_spam_allowed", "cascade_ham_blocked"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1")
        if self.review_fpr < self.target_fpr:
            raise ConfigError("--review-fpr must be at least --target-fpr (the review band lies below the block "
                              "threshold)")
        if self.warmup_ratio and self.lr_schedule == "constant":
            raise ConfigError("--warmup-ratio needs --lr-schedule linear or cosine")
        self.class_weight_values()  # fail at parse time, not after loading the model
        if self.backend == "hf":  # transformers pools its own way (last non-pad token or [CLS]) on its own weights
            if self.pooling != "last_real" or self.padding != "dynamic" or self.random_init:
                raise ConfigError("--backend hf pools as transformers does: drop --pooling, --padding and "
                                  "--random-init")
        if self.trainable == "prefix" and self.backend != "hf":
            raise ConfigError("--trainable prefix needs --backend hf: peft's prefix tuning feeds its virtual "
                              "tokens to transformers' attention as past key/values")
        if self.cache_max_gb is not None and self.cache_max_gb <= 0:
            raise ConfigError("--cache-max-gb must be positive")

    def class_weight_values(self) -> list[float] | Literal["balanced"] | None:
        """--class-weights parsed: None, "balanced", or one positive float per class."""
        if self.class_weights is None:
            return None
        if self.class_weights == "balanced":
            return "balanced"
        try:
            values = [float(x) for x in self.class_weights.split(",")]
        except ValueError:
            values = []
        if not values or not all(v > 0 for v in values):
            raise ConfigError(f"--class-weights must be 'balanced' or positive numbers like 2,1, not "
                              f"{self.class_weights!r}")
        return values

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainArgs:
        """A run's train_args.json back as TrainArgs; unknown keys or bad values are a `ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError("train args must be a JSON object")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown training settings: {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------------------------
# The service and the production loop: their defaults live here, where the CLI (which must start without torch or
# FastAPI) reads them too

CONFIDENT = 0.99  # an end user's correction against a prediction at least this sure waits for an operator
CANARY_SHARE = 0.05  # of the requests a --canary answers
REGISTRY_POLL_S = 2.0  # how often a service following a registry reads its pointer
MIN_FEEDBACK = 10  # new learnable corrections a retrain needs before it trains anything


@dataclass
class ServeLimits:
    max_texts: int = 64  # texts per request
    max_chars: int = 20_000  # characters per text (longer messages would be truncated to max_length tokens anyway)
    max_body_bytes: int = 2_000_000
    max_batch: int = 64  # texts per forward pass across requests
    batch_window_ms: float = 5.0
    max_queue: int = 2_048  # texts waiting for a forward pass; more: 503 with Retry-After, not an endless queue
    request_timeout_s: float = 30.0  # a request waiting longer for its forward pass gets a 503
    explain_budget_s: float = 5.0  # "explain": true: seconds of explanation per request; what runs out says so
    store_timeout_s: float = 2.0  # the longest a request waits for the prediction store (feedback, admin): 503
    feedback_per_minute_client: float = 30.0  # corrections per client address (token bucket)
    feedback_per_minute_key: float = 120.0  # ...and per credential (a key, or one decision's token)


@dataclass
class CorrectionPolicy:
    """What a retrain learns from the store (lifecycle/corrections.py has the rules)."""

    holdout: float = 0.2  # share of corrected messages held out for the comparison
    validation: float = 0.125  # share of the learnt ones that go to validation (the data's 70:10)
    max_share: float = 0.2  # corrections at most this share of the training rows
    untrusted_share: float = 0.02  # end users' (unreviewed) corrections at most this share of the training rows
    boost: int = 10  # each learnt correction this many more times in train: perturbed copies (data/perturb.py)
    confident: float = CONFIDENT  # an end user's correction against a prediction at least this sure needs review
    learn_unreviewed: bool = False  # learn those too (the report says so)

    def __post_init__(self) -> None:
        for name in ("holdout", "max_share", "untrusted_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1)")
        if not 0 <= self.boost <= 50:
            raise ConfigError("--boost must be between 0 and 50 copies")
        if not 0 < self.validation < 1 or not 0.5 < self.confident <= 1:
            raise ConfigError("the validation share must be in (0, 1) and --confident in (0.5, 1]")


@dataclass
class PromotionPolicy:
    fpr_margin: float = 0.002  # guard: the challenger's FPR may exceed the champion's by at most this (absolute)
    max_recall_drop: float = 0.02  # guard: its test recall may fall at most this much, whatever else it wins
    recall_margin: float = 0.0  # "not worse": its test recall may fall short by at most this
    alpha: float = 0.05  # McNemar's exact test: "significantly better" below this p-value

    def __post_init__(self) -> None:
        if not (0 <= self.fpr_margin < 1 and 0 <= self.recall_margin < 1 and 0 < self.alpha < 1
                and 0 <= self.max_recall_drop < 1):
            raise ConfigError("--fpr-margin, --recall-margin and --max-recall-drop must be in [0, 1), --alpha in "
                              "(0, 1)")
