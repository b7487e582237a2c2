"""Two of the course's fine-tuning strategies that treat layers differently (ULMFiT, Howard & Ruder 2018):

- discriminative learning rates (`--lr-decay F`): the head and final norm train at `--lr`, the block below them at
  lr·F, the next at lr·F², ..., the embeddings at lr·F^(n_layers+1): lower layers hold more general features and
  should move less;
- gradual unfreezing (`--unfreeze-every K`): the first K epochs train only the head (and final norm), then every K
  epochs one more block of the scope joins, top down, until the whole scope trains.

Both read a parameter's depth from its name (`*.trf_blocks.<i>.*` for spamtune's models, `*.layers.<i>.*`,
`*.layer.<i>.*` or `*.h.<i>.*` for transformers' ones; "emb" anywhere for the embeddings), so they work alike for
every scope and backend, LoRA and IA³ adapters included (an adapter sits in its block's depth).
"""

from __future__ import annotations

import re

from torch import nn

BLOCK = re.compile(r"\.(?:trf_blocks|layers|layer|h)\.(\d+)\.")


def param_depths(module: nn.Module) -> dict[str, int]:
    """Trainable parameter name -> depth from the top: 0 head and final norm, 1 the last block, ..., n_layers the
    first block, n_layers + 1 the embeddings."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    n_layers = _n_blocks(module)
    depths = {}
    for name in names:
        if m := BLOCK.search(name):
            depths[name] = n_layers - int(m.group(1))
        elif "emb" in name or ".wte." in name or ".wpe." in name:
            depths[name] = n_layers + 1
        else:
            depths[name] = 0
    return depths


def _n_blocks(module: nn.Module) -> int:
    """The number of blocks of the model (some may be frozen): the highest block index in any parameter name."""
    found = [int(m.group(1)) for n, _ in module.named_parameters() if (m := BLOCK.search(n))]
    return max(found, default=-1) + 1


def param_groups(module: nn.Module, lr: float, decay: float) -> list[dict]:
    """AdamW parameter groups, one per depth, at lr·decay^depth (decay 1: one group at lr)."""
    params = dict(module.named_parameters())
    groups: dict[int, list[nn.Parameter]] = {}
    for name, depth in param_depths(module).items():
        groups.setdefault(depth if decay != 1.0 else 0, []).append(params[name])
    return [{"params": ps, "lr": lr * decay**depth} for depth, ps in sorted(groups.items())]


def frozen_for_epoch(module: nn.Module, epoch: int, every: int | None) -> list[nn.Parameter]:
    """The trainable parameters gradual unfreezing still holds still in `epoch` (0-based): those deeper than the
    1 + epoch // every shallowest depths present; none without `every`."""
    if not every:
        return []
    depths = param_depths(module)
    present = sorted(set(depths.values()))
    open_depths = set(present[: 1 + epoch // every])
    params = dict(module.named_parameters())
    return [params[n] for n, d in depths.items() if d not in open_depths]
