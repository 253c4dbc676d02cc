"""Data-parallel training: the torchrun environment, the helpers, and a real 2-process run on gloo.

The 2-process run is spawned once per module (``torch.multiprocessing.spawn``, rendezvous on a
free port of 127.0.0.1, one thread per process so it fits a 2-core machine); each rank saves
what it saw and the tests compare it with a 1-process run in this process.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

import seqclf
from seqclf import distributed
from seqclf.callbacks import Callback, Checkpoint, StepOutput
from seqclf.checkpoint import checkpoint_name
from seqclf.history import Record
from seqclf.progress import ProgressBar

WORLD_SIZE = 2
EPOCHS = 2
PER_RANK_BATCH = 16
CROSS_STEP = 2  # mid-epoch: 3 global batches of 32 per epoch
SPAWN_DEADLINE_S = 240  # a hung collective fails the test instead of blocking CI


def task(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same synthetic task on every process: the class is the feature with the largest mean."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 3, generator=generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    x[torch.arange(n), :, y] += 1.5
    return x, y


def new_model() -> seqclf.SequenceClassifier:
    return seqclf.SequenceClassifier(input_size=3, hidden_size=8, num_classes=2)


class StopOn(Callback):
    """Sets ``should_stop`` on one rank only: after batch ``batch`` or at the end of epoch ``epoch``."""

    def __init__(self, rank: int, batch: int | None = None, epoch: int | None = None) -> None:
        self.rank, self.batch, self.epoch = rank, batch, epoch

    def on_batch_end(self, trainer: seqclf.Trainer, output: StepOutput) -> None:
        if trainer.rank == self.rank and output.batch_index == self.batch:
            trainer.state.should_stop = True

    def on_epoch_end(self, trainer: seqclf.Trainer, record: Record) -> None:
        if trainer.rank == self.rank and record["epoch"] == self.epoch:
            trainer.state.should_stop = True


class ItemDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A map-style dataset of items, which the trainer loads with a DataLoader following its plan."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD_SIZE), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    results: dict[str, Any] = {}

    # equivalence: different initial weights and seed draws on each rank; rank 0's must win
    seqclf.seed_everything(rank)
    model = new_model()
    trainer = seqclf.Trainer(model, epochs=EPOCHS, batch_size=PER_RANK_BATCH, seed=None, device="cpu")
    history = trainer.fit(task(96), eval_data=task(50, seed=1))
    results["attributes"] = (trainer.rank, trainer.world_size, trainer.is_main_process, trainer.global_batch_size)
    results["weights"] = model.state_dict()
    results["history"] = [dict(record) for record in history]
    results["seed"] = trainer.state.seed
    results["evaluate"] = trainer.evaluate(task(51, seed=2))
    results["predict"] = trainer.predict(task(7, seed=3)[0])

    # a callback stops one rank mid-epoch, or at an epoch's end: all ranks stop there
    for name, callback in (("stop_batch", StopOn(rank=1, batch=1)), ("stop_epoch", StopOn(rank=0, epoch=0))):
        trainer = seqclf.Trainer(new_model(), epochs=3, batch_size=PER_RANK_BATCH, seed=1, device="cpu",
                                 callbacks=[callback])
        trainer.fit(task(96))
        results[name] = (trainer.state.step, trainer.state.epoch)

    # 97 = 3 global batches of 32 and 1 left over: rank 1 would have no part, so no rank takes it
    trainer = seqclf.Trainer(new_model(), epochs=1, batch_size=PER_RANK_BATCH, seed=1, device="cpu")
    history = trainer.fit(task(97))
    results["uneven"] = (trainer.state.step, history[-1]["train_loss"])

    # a Dataset of items is split by the same plan as tensors
    for name, data in (("tensor_path", task(64)), ("dataset_path", ItemDataset(*task(64)))):
        seqclf.seed_everything(0)
        trainer = seqclf.Trainer(new_model(), epochs=1, batch_size=PER_RANK_BATCH, seed=2, device="cpu")
        trainer.fit(data)
        results[name] = (trainer.state.step, trainer.model.state_dict())

    # a DataLoader must shard itself: a DistributedSampler trains, a plain one is refused
    dataset = TensorDataset(*task(64))
    loader = DataLoader(dataset, batch_size=8, sampler=DistributedSampler(dataset, shuffle=True, seed=5))
    trainer = seqclf.Trainer(new_model(), epochs=1, batch_size=PER_RANK_BATCH, seed=1, device="cpu")
    trainer.fit(loader)
    results["sampler_steps"] = trainer.state.step
    results["sampler_weights"] = trainer.model.state_dict()
    try:
        trainer.fit(DataLoader(dataset, batch_size=8, shuffle=True))
        results["plain_loader_error"] = None
    except ValueError as error:
        results["plain_loader_error"] = str(error)

    # cross-world resume: a 1-process checkpoint (batch 32) continues on 2 processes (batch 16 each),
    # and this 2-process run writes checkpoints that the test resumes in 1 process
    trainer = seqclf.Trainer(new_model(), epochs=EPOCHS, batch_size=PER_RANK_BATCH, seed=3, device="cpu")
    history = trainer.fit(task(96), resume_from=Path(out_dir) / "one" / checkpoint_name(CROSS_STEP))
    results["resumed_from_one"] = (trainer.model.state_dict(), [dict(record) for record in history])
    seqclf.seed_everything(0)  # rank 0's initial weights are the 1-process run's
    trainer = seqclf.Trainer(new_model(), epochs=EPOCHS, batch_size=PER_RANK_BATCH, seed=3, device="cpu",
                             callbacks=[Checkpoint(Path(out_dir) / "two", every_n_steps=CROSS_STEP, keep_last=None)])
    trainer.fit(task(96))

    # each rank's own generators come back on a same-world resume: bitwise exact, with dropout;
    # and only rank 0 writes (rank 1's directory stays unmade) and shows a progress bar
    def dropout_run(directory: Path, resume_from: Path | None = None) -> seqclf.Trainer:
        seqclf.seed_everything(0)
        bar = ProgressBar(enabled=True, file=io.StringIO())
        trainer = seqclf.Trainer(
            seqclf.SequenceClassifier(3, 8, 2, num_layers=2, dropout=0.5), epochs=2, batch_size=PER_RANK_BATCH,
            seed=4, device="cpu", callbacks=[bar, Checkpoint(directory, every_n_steps=CROSS_STEP, keep_last=None)],
        )
        trainer.fit(task(96), resume_from=resume_from)
        results.setdefault("bar", bar.file.getvalue())  # type: ignore[union-attr]
        return trainer

    reference = dropout_run(Path(out_dir) / f"dropout-rank{rank}")
    resumed = dropout_run(Path(out_dir) / f"resumed-rank{rank}", Path(out_dir) / "dropout-rank0" / checkpoint_name(CROSS_STEP))
    results["dropout_resume"] = (reference.model.state_dict(), resumed.model.state_dict())

    # 99 = 3 global batches of 32 and one of 3 (2 + 1): each rank's loss weighted by its share
    seqclf.seed_everything(0)
    trainer = seqclf.Trainer(new_model(), epochs=2, batch_size=PER_RANK_BATCH, seed=5, device="cpu")
    trainer.fit(task(99))
    results["uneven_99"] = (trainer.state.step, trainer.model.state_dict())

    # SmallDataRecipe's budget is the job's optimizer steps: 40 steps of global batches of 32, the schedule run out
    trainer = small_data_run()
    results["small_data"] = (trainer.state.step, trainer.epochs, small_data_lr(trainer))

    # the input standardisation of a DataLoader + DistributedSampler: fitted over every rank's share
    seqclf.seed_everything(0)
    x, y = shifted_task()
    dataset = TensorDataset(x, y)
    loader = DataLoader(dataset, batch_size=8, sampler=DistributedSampler(dataset, shuffle=False))
    trainer = seqclf.Trainer(seqclf.SequenceClassifier(3, 8, 2, normalize=True), epochs=1, batch_size=8, seed=1,
                             device="cpu")
    trainer.fit(loader)
    assert trainer.model.normalize is not None
    results["standardize"] = (trainer.model.normalize.mean.clone(), trainer.model.normalize.scale.clone())

    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def small_data_run() -> seqclf.Trainer:
    """SmallDataRecipe on 64 sequences, 40 steps at least, no validation split."""
    seqclf.seed_everything(0)
    recipe = seqclf.recipes.SmallDataRecipe(batch_size=PER_RANK_BATCH, min_steps=40, min_epochs=1, val_fraction=0.0)
    x, y = task(64)
    return recipe.fit(new_model(), x, y, seed=0, device="cpu", progress=False)


def small_data_lr(trainer: seqclf.Trainer) -> tuple[int, int, float]:
    """The schedule's total steps, the steps it took, and the rate it ended at."""
    [schedule] = [c for c in trainer.callbacks if isinstance(c, seqclf.callbacks.LRScheduler)]
    scheduler = schedule.scheduler
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    return scheduler.total_steps, scheduler.last_epoch, trainer.optimizer.param_groups[0]["lr"]


def shifted_task() -> tuple[torch.Tensor, torch.Tensor]:
    """Even items around +10, odd ones around -10: an unshuffled DistributedSampler gives each rank one kind."""
    x, y = task(64)
    x = x * 2.0 + torch.where(torch.arange(64) % 2 == 0, 10.0, -10.0)[:, None, None]
    return x, y


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_process_run(checkpoints: Path | None = None) -> seqclf.Trainer:
    """The cross-world reference: 1 process at the global batch, seed 3, from seed_everything(0) weights."""
    seqclf.seed_everything(0)
    callbacks = [] if checkpoints is None else [Checkpoint(checkpoints, every_n_steps=CROSS_STEP, keep_last=None)]
    trainer = seqclf.Trainer(new_model(), epochs=EPOCHS, batch_size=PER_RANK_BATCH * WORLD_SIZE, seed=3,
                             device="cpu", callbacks=callbacks)
    trainer.fit(task(96))
    return trainer


@pytest.fixture(scope="module")
def ddp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def ranks(ddp_dir: Path) -> list[dict[str, Any]]:
    """What each of the 2 spawned ranks saved."""
    out_dir = ddp_dir
    one_process_run(out_dir / "one")  # its checkpoints are resumed on 2 processes
    context = mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD_SIZE, join=False)
    deadline = time.monotonic() + SPAWN_DEADLINE_S
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD_SIZE}-process run did not finish in {SPAWN_DEADLINE_S} s (a hung collective?)")
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def single() -> tuple[seqclf.Trainer, seqclf.History]:
    """The reference: 1 process at the global batch size, from rank 0's seeds."""
    seqclf.seed_everything(0)
    trainer = seqclf.Trainer(new_model(), epochs=EPOCHS, batch_size=PER_RANK_BATCH * WORLD_SIZE, seed=None,
                             device="cpu")
    history = trainer.fit(task(96), eval_data=task(50, seed=1))
    return trainer, history


def test_two_processes_at_half_the_batch_train_the_same_weights_as_one(
    ranks: list[dict[str, Any]], single: tuple[seqclf.Trainer, seqclf.History]
) -> None:
    trainer, _ = single
    assert trainer.state.step == EPOCHS * 3
    reference = trainer.model.state_dict()
    initial = new_model().state_dict()  # seeded by the autouse fixture: not the trained weights
    for result in ranks:
        assert result["seed"] == trainer.state.seed  # rank 0's draw, broadcast
        for name, value in reference.items():
            assert not torch.allclose(result["weights"][name], initial[name])
            torch.testing.assert_close(result["weights"][name], value, rtol=1e-4, atol=1e-5)
    for name in reference:
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name])


def test_every_rank_reports_the_global_metrics(
    ranks: list[dict[str, Any]], single: tuple[seqclf.Trainer, seqclf.History]
) -> None:
    trainer, history = single
    for result in ranks:
        assert len(result["history"]) == EPOCHS
        for record, expected in zip(result["history"], history, strict=True):
            assert record["step"] == expected["step"]
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_samples"):
                assert record[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
        evaluation = trainer.evaluate(task(51, seed=2))  # 51: the ranks' parts differ in size
        assert result["evaluate"]["samples"] == 51
        assert result["evaluate"]["loss"] == pytest.approx(evaluation["loss"], rel=1e-4)
        assert result["evaluate"]["accuracy"] == pytest.approx(evaluation["accuracy"])
        assert torch.equal(result["predict"], trainer.predict(task(7, seed=3)[0]))  # all of it, on every rank


def test_ranks_know_who_they_are(ranks: list[dict[str, Any]]) -> None:
    assert [result["attributes"] for result in ranks] == [(0, 2, True, 32), (1, 2, False, 32)]


def test_a_stop_on_one_rank_stops_all_ranks_at_the_same_step(ranks: list[dict[str, Any]]) -> None:
    for result in ranks:
        assert result["stop_batch"] == (2, 0)  # stopped after batch 1 of epoch 0: a pause, the epoch stays open
        assert result["stop_epoch"] == (3, 1)  # stopped after epoch 0's 3 steps


def test_a_last_global_batch_smaller_than_the_world_is_skipped_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    assert [result["uneven"][0] for result in ranks] == [3, 3]
    assert ranks[0]["uneven"][1] == ranks[1]["uneven"][1]


def test_a_dataset_of_items_is_split_like_tensors(ranks: list[dict[str, Any]]) -> None:
    for result in ranks:
        tensor_steps, tensor_weights = result["tensor_path"]
        dataset_steps, dataset_weights = result["dataset_path"]
        assert tensor_steps == dataset_steps == 2
        for name, value in tensor_weights.items():
            torch.testing.assert_close(dataset_weights[name], value)
            assert torch.equal(value, ranks[0]["tensor_path"][1][name])


def test_a_dataloader_must_bring_a_distributed_sampler(ranks: list[dict[str, Any]]) -> None:
    for result in ranks:
        assert result["sampler_steps"] == 4  # 64 / 2 ranks / batches of 8
        assert result["plain_loader_error"] == (
            "train_data as a DataLoader must split the data across the 2 processes with a "
            "torch.utils.data.DistributedSampler (or pass the Dataset and the trainer splits it); "
            "got a DataLoader with RandomSampler"
        )
    for name, value in ranks[0]["sampler_weights"].items():
        assert torch.equal(value, ranks[1]["sampler_weights"][name])


def test_a_one_process_checkpoint_resumes_on_two_processes(ranks: list[dict[str, Any]]) -> None:
    reference = one_process_run()
    for result in ranks:
        weights, history = result["resumed_from_one"]
        for name, value in reference.model.state_dict().items():
            torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5)
        for record, expected in zip(history, reference.history, strict=True):
            assert record["step"] == expected["step"]
            assert record["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-4)
            assert record["train_accuracy"] == pytest.approx(expected["train_accuracy"])


def test_a_two_process_checkpoint_resumes_in_one_process(ranks: list[dict[str, Any]], ddp_dir: Path) -> None:
    reference = one_process_run()
    path = ddp_dir / "two" / checkpoint_name(CROSS_STEP)
    assert seqclf.checkpoint.load_checkpoint(path)["trainer"]["world_size"] == WORLD_SIZE
    trainer = seqclf.Trainer(new_model(), epochs=EPOCHS, batch_size=PER_RANK_BATCH * WORLD_SIZE, seed=3, device="cpu")
    history = trainer.fit(task(96), resume_from=path)
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    for record, expected in zip(history, reference.history, strict=True):  # epoch 0's sums span both ranks
        assert record["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-4)
        assert record["train_accuracy"] == pytest.approx(expected["train_accuracy"])
    wrong = seqclf.Trainer(new_model(), epochs=EPOCHS, batch_size=PER_RANK_BATCH, seed=3, device="cpu")
    with pytest.raises(seqclf.checkpoint.CheckpointError, match=r"batch_size \* processes must equal .* expected 32"):
        wrong.fit(task(96), resume_from=path)


def test_a_same_world_resume_gives_each_rank_its_own_generators_back(ranks: list[dict[str, Any]]) -> None:
    """Mid-epoch, with dropout: bitwise the uninterrupted run on every rank (rank 1 does not get rank 0's)."""
    for result in ranks:
        reference, resumed = result["dropout_resume"]
        for name, value in reference.items():
            assert torch.equal(resumed[name], value), name
    assert torch.equal(ranks[0]["dropout_resume"][0]["head.weight"], ranks[1]["dropout_resume"][0]["head.weight"])


def test_an_uneven_last_global_batch_keeps_the_equivalence_with_one_process(ranks: list[dict[str, Any]]) -> None:
    seqclf.seed_everything(0)
    trainer = seqclf.Trainer(new_model(), epochs=2, batch_size=PER_RANK_BATCH * WORLD_SIZE, seed=5, device="cpu")
    trainer.fit(task(99))
    for result in ranks:
        steps, weights = result["uneven_99"]
        assert steps == trainer.state.step == 8
        for name, value in trainer.model.state_dict().items():
            torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5)


def test_small_data_recipe_takes_its_whole_step_budget_and_schedule_under_two_processes(
    ranks: list[dict[str, Any]]
) -> None:
    alone = small_data_run()  # 64 sequences in batches of 16: 4 steps an epoch, 10 epochs
    assert alone.state.step == 40 and small_data_lr(alone)[:2] == (40, 40)
    for result in ranks:
        steps, epochs, (total, taken, lr) = result["small_data"]
        assert (steps, epochs) == (40, 20)  # global batches of 32: 2 steps an epoch, so twice the epochs
        assert (total, taken) == (40, 40)  # the one-cycle schedule ran to its end
        assert lr == pytest.approx(small_data_lr(alone)[2], rel=1e-9) and lr < 1e-5  # annealed from 3e-3


def test_the_standardisation_of_a_sharded_dataloader_is_fitted_on_every_ranks_share(
    ranks: list[dict[str, Any]]
) -> None:
    x, _ = shifted_task()
    steps = x.double().reshape(-1, 3)  # (64 * 6, 3): all the data's time steps
    for result in ranks:  # rank 0 alone holds the +10 items, rank 1 the -10 ones: the whole has mean ~0
        mean, scale = result["standardize"]
        torch.testing.assert_close(mean, steps.mean(dim=0).float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(scale, steps.std(dim=0, correction=0).float(), rtol=1e-5, atol=1e-5)
    assert torch.equal(ranks[0]["standardize"][0], ranks[1]["standardize"][0])


def test_only_rank_0_writes_checkpoints_and_shows_a_progress_bar(ranks: list[dict[str, Any]], ddp_dir: Path) -> None:
    assert (ddp_dir / "dropout-rank0" / checkpoint_name(CROSS_STEP)).is_file()
    assert not (ddp_dir / "dropout-rank1").exists()  # rank 1 neither made its directory nor wrote
    assert "epoch 2/2: 100%" in ranks[0]["bar"]
    assert ranks[1]["bar"] == ""


# ------------------------------------------------------------- in one process


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, None), ({"WORLD_SIZE": "1", "RANK": "0"}, None),
     ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, distributed.DistributedEnv(3, 1, 4)),
     ({"WORLD_SIZE": "2", "RANK": "1"}, distributed.DistributedEnv(1, 1, 2))],
)
def test_environment_reads_what_torchrun_sets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: distributed.DistributedEnv | None
) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.environment() == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [({"WORLD_SIZE": "2"}, "RANK must be set to an int when WORLD_SIZE > 1 (torchrun sets it); got nothing"),
     ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK must lie in [0, 2) (WORLD_SIZE); got 2"),
     ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE must be an int; got 'two'")],
)
def test_environment_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        distributed.environment()
    assert str(info.value) == message


def test_setup_refuses_a_device_the_backends_cannot_reduce() -> None:
    with pytest.raises(ValueError) as info:
        distributed.setup(torch.device("mps"), distributed.DistributedEnv(0, 0, 2))
    assert str(info.value) == "device must be CPU or CUDA to train on 2 processes; got 'mps'"


def test_alone_the_helpers_are_the_single_process_answers() -> None:
    tensor = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(tensor) is tensor
    assert distributed.all_reduce_mean(tensor) is tensor
    assert distributed.any_rank(True, False) == (True, False)
    assert distributed.broadcast_int(7) == 7
    distributed.barrier()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    trainer = seqclf.Trainer(new_model(), batch_size=8, device="cpu")
    assert (trainer.rank, trainer.world_size, trainer.is_main_process, trainer.global_batch_size) == (0, 1, True, 8)
    assert trainer._train_model is trainer.model


def test_alone_any_dataloader_trains() -> None:
    loader = DataLoader(TensorDataset(*task(16)), batch_size=8, shuffle=True)
    distributed.require_distributed_sampler(loader, name="train_data")
    assert not distributed.has_distributed_sampler(loader)
