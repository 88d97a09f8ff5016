"""Multi-process data parallelism through torch.distributed, as launched by `torchrun`.

    torchrun --nproc_per_node=4 -m vaekit.cli train --data mnist --out runs/ddp

Every process holds the whole model; each takes its share of every global batch, gradients are
averaged with one all-reduce per step, and only rank 0 writes files or prints progress.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .errors import InputError


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside a distributed launch."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup() -> tuple[int, int]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns (rank, world)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return world()


def is_main() -> bool:
    return world()[0] == 0


def device_for_rank(name: str) -> torch.device:
    """The device of this process: its own GPU under torchrun, else `name` resolved ('auto')."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name} asks for a GPU, but this PyTorch has no CUDA device; use --device cpu "
                         "(or auto).")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices.")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise InputError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.")
    return device


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world()[1] == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients(params) -> None:
    """Average .grad over ranks with one coalesced all-reduce."""
    size = world()[1]
    if size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over ranks (the tensor itself outside a distributed launch)."""
    if world()[1] > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's value of a boolean, on every rank."""
    if world()[1] == 1:
        return flag
    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


class Local:
    """The collectives of this module for a single process inside a distributed launch (e.g. a
    second stage that only rank 0 runs): each a no-op or the identity."""

    world = staticmethod(lambda: (0, 1))
    setup = staticmethod(lambda: (0, 1))
    device_for_rank = staticmethod(device_for_rank)
    broadcast_module = staticmethod(lambda module: None)
    average_gradients = staticmethod(lambda params: None)
    all_sum = staticmethod(lambda t: t)
    broadcast_flag = staticmethod(lambda flag: flag)
    barrier = staticmethod(lambda: None)
