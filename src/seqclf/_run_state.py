"""A run's state: what a checkpoint holds to continue a run exactly, saved and restored all or nothing.

The trainer hands its parts over as a :class:`Run`; :func:`save_run` turns them into plain
data (``Trainer.state_dict``) and :func:`load_run` puts such data back
(``Trainer.load_state_dict``) after checking all of it, so a checkpoint that does not fit
changes nothing.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed
from ._files import CheckpointError, to_cpu
from ._loader_order import LoaderOrder, LoaderReplay, epoch_seed
from ._model_record import check_model_record, model_record
from .history import History

if TYPE_CHECKING:
    from .callbacks import Callback

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """All the state of a run in one place: what a checkpoint must hold to continue it.

    Attributes:
        seed: the shuffling seed; epoch ``e``'s order depends only on ``(seed, e)``.
        epoch: index of the current epoch (= epochs completed when between epochs).
        step: optimizer steps taken in all.
        batch_in_epoch: batches done in the current epoch (for a mid-epoch resume).
        should_stop: set by a callback to stop ``fit`` after the current batch: a pause. A
            stop mid-epoch leaves the epoch open; the next ``fit`` (or a resume from the
            checkpoint saved on the way out) continues it exactly where it stopped.
        finished: set (with ``should_stop``) by a callback that ends the run for good, as
            :class:`~seqclf.callbacks.EarlyStopping` does: a later ``fit`` or resume trains
            no more and logs why.
        epoch_done: the current epoch's batches, evaluation and record are done; the next
            epoch starts when ``fit`` continues (a checkpoint saved at an epoch's end).
        epoch_loss_sum, epoch_correct, epoch_seen: running sums of the current epoch,
            kept on the device between batches (no host sync per step).
        epoch_finite_batches: batches of the current epoch after which ``epoch_loss_sum``
            was still finite; a NaN/Inf loss makes the sum non-finite for good, so this
            counts the batches before the first bad one without a host sync.
    """

    seed: int
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    should_stop: bool = False
    finished: bool = False
    epoch_done: bool = False
    epoch_loss_sum: Tensor = field(default_factory=lambda: torch.zeros(()))
    epoch_correct: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))
    epoch_seen: int = 0
    epoch_finite_batches: Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))

    def next_epoch(self) -> None:
        """Close the current epoch: the next one starts at its first batch."""
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_done = False

    def reset_epoch(self, device: torch.device) -> None:
        """Start the running sums of a new epoch."""
        self.batch_in_epoch = 0
        self.epoch_loss_sum = torch.zeros((), device=device)
        self.epoch_correct = torch.zeros((), dtype=torch.int64, device=device)
        self.epoch_seen = 0
        self.epoch_finite_batches = torch.zeros((), dtype=torch.int64, device=device)


@dataclass
class Run:
    """The parts of a trainer that make up its run's state: what is saved and restored.

    Attributes:
        model: the plain model (not its DDP wrapper).
        optimizer, callbacks, history, state: the trainer's own, changed in place on a load.
        loader: the record of the trainer's ``DataLoader`` generators.
        batch_size: sequences per step on this process; ``world_size`` processes, ``rank`` this one's index.
        epochs: the run's length in epochs.
        device: where the run state's tensors live.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    callbacks: Sequence[Callback]
    history: History
    state: TrainState
    loader: LoaderReplay
    batch_size: int
    epochs: int
    rank: int
    world_size: int
    device: torch.device


def start_run(state: TrainState, seed: int | None, rank: int, world_size: int) -> None:
    """Seed a fresh run from ``seed`` (None: a draw from torch's global generator); a resumed run is left as it is."""
    if state.step > 0 or state.epoch > 0 or state.batch_in_epoch > 0:
        return
    state.should_stop = False
    if seed is None:
        # derived from torch's global generator, so seed_everything() makes it reproducible;
        # rank 0's draw is used by all ranks, as the shuffling order must be the same everywhere
        state.seed = distributed.broadcast_int(int(torch.randint(0, 2**31 - 1, ()).item()))
    else:
        state.seed = seed
        torch.manual_seed(seed)  # dropout and any other random op in the model
    if world_size > 1:
        # each rank its own dropout stream (rank 0's is that of a single-process run with this seed)
        torch.manual_seed(state.seed + rank)


def global_state(state: TrainState, world_size: int, device: torch.device) -> TrainState:
    """``state`` as one process holding all of the run would have it.

    Alone, ``state`` itself. With several processes, a copy whose running epoch sums are
    summed over the ranks (a collective: every rank must call it).
    """
    if world_size == 1:
        return state
    total = replace(state)
    loss_sum, correct, seen = distributed.sum_over_ranks(
        [float(state.epoch_loss_sum), float(state.epoch_correct), float(state.epoch_seen)], device
    )
    total.epoch_loss_sum = torch.tensor(loss_sum, dtype=state.epoch_loss_sum.dtype, device=device)
    total.epoch_correct = torch.tensor(round(correct), dtype=torch.int64, device=device)
    total.epoch_seen = round(seen)
    return total


def save_run(run: Run) -> dict[str, Any]:
    """Everything needed to continue ``run`` exactly, as plain data (tensors on the CPU); see ``Trainer.state_dict``.

    With several processes it is a collective: every rank must call it (each gets all of it).
    """
    state = global_state(run.state, run.world_size, run.device)
    generators = distributed.all_gather_object(_generator_states(run.loader))
    values = {f.name: getattr(state, f.name) for f in fields(state)}
    return {
        "model": model_record(run.model),
        "optimizer": {"class": type(run.optimizer).__name__, "state_dict": to_cpu(run.optimizer.state_dict())},
        "trainer": {
            "batch_size": run.batch_size,
            "global_batch_size": run.batch_size * run.world_size,
            "world_size": run.world_size,
            "epochs": run.epochs,
            "state": to_cpu(values),
        },
        "callbacks": [{"class": type(c).__name__, "state": to_cpu(c.state_dict())} for c in run.callbacks],
        "history": run.history.to_list(),
        "rng": generators,
    }


def load_run(run: Run, state_dict: dict[str, Any]) -> None:
    """Put ``run`` where :func:`save_run` left off; all or nothing (see ``Trainer.load_state_dict``).

    Raises:
        CheckpointError: naming what does not fit; ``run`` is then unchanged.
    """
    plan = _check_state_dict(run, state_dict)
    callbacks_before = [copy.deepcopy(c.state_dict()) for c in run.callbacks]
    optimizer_before = copy.deepcopy(run.optimizer.state_dict())
    try:
        for callback, callback_state in plan.callbacks:
            callback.load_state_dict(callback_state)
        run.optimizer.load_state_dict(copy.deepcopy(plan.optimizer))  # a copy: torch keeps the given tensors
        run.model.load_state_dict(plan.weights)
    except Exception as error:
        for callback, before in zip(run.callbacks, callbacks_before, strict=True):
            callback.load_state_dict(before)
        run.optimizer.load_state_dict(optimizer_before)
        raise CheckpointError(f"checkpoint must load into this trainer; got {type(error).__name__}: {error}. "
                              "The trainer was left as it was.") from error
    state = run.state
    for name, value in plan.values.items():
        setattr(state, name, value.to(run.device) if isinstance(value, Tensor) else value)
    if run.rank != 0:
        # the stored epoch sums are over all ranks: rank 0 carries them on, the others start at zero
        state.epoch_loss_sum = torch.zeros_like(state.epoch_loss_sum)
        state.epoch_correct = torch.zeros_like(state.epoch_correct)
        state.epoch_seen = 0
    run.history.clear()
    run.history.extend(dict(record) for record in plan.history)
    _set_generator_states(run, plan.generators, plan.same_world)
    logger.info("resumed at epoch %d, batch %d (step %d)", state.epoch, state.batch_in_epoch, state.step)


def check_loader_resumable(order: LoaderOrder, checkpoint: dict[str, Any] | None, rank: int) -> None:
    """Refuse a mid-epoch resume on a DataLoader whose order cannot be replayed; say why.

    ``checkpoint`` None: the same trainer continues a paused epoch.
    """
    if checkpoint is None:
        mid_epoch = True
        users = None
    else:
        values = checkpoint.get("trainer", {}).get("state", {}) if isinstance(checkpoint.get("trainer"), dict) else {}
        mid_epoch = isinstance(values, dict) and bool(values.get("batch_in_epoch")) and not values.get("epoch_done")
        entries = checkpoint.get("rng")
        entry = entries[rank] if isinstance(entries, list) and rank < len(entries) else entries
        users = entry.get("loader_epoch_start") if isinstance(entry, dict) else None
    if not mid_epoch:
        return
    if order.unknown is not None:
        raise CheckpointError(
            f"train_data's DataLoader must have a sampler whose order the trainer can replay to resume mid-epoch; "
            f"got a {order.unknown}, which may draw its order from a generator it does not expose. Resume from a "
            "checkpoint saved at an epoch's end (Checkpoint(every_n_epochs=1)), or use a RandomSampler, "
            "SequentialSampler or DistributedSampler, or pass the Dataset itself."
        )
    if users is not None and len(users) != len(order.users):
        raise CheckpointError(
            f"train_data's DataLoader must have the same generators as the checkpoint's to resume mid-epoch: "
            f"the checkpoint holds {len(users)}; this loader and its sampler were given {len(order.users)}"
        )


@dataclass
class _LoadPlan:
    """What :func:`load_run` loads, once all of it has been checked."""

    weights: dict[str, Any]
    optimizer: dict[str, Any]
    values: dict[str, Any]
    callbacks: list[tuple[Callback, dict[str, Any]]]
    history: list[dict[str, Any]]
    generators: dict[str, Any]
    same_world: bool


def _check_state_dict(run: Run, data: dict[str, Any]) -> _LoadPlan:
    """Check all of ``data`` against ``run``; what to load, or a CheckpointError."""
    for key, kind in (("model", dict), ("optimizer", dict), ("trainer", dict), ("callbacks", list),
                      ("history", list), ("rng", (list, dict))):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(
                f"checkpoint is not a valid seqclf checkpoint: {key!r} must be "
                f"{'a list' if kind is list else 'a dict' if kind is dict else 'a list or a dict'}; "
                f"got {type(data.get(key)).__name__}"
            )
    saved = data["trainer"]
    global_batch_size = run.batch_size * run.world_size
    if saved.get("global_batch_size") != global_batch_size:
        raise CheckpointError(
            "batch_size * processes must equal the checkpoint's global batch to resume its epochs "
            f"exactly: expected {saved.get('global_batch_size')!r} (batch_size {saved.get('batch_size')!r} "
            f"on {saved.get('world_size')!r} processes); got {global_batch_size} "
            f"(batch_size {run.batch_size} on {run.world_size})"
        )
    weights = check_model_record(run.model, data["model"])
    optimizer = _check_optimizer(run.optimizer, data["optimizer"])
    values = _check_train_state(saved.get("state"))
    callbacks = _match_callbacks(run.callbacks, data["callbacks"])
    history = data["history"]
    if not all(isinstance(record, dict) for record in history):
        raise CheckpointError("checkpoint 'history' must be a list of dicts (one per epoch)")
    entries = data["rng"] if isinstance(data["rng"], list) else [data["rng"]]  # format 1: one entry
    same_world = len(entries) == run.world_size
    mine = entries[run.rank] if same_world else entries[0] if entries else None
    if not isinstance(mine, dict) or not isinstance(mine.get("torch"), Tensor) or "python" not in mine \
            or not isinstance(mine.get("numpy"), dict):
        raise CheckpointError(
            "checkpoint 'rng' must hold each process's generator states (a dict with 'torch', 'python' and "
            f"'numpy'); got {type(mine).__name__} for rank {run.rank if same_world else 0}"
        )
    return _LoadPlan(weights, optimizer, values, callbacks, history, mine, same_world)


def _check_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    if saved.get("class") != type(optimizer).__name__:
        raise CheckpointError(
            f"optimizer must be a {saved.get('class')} like the checkpoint's; got {type(optimizer).__name__}"
        )
    state_dict = saved.get("state_dict")
    groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
    if not (isinstance(state_dict, dict) and isinstance(groups, list) and isinstance(state_dict.get("state"), dict)):
        raise CheckpointError("checkpoint optimizer state must be a dict with 'state' and 'param_groups'")
    ours = [len(group["params"]) for group in optimizer.param_groups]
    theirs = [len(group.get("params", [])) if isinstance(group, dict) else -1 for group in groups]
    if ours != theirs:
        raise CheckpointError(
            "checkpoint optimizer state must fit this trainer's optimizer: parameter groups of "
            f"{theirs} parameters; got groups of {ours}"
        )
    known = {index for group in groups for index in group["params"]}
    unknown = sorted(str(index) for index in state_dict["state"] if index not in known)
    if unknown:
        raise CheckpointError(f"checkpoint optimizer state holds parameters {unknown} that are in none of its groups")
    return state_dict


def _check_train_state(values: object) -> dict[str, Any]:
    defaults = TrainState(seed=0)
    known = {f.name for f in fields(defaults)}
    if not isinstance(values, dict):
        raise CheckpointError(f"checkpoint trainer 'state' must be a dict; got {type(values).__name__}")
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"checkpoint trainer state must have fields among {sorted(known)}; got unknown fields {unknown}"
        )
    missing = sorted({"seed", "epoch", "step"} - set(values))
    if missing:
        raise CheckpointError(f"checkpoint trainer state must have the fields {missing}; got none")
    for name, value in values.items():
        expected = type(getattr(defaults, name))
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CheckpointError(
                f"checkpoint trainer state {name} must be a {expected.__name__}; got {type(value).__name__}"
            )
    # fields a format-1 checkpoint lacks keep their defaults
    return {**{f.name: getattr(defaults, f.name) for f in fields(defaults) if f.name in ("finished", "epoch_done")},
            **values}


def _match_callbacks(callbacks: Sequence[Callback], saved: list[Any]) -> list[tuple[Callback, dict[str, Any]]]:
    """Each callback with the saved state of the same class and rank among callbacks of that class."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for index, entry in enumerate(saved):
        if not isinstance(entry, dict) or not isinstance(entry.get("state", {}), dict):
            raise CheckpointError(f"checkpoint callbacks[{index}] must be a dict with 'class' and a 'state' dict")
        by_class.setdefault(str(entry.get("class")), []).append(entry.get("state") or {})
    pairs = []
    for callback in callbacks:
        states = by_class.get(type(callback).__name__, [])
        if states:
            pairs.append((callback, states.pop(0)))
        elif callback.state_dict():
            logger.warning("%r has no state in the checkpoint; it starts afresh", callback)
    for name, states in by_class.items():
        if any(states):
            logger.warning("the checkpoint holds the state of a %s callback this trainer does not have", name)
    return pairs


def _generator_states(loader: LoaderReplay) -> dict[str, Any]:
    """This process's random generators (and a user's DataLoader's, at the epoch's start and now)."""
    _, key, position, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": [int(k) for k in key], "pos": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        **loader.states(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_generator_states(run: Run, states: dict[str, Any], same_world: bool) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = states["numpy"]
    np.random.set_state(
        ("MT19937", np.array(numpy["key"], dtype=np.uint32), numpy["pos"], numpy["has_gauss"],
         numpy["cached_gaussian"])
    )
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning("checkpoint has RNG states of %d CUDA devices; this machine has %d: not restored",
                           len(cuda), torch.cuda.device_count())
    run.loader.restore(states)
    if not same_world:
        if run.rank > 0:  # rank 0's stream continues on rank 0; the others draw their own
            torch.manual_seed(epoch_seed(run.state.seed, run.state.step, run.rank))
        if run.rank == 0:
            logger.warning(
                "resuming on %d process(es) a run saved on another number: the data order and the steps are "
                "the same, but random layers (dropout) draw other numbers than the uninterrupted run, and the "
                "sums are in another order, so the result matches it to float tolerance only",
                run.world_size,
            )
