"""Where tensors live: `--device auto|cpu|cuda|mps` resolved once, bf16 autocast and where bf16 pays, and the
torchrun process group.

`auto` is CUDA when present (the rank's own GPU under torchrun), else the CPU; MPS only when asked for, since
some of its kernels still fall back to the CPU. Under `torchrun`, `dist_context` reads the launcher's environment
(RANK, WORLD_SIZE, LOCAL_RANK) and joins the process group: gloo on the CPU, nccl on CUDA.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from spamtune.errors import ConfigError

log = logging.getLogger(__name__)
# CPU flags of native bf16 arithmetic (Intel's AMX and AVX512-BF16, AMD Zen 4's AVX512-BF16): without them PyTorch
# emulates bf16 matmuls, measured on an AVX2 EPYC at 1 GFLOP/s against fp32's 155 (README, "Inference")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The torch device for `--device`; a device this machine lacks is a `ConfigError`, never a silent CPU run."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch here (try --device cpu)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: Apple's Metal backend is not available here (try --device cpu)")
        return torch.device("mps")
    if name != "cpu":
        raise ConfigError(f"--device must be auto, cpu, cuda or mps, not {name!r}")
    return torch.device("cpu")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return frozenset()


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run in hardware: a CUDA GPU that supports them, or a CPU with AMX or
    AVX512-BF16. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))
    return False


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """`--dtype auto` -> bf16 where it is native, else fp32; `bf16` where it would be emulated: kept (the user
    asked), with one warning line that it will be slower than fp32 here."""
    if dtype == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if dtype == "bf16" and not native_bf16(device):
        log.warning("this %s computes bf16 by emulation (no AMX or AVX512-BF16): --dtype bf16 runs several "
                    "times slower than fp32 here; use --dtype fp32 or auto", device.type.upper())
    return dtype


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for `--dtype bf16` (matmuls in bf16, reductions and the loss in fp32); fp32: nothing."""
    if dtype != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


# oneDNN's bf16 kernels on the CPU keep memory for every input shape they meet, so a run's memory grows with the
# number of distinct batch widths (benchmarks/memory_shapes.py: +1.2 GB over widths 5..262). Rounding widths up to
# a multiple bounds the shapes, and the memory, for a little padding; fp32 and CUDA keep exact widths.
BF16_CPU_WIDTH_MULTIPLE = 32


def width_multiple(device: torch.device, dtype: str) -> int | None:
    """What dynamically padded batches round their width up to on this device and precision (None: nothing)."""
    return BF16_CPU_WIDTH_MULTIPLE if device.type == "cpu" and dtype == "bf16" else None


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Only the main process writes the run directory, logs and plots."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current_dist() -> Dist:
    """The torchrun environment of this process (no process group is joined)."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return Dist(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")),
                int(env.get("LOCAL_WORLD_SIZE", str(world))))


@contextlib.contextmanager
def dist_context(device_name: str) -> Iterator[tuple[Dist, torch.device]]:
    """Join torchrun's process group for the duration (gloo on the CPU, nccl on CUDA) and yield this rank's place
    and device; outside torchrun, rank 0 of 1 on `device_name`."""
    dist = current_dist()
    device = resolve_device(device_name, dist.local_rank)
    if not dist.enabled:
        yield dist, device
        return
    if device.type == "mps":
        raise ConfigError("torchrun with --device mps is not supported; use cpu (gloo) or cuda (nccl)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        yield dist, device
    finally:
        torch.distributed.destroy_process_group()
