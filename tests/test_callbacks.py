from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import seqclf
from seqclf import Callback, Checkpoint, SequenceClassifier, Trainer, latest_checkpoint
from seqclf.callbacks import EarlyStopping, LRScheduler, PeriodicEvaluation, StepOutput
from seqclf.checkpoint import load_checkpoint
from seqclf.history import Record

from .conftest import make_sequences


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self.events.append("fit_start")

    def on_epoch_start(self, trainer: Trainer) -> None:
        self.events.append(f"epoch_start {trainer.state.epoch}")

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        self.events.append(f"batch {output.batch_index} step {trainer.state.step}")

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.events.append(f"evaluate {sorted(metrics)}")

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        self.events.append(f"epoch_end {record['epoch']}")

    def on_fit_end(self, trainer: Trainer) -> None:
        self.events.append("fit_end")


def trainer_with(*callbacks: Callback, epochs: int = 2) -> Trainer:
    model = SequenceClassifier(3, 8, 2)
    return Trainer(model, epochs=epochs, batch_size=8, seed=0, device="cpu", callbacks=callbacks)


def test_events_arrive_in_order() -> None:
    recorder = Recorder()
    x, y = make_sequences(16)
    trainer_with(recorder).fit((x, y), (x, y))
    evaluate = "evaluate ['accuracy', 'loss', 'samples']"
    assert recorder.events == [
        "fit_start",
        "epoch_start 0", "batch 0 step 1", "batch 1 step 2", evaluate, "epoch_end 0",
        "epoch_start 1", "batch 0 step 3", "batch 1 step 4", evaluate, "epoch_end 1",
        "fit_end",
    ]


class StopAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        if trainer.state.step == self.step:
            trainer.state.should_stop = True


def test_a_stop_mid_epoch_is_a_pause_that_the_next_fit_continues_exactly() -> None:
    recorder = Recorder()
    x, y = make_sequences(32)  # 4 batches per epoch
    seqclf.seed_everything(1)
    trainer = trainer_with(StopAtStep(3), recorder, epochs=3)
    history = trainer.fit((x, y))
    assert (trainer.state.step, trainer.state.epoch, trainer.state.batch_in_epoch) == (3, 0, 3)
    assert len(history) == 0  # the epoch is not done: no record, and it stays open
    assert recorder.events[-2:] == ["batch 2 step 3", "fit_end"]
    trainer.fit((x, y))  # continues: the epoch's last batch, then the other two epochs
    assert trainer.state.step == 12 and [record["step"] for record in history] == [4, 8, 12]
    seqclf.seed_everything(1)
    reference = trainer_with(epochs=3)
    reference.fit((x, y))
    expected = reference.model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in trainer.model.state_dict().items())
    assert history.series("train_loss") == reference.history.series("train_loss")


def test_early_stopping_on_a_metric_that_stops_improving() -> None:
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    x, y = make_sequences(32)
    trainer = trainer_with(stopper, epochs=50)
    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.0)  # nothing ever improves
    history = trainer.fit((x, y), (x, y))
    assert len(history) == 3  # the first epoch sets the best, two more without improvement
    assert stopper.state_dict() == {"best": history[0]["val_loss"], "bad_epochs": 2, "best_epoch": 0}
    restored = EarlyStopping(monitor="val_loss", patience=2)
    restored.load_state_dict(stopper.state_dict())
    assert restored.state_dict() == stopper.state_dict()


def test_early_stopping_restores_the_best_weights() -> None:
    class ScriptedScore(Callback):
        """Writes a scripted score into each record and keeps the weights (runs before EarlyStopping)."""

        def __init__(self) -> None:
            self.weights: list[dict[str, torch.Tensor]] = []

        def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
            record["score"] = [3.0, 1.0, 2.0, 4.0, 5.0, 6.0][record["epoch"]]
            self.weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    scripted = ScriptedScore()
    stopper = EarlyStopping(monitor="score", patience=3, restore_best_weights=True)
    x, y = make_sequences(32)
    trainer = trainer_with(scripted, stopper, epochs=6)
    history = trainer.fit((x, y))
    assert len(history) == 5 and stopper.best_epoch == 1  # epochs 2, 3, 4 did not improve
    assert not torch.equal(scripted.weights[1]["head.weight"], scripted.weights[4]["head.weight"])
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, scripted.weights[1][key], rtol=0, atol=0)
    restored = EarlyStopping(monitor="score", restore_best_weights=True)
    restored.load_state_dict(stopper.state_dict())
    assert restored.best_epoch == 1 and restored.best_weights is not None


@pytest.mark.parametrize("stops_early", [True, False])
def test_the_last_checkpoint_holds_the_restored_best_weights(tmp_path: Path, stops_early: bool) -> None:
    class ScriptedScore(Callback):
        def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
            record["score"] = [3.0, 1.0, 2.0, 4.0, 5.0][record["epoch"]]

    stopper = EarlyStopping(monitor="score", patience=2 if stops_early else 10, restore_best_weights=True)
    trainer = trainer_with(ScriptedScore(), stopper, Checkpoint(tmp_path), epochs=5)
    trainer.fit(make_sequences(32))
    assert trainer.state.finished is stops_early
    saved = SequenceClassifier.from_checkpoint(latest_checkpoint(tmp_path))
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[key], value, rtol=0, atol=0)
        torch.testing.assert_close(value, stopper.best_weights[key], rtol=0, atol=0)  # type: ignore[index]


def test_early_stopping_keeps_the_last_weights_by_default() -> None:
    stopper = EarlyStopping(monitor="val_loss", patience=50)
    x, y = make_sequences(32)
    trainer = trainer_with(stopper, epochs=3)
    trainer.fit((x, y), (x, y))
    assert stopper.best_weights is None and "best_weights" not in stopper.state_dict()


def test_early_stopping_names_a_missing_monitor() -> None:
    x, y = make_sequences(16)
    with pytest.raises(KeyError, match="EarlyStopping monitor must name a numeric key of the epoch record"):
        trainer_with(EarlyStopping(monitor="val_loss")).fit((x, y))  # no eval data: no val_loss


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patience": 0}, "patience must be an int >= 1; got 0"),
        ({"mode": "up"}, "mode must be 'min' or 'max'; got 'up'"),
        ({"min_delta": -1.0}, "min_delta must be >= 0; got -1.0"),
    ],
)
def test_early_stopping_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


def test_periodic_evaluation_counts_optimizer_steps_over_the_run_like_checkpoint(tmp_path: Path) -> None:
    x, y = make_sequences(40)
    reports: list[dict[str, float]] = []
    periodic = PeriodicEvaluation((x[:10], y[:10]), every_n_steps=2, report=reports.append)
    checkpoint = Checkpoint(tmp_path, every_n_steps=2, every_n_epochs=None, keep_last=None)
    trainer = trainer_with(periodic, checkpoint)
    trainer.fit((x, y))  # 5 batches per epoch, 10 steps: after steps 2, 4, 6, 8 and 10, across the epoch boundary
    assert [(r["step"], r["epoch"], r["batch"]) for r in reports] == [(2, 0, 1), (4, 0, 3), (6, 1, 0), (8, 1, 2), (10, 1, 4)]
    assert names(tmp_path) == [f"step-{step:08d}.pt" for step in (2, 4, 6, 8, 10)]  # the same steps
    assert reports == periodic.results
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["train_loss"] > 0 for r in reports)
    assert reports[-1]["accuracy"] == trainer.evaluate((x[:10], y[:10]))["accuracy"]
    assert trainer.model.training


def test_periodic_evaluation_validation() -> None:
    with pytest.raises(ValueError, match="every_n_steps must be an int >= 1; got 0"):
        PeriodicEvaluation(None, every_n_steps=0)
    x, y = make_sequences(8)
    with pytest.raises(ValueError, match=r"PeriodicEvaluation data sequences must have shape \(batch, time, 3\)"):
        trainer_with(PeriodicEvaluation((torch.randn(4, 2), y[:4]))).fit((x, y))


# ------------------------------------------------------------------ Checkpoint
def checkpointed(directory: Path, epochs: int = 2, **options: Any) -> tuple[Trainer, tuple[torch.Tensor, torch.Tensor]]:
    x, y = make_sequences(32)
    checkpoint = Checkpoint(directory, **options)
    return Trainer(SequenceClassifier(3, 8, 2), epochs=epochs, batch_size=8, seed=0, device="cpu", callbacks=[checkpoint]), (x, y)


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@pytest.mark.usefixtures("one_thread")
def test_checkpoint_keeps_the_last_n_and_never_touches_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "model.pt").write_text("mine too")
    trainer, data = checkpointed(tmp_path, epochs=3, every_n_steps=1, keep_last=2)
    trainer.fit(data)
    assert names(tmp_path) == ["model.pt", "notes.txt", "step-00000011.pt", "step-00000012.pt"]
    assert (tmp_path / "model.pt").read_text() == "mine too"
    kept_all, data = checkpointed(tmp_path / "all", epochs=3, every_n_epochs=1, keep_last=None)
    kept_all.fit(data)
    assert names(tmp_path / "all") == ["step-00000004.pt", "step-00000008.pt", "step-00000012.pt"]


@pytest.mark.usefixtures("one_thread")
def test_checkpoint_saves_at_epoch_ends_and_when_fit_ends(tmp_path: Path) -> None:
    trainer, data = checkpointed(tmp_path / "every2", epochs=3, every_n_epochs=2, keep_last=None)
    trainer.fit(data)
    assert names(tmp_path / "every2") == ["step-00000008.pt", "step-00000012.pt"]  # epoch 2, then the end of fit
    saved = load_checkpoint(tmp_path / "every2" / "step-00000008.pt")
    state = saved["trainer"]["state"]
    assert (state["epoch"], state["batch_in_epoch"], state["epoch_done"]) == (1, 4, True)  # epoch 1 is done
    assert len(saved["history"]) == 2  # the epoch-end save resumes at the next epoch, not at this one's end


@pytest.mark.usefixtures("one_thread")
def test_checkpoint_refuses_a_directory_holding_another_runs_checkpoints(tmp_path: Path) -> None:
    first, data = checkpointed(tmp_path, epochs=1)
    first.fit(data)
    before = (tmp_path / "step-00000004.pt").read_bytes()
    second, data = checkpointed(tmp_path, epochs=1)
    message = r"Checkpoint directory '.*' must not hold checkpoints of another run; got \['step-00000004.pt'\]. Resume from its newest"
    with pytest.raises(FileExistsError, match=message):
        second.fit(data)
    assert second.state.step == 0 and (tmp_path / "step-00000004.pt").read_bytes() == before
    second.epochs = 2
    second.fit(data, resume_from=latest_checkpoint(tmp_path))  # resuming it is the way on
    assert names(tmp_path) == ["step-00000004.pt", "step-00000008.pt"]
    third, data = checkpointed(tmp_path, epochs=2)
    with pytest.raises(FileExistsError, match=r"must not hold checkpoints from later than the resumed step 4; got \['step-00000008.pt'\]"):
        third.fit(data, resume_from=tmp_path / "step-00000004.pt")


def test_checkpoints_run_after_the_other_callbacks(tmp_path: Path) -> None:
    early, recorder = EarlyStopping(), Recorder()
    trainer = Trainer(SequenceClassifier(3, 8, 2), callbacks=[Checkpoint(tmp_path), early, recorder])
    assert trainer.callbacks[-1].__class__ is Checkpoint and trainer.callbacks[:2] == [early, recorder]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"every_n_steps": 0}, ValueError, "every_n_steps must be an int >= 1 or None; got 0"),
        ({"every_n_epochs": 1.5}, ValueError, "every_n_epochs must be an int >= 1 or None; got 1.5"),
        ({"keep_last": 0}, ValueError, "keep_last must be an int >= 1 or None; got 0"),
        ({"directory": 5}, TypeError, r"directory must be a str or os\.PathLike; got int"),
    ],
)
def test_checkpoint_validation(tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Checkpoint(**{"directory": tmp_path, **kwargs})


def test_checkpoint_directory_must_not_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"directory must be a directory; got the file '.*file'"):
        Checkpoint(tmp_path / "file")


class LearningRates(Callback):
    """Records the learning rate each optimizer step used (place it before LRScheduler)."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        self.rates.append(trainer.optimizer.param_groups[0]["lr"])


def one_cycle(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=12)


def test_lr_scheduler_steps_after_every_batch() -> None:
    rates = LearningRates()
    x, y = make_sequences(32)
    trainer_with(rates, LRScheduler(one_cycle), epochs=3).fit((x, y))  # 4 batches per epoch
    reference = one_cycle(torch.optim.Adam([torch.zeros(1, requires_grad=True)]))
    expected = []
    for _ in range(12):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert rates.rates == pytest.approx(expected)
    assert rates.rates[0] < max(rates.rates) and rates.rates[-1] < rates.rates[0]  # warm-up, then anneal


def test_lr_scheduler_steps_after_every_epoch() -> None:
    rates = LearningRates()
    x, y = make_sequences(16)
    schedule = LRScheduler(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1), interval="epoch")
    trainer_with(rates, schedule, epochs=3).fit((x, y))  # 2 batches per epoch
    assert rates.rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_lr_scheduler_state_resumes_the_schedule_exactly() -> None:
    x, y = make_sequences(32)
    initial = SequenceClassifier(3, 8, 2).state_dict()

    def trainer_from(schedule: LRScheduler, rates: LearningRates) -> Trainer:
        trainer = trainer_with(rates, schedule, epochs=3)
        trainer.model.load_state_dict(initial)
        return trainer

    full_rates = LearningRates()
    full = trainer_from(LRScheduler(one_cycle), full_rates)
    full.fit((x, y))

    first_rates, first_schedule = LearningRates(), LRScheduler(one_cycle)
    first = trainer_from(first_schedule, first_rates)
    first.epochs = 1
    first.fit((x, y))
    saved = {"schedule": first_schedule.state_dict(), "optimizer": first.optimizer.state_dict()}
    assert saved["schedule"]["last_epoch"] == 4

    resumed_rates, resumed_schedule = LearningRates(), LRScheduler(one_cycle)
    resumed_schedule.load_state_dict(saved["schedule"])  # before fit: applied when the scheduler is built
    assert resumed_schedule.state_dict() == saved["schedule"]
    resumed = trainer_from(resumed_schedule, resumed_rates)
    resumed.model.load_state_dict(first.model.state_dict())
    resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed.state = first.state
    resumed.fit((x, y))

    assert first_rates.rates + resumed_rates.rates == full_rates.rates
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_lr_scheduler_loads_state_into_a_built_scheduler() -> None:
    x, y = make_sequences(16)
    schedule = LRScheduler(one_cycle)
    trainer = trainer_with(schedule, epochs=1)
    trainer.fit((x, y))
    state = schedule.state_dict()
    trainer.epochs = 2
    trainer.fit((x, y))  # a second fit continues the same scheduler
    assert schedule.state_dict()["last_epoch"] == 4
    schedule.load_state_dict(state)
    assert schedule.state_dict()["last_epoch"] == 2
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(state["_last_lr"][0])


def test_lr_scheduler_validation() -> None:
    with pytest.raises(TypeError, match="factory must be a callable taking the optimizer; got int"):
        LRScheduler(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval must be 'step' or 'epoch'; got 'batch'"):
        LRScheduler(one_cycle, interval="batch")  # type: ignore[arg-type]
    x, y = make_sequences(8)
    plateau = LRScheduler(lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt))  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"factory must return .* \(ReduceLROnPlateau is not supported\); got ReduceLROnPlateau"):
        trainer_with(plateau).fit((x, y))
    assert LRScheduler(one_cycle).state_dict() == {}
