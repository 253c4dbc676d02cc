"""Data-parallel training on ``torch.distributed``: the torchrun environment, the process group, reductions.

The :class:`~seqclf.Trainer` calls these itself; a user only launches the same script with
``torchrun --nproc-per-node N script.py``. Every function here is a no-op (or returns the
single-process answer) when no process group is initialized, so the trainer's code reads the
same for one process and for many.

Collectives (``barrier`` and the private ``_all_reduce_sum``, ``_any_rank``, ``_all_gather_object``,
``_broadcast_int``) must be called by every rank at the same point of the program; a rank that
skips one makes the others wait until the process group's timeout (torch's default, 10 minutes) raises an error.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ._deprecation import moved_attribute

__all__ = ["DistributedEnv", "barrier", "environment", "is_main_process", "rank", "resolve_device", "world_size"]

logger = logging.getLogger(__name__)

# Small host-side collectives (the stop flag, the seed) go through a gloo group on CPU
# tensors, so that agreeing on a flag never waits for the GPU (with nccl a device tensor
# read back on the host would be a synchronization per step). None: the default group is gloo.
_cpu_group: dist.ProcessGroup | None = None
# what holds the process group besides torch's registry (the trainers' DDP wrappers), dropped at teardown
_teardown_hooks: list[weakref.WeakMethod[Callable[[], None]]] = []


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process stands in a data-parallel job.

    Attributes:
        rank: this process's index among all processes, ``0 .. world_size - 1``.
        local_rank: its index on this machine (selects the GPU ``cuda:local_rank``).
        world_size: the number of processes in the job.
    """

    rank: int
    local_rank: int
    world_size: int


def environment() -> DistributedEnv | None:
    """The data-parallel job this process belongs to, or None when it runs alone.

    A job is an initialized ``torch.distributed`` process group (the user initialized it),
    or else the variables ``torchrun`` sets: ``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() == 1:
            return None
        rank = dist.get_rank()
        return DistributedEnv(rank, _env_int("LOCAL_RANK", default=rank), dist.get_world_size())
    world_size = _env_int("WORLD_SIZE", default=1)
    if world_size <= 1:
        return None
    rank = _env_int("RANK")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK must lie in [0, {world_size}) (WORLD_SIZE); got {rank}")
    return DistributedEnv(rank, _env_int("LOCAL_RANK", default=rank), world_size)


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"{name} must be set to an int when WORLD_SIZE > 1 (torchrun sets it); got nothing")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an int; got {value!r}") from None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; anything else is passed to ``torch.device``."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device; got {type(device).__name__}")
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}") from error
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device must be one this machine has; got {device!r}, but torch finds no CUDA device "
                             "(device='auto' picks the best available)")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device must be one this machine has; got {device!r}, but it has {count} CUDA "
                             f"device(s): cuda:0 to cuda:{count - 1}")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device must be one this machine has; got {device!r}, but MPS is not available "
                         "(device='auto' picks the best available)")
    return resolved


def _setup_device(device: str | torch.device) -> tuple[torch.device, DistributedEnv | None]:
    """This process's training device, and its data-parallel job (after joining its process group) or None."""
    env = environment()
    resolved = resolve_device(device)
    return (resolved, None) if env is None else (_setup(resolved, env), env)


def _setup(device: torch.device, env: DistributedEnv) -> torch.device:
    """Join the process group of ``env`` and return this rank's device.

    A CUDA device without an index becomes ``cuda:local_rank`` (one GPU per process) and
    the backend is nccl; on CPU it is gloo. A process group the user initialized already
    (with their own backend and timeout) is used as it is and left to the user to destroy;
    one created here is destroyed at interpreter exit by ``_destroy``.
    """
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", env.local_rank)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device must be CPU or CUDA to train on {env.world_size} processes; got {str(device)!r}"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
        atexit.register(_destroy)
        logger.info("rank %d of %d joined the %s process group", env.rank, env.world_size, backend)
    global _cpu_group
    if _cpu_group is None and dist.get_backend() != "gloo":
        group = dist.new_group(backend="gloo")
        assert isinstance(group, dist.ProcessGroup)  # every rank is a member
        _cpu_group = group
    return device


def _wrap(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` in ``DistributedDataParallel``; rank 0's parameters are broadcast to all ranks here."""
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _at_teardown(hook: Callable[[], None]) -> None:
    """Call the bound method ``hook`` in :func:`destroy`, before the process group goes (held weakly).

    The trainer drops its ``DistributedDataParallel`` wrapper there: the wrapper holds the
    process group, which must not outlive the interpreter (see ``_destroy``).
    """
    _teardown_hooks.append(weakref.WeakMethod(hook))


def _destroy() -> None:
    """Leave the process group, while the interpreter is still whole (registered at exit by :func:`setup`).

    A gloo process group that is still alive when the interpreter finalizes is destroyed
    then: its worker threads release the tensors of their last work, need the GIL, and the
    finalizing interpreter ends them, which aborts the process (``terminate called without
    an active exception``, SIGABRT) after the script has finished. So the references the
    trainers hold are dropped, the cycles that hold DDP wrappers are collected, and the
    group is destroyed here, at exit, before finalization.
    """
    global _cpu_group
    for hook in _teardown_hooks:
        method = hook()
        if method is not None:
            method()
    _teardown_hooks.clear()
    _cpu_group = None
    gc.collect()  # DDP wrappers sit in reference cycles: free them (and their hold on the group) now
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


def rank() -> int:
    """This process's rank (0 when it runs alone)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes training together (1 when alone)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the one process that logs, reports and writes files."""
    return rank() == 0


def _all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over all ranks, as a new tensor (``tensor`` itself when alone)."""
    if world_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def _all_reduce_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over all ranks (``tensor`` itself when alone)."""
    size = world_size()
    return tensor if size == 1 else _all_reduce_sum(tensor.float()) / size


def _sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks, in one all-reduce on ``device`` (``values`` when alone)."""
    if world_size() == 1:
        return values
    summed = _all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=device))
    return [float(value) for value in summed.tolist()]


def _any_rank(*flags: bool) -> tuple[bool, ...]:
    """For each flag, True on every rank if it is true on any rank (one all-reduce for all).

    This is how all ranks agree to stop, e.g. ``stop, interrupted = _any_rank(stop, interrupted)``.
    """
    if world_size() == 1:
        return flags
    values = torch.tensor([int(flag) for flag in flags], dtype=torch.int32)
    dist.all_reduce(values, op=dist.ReduceOp.MAX, group=_cpu_group)
    return tuple(bool(value) for value in values.tolist())


def _all_gather_object(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` when alone); values are pickled."""
    if world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value, group=_cpu_group)
    return gathered


def _broadcast_int(value: int, src: int = 0) -> int:
    """Rank ``src``'s ``value`` on every rank (e.g. a randomly drawn seed)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    dist.broadcast(tensor, src=src, group=_cpu_group)
    return int(tensor.item())


def barrier() -> None:
    """Wait until every rank gets here (e.g. before reading a file rank 0 wrote)."""
    if world_size() > 1:
        dist.barrier(group=_cpu_group)


def __getattr__(name: str) -> Any:
    """``steps_per_epoch``, moved to :mod:`seqclf.batching`, still served here with a DeprecationWarning."""
    return moved_attribute(__name__, name, {"steps_per_epoch": "seqclf.batching"})


def _has_distributed_sampler(loader: DataLoader[object]) -> bool:
    """Whether ``loader`` shards its dataset across ranks itself (with a ``DistributedSampler``)."""
    batch_sampler_sampler = getattr(loader.batch_sampler, "sampler", None)
    return isinstance(loader.sampler, DistributedSampler) or isinstance(batch_sampler_sampler, DistributedSampler)


def _require_distributed_sampler(loader: DataLoader[object], name: str) -> None:
    """Raise unless ``loader`` splits its data across the ranks itself (training needs disjoint parts)."""
    if world_size() > 1 and not _has_distributed_sampler(loader):
        raise ValueError(
            f"{name} as a DataLoader must split the data across the {world_size()} processes with a "
            "torch.utils.data.DistributedSampler (or pass the Dataset and the trainer splits it); "
            f"got a DataLoader with {type(loader.sampler).__name__}"
        )


def _set_sampler_epoch(loader: DataLoader[object], epoch: int) -> None:
    """Tell the loader's ``DistributedSampler`` which epoch starts (it reshuffles by epoch)."""
    for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
