from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import pickle
import select
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import seqclf
from seqclf import LSTMFCN, Checkpoint, CheckpointError, SequenceClassifier, Trainer, latest_checkpoint
from seqclf._model_record import rebuild_model
from seqclf.callbacks import Callback, EarlyStopping, StepOutput
from seqclf.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    UnsafeCheckpointError,
    checkpoint_files,
    load_checkpoint,
    save_checkpoint,
)

from .conftest import FIXTURES, fixture_expected, fixture_input, make_sequences

Data = tuple[torch.Tensor, torch.Tensor]
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models; and a forked child must not enter OpenMP


def build_run(directory: Path, *extra: Callback, every_n_steps: int = 3) -> tuple[Trainer, Data, Data]:
    """A small run with dropout (torch RNG), shuffling and a stateful callback: 3 epochs of 8 batches."""
    seqclf.seed_everything(0)
    x, y = make_sequences(64)
    model = SequenceClassifier(3, 8, 2, num_layers=2, dropout=0.3)
    callbacks = [EarlyStopping(monitor="train_loss", patience=50), Checkpoint(directory, every_n_steps=every_n_steps), *extra]
    trainer = Trainer(model, epochs=3, batch_size=8, seed=7, device="cpu", callbacks=callbacks)
    return trainer, (x, y), (x[:16], y[:16])


class HangAtStep(Callback):
    """Tells the parent it reached ``step`` and waits there to be killed."""

    def __init__(self, step: int, ready: Callable[[], None]) -> None:
        self.step, self.ready = step, ready

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        if trainer.state.step == self.step:
            self.ready()
            time.sleep(60)


def train_until_killed(directory: Path, where: str, ready: Callable[[], None]) -> None:
    """The child's work: train, and at ``where`` tell the parent and wait to be SIGKILLed."""
    if where == "between-steps":
        trainer, train, evaluation = build_run(directory, HangAtStep(14, ready))
    else:  # inside the save of step 15, after the temporary file is written and fsynced, before os.replace
        replace = os.replace

        def hanging_replace(source: str, target: str) -> None:
            if Path(target).name == "step-00000015.pt":
                ready()
                time.sleep(60)
            replace(source, target)

        os.replace = hanging_replace  # type: ignore[assignment]
        trainer, train, evaluation = build_run(directory)
    trainer.fit(train, evaluation)


def sigkill_child_at(directory: Path, where: str) -> None:
    """Fork a child process that trains, and SIGKILL it once it reports reaching ``where``.

    Forking spares the child the seconds of importing torch; it is still a separate
    process, killed with no chance to clean up, and the parent resumes from its files.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            train_until_killed(directory, where, lambda: os.write(write_end, b"ready\n") and None)
        finally:
            os._exit(1)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 60)
        message = os.read(read_end, 6) if ready else b""
        assert message == b"ready\n", "the child ended before reaching the kill point"
        os.kill(pid, signal.SIGKILL)
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def final_state(trainer: Trainer) -> tuple[dict[str, torch.Tensor], list[dict[str, object]]]:
    history = [{k: v for k, v in record.items() if k != "duration_s"} for record in trainer.history]
    return trainer.model.state_dict(), history


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL (POSIX)")
@pytest.mark.parametrize("where", ["between-steps", "during-save"])
def test_sigkilled_run_resumes_to_bitwise_identical_weights(tmp_path: Path, where: str) -> None:
    """A child process is SIGKILLed mid-epoch (epoch 1 of 3), then the run resumes from its last checkpoint."""
    killed_dir = tmp_path / "killed"
    sigkill_child_at(killed_dir, where)
    latest = latest_checkpoint(killed_dir)
    assert latest is not None and latest.name == "step-00000012.pt"
    saved = load_checkpoint(latest)["trainer"]["state"]
    assert (saved["epoch"], saved["batch_in_epoch"]) == (1, 4)  # mid-epoch
    leftovers = [p.name for p in killed_dir.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == (1 if where == "during-save" else 0)  # the cut-short save left only a temp file

    resumed, train, evaluation = build_run(killed_dir)
    resumed.fit(train, evaluation, resume_from=latest)
    reference, train, evaluation = build_run(tmp_path / "reference")
    reference.fit(train, evaluation)
    weights, history = final_state(resumed)
    expected_weights, expected_history = final_state(reference)
    assert weights.keys() == expected_weights.keys()
    assert all(torch.equal(weights[k], expected_weights[k]) for k in weights), "weights differ from the uninterrupted run"
    assert history == expected_history
    assert resumed.callbacks[0].state_dict() == reference.callbacks[0].state_dict()  # EarlyStopping resumed too
    assert not [p for p in killed_dir.iterdir() if p.name.endswith(".tmp")]  # the next run cleaned up


def test_checkpoint_holds_everything_as_plain_data(tmp_path: Path) -> None:
    trainer, train, evaluation = build_run(tmp_path / "run")
    trainer.epochs = 1
    trainer.fit(train, evaluation)
    path = save_checkpoint(trainer.state_dict(), tmp_path / "one.pt")
    data = torch.load(path, weights_only=True)  # the plain torch reader accepts it: tensors and plain data only
    assert data["format"] == FORMAT and data["format_version"] == FORMAT_VERSION
    assert data["seqclf_version"] == seqclf.__version__ and data["torch_version"] == str(torch.__version__)
    assert data["model"]["config"] == trainer.model.config.to_dict()  # type: ignore[operator]
    assert data["optimizer"]["class"] == "Adam" and data["optimizer"]["state_dict"]["state"]
    assert data["trainer"]["batch_size"] == 8 and data["trainer"]["state"]["step"] == 8
    assert [c["class"] for c in data["callbacks"]] == ["EarlyStopping", "ProgressBar", "Checkpoint"]
    assert len(data["rng"]) == 1 and set(data["rng"][0]) >= {"torch", "numpy", "python"}  # one entry per rank
    assert data["history"] == trainer.history.to_list()
    assert len(data["sha256"]) == 64


def test_from_checkpoint_rebuilds_a_ready_model(tmp_path: Path) -> None:
    trainer, train, _ = build_run(tmp_path / "run")
    trainer.epochs = 1
    trainer.fit(train)
    path = latest_checkpoint(tmp_path / "run")
    assert path is not None
    model = SequenceClassifier.from_checkpoint(path)
    assert model.config == trainer.model.config and not model.training
    trainer.model.eval()
    torch.testing.assert_close(model(train[0]), trainer.model(train[0]), rtol=0, atol=0)


def test_loading_into_a_model_of_another_config_names_the_fields(tmp_path: Path) -> None:
    trainer, train, _ = build_run(tmp_path / "run")
    trainer.epochs = 1
    trainer.fit(train)
    path = latest_checkpoint(tmp_path / "run")
    other = Trainer(SequenceClassifier(3, 16, 2, cell="gru"), epochs=2, batch_size=8, device="cpu")
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    message = r"model config must match the checkpoint's; fields \['cell', 'dropout', 'hidden_size', 'num_layers'\] differ \(checkpoint vs model: cell='lstm' vs 'gru', dropout=0.3 vs 0.0, hidden_size=8 vs 16, num_layers=2 vs 1\)"
    with pytest.raises(CheckpointError, match=message):
        other.fit(train, resume_from=path)
    assert other.state.step == 0
    assert all(torch.equal(before[k], v) for k, v in other.model.state_dict().items())


class Payload:
    """Unpickling this creates a file: proof of code execution if the file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def write_malicious(path: Path, marker: Path, kind: str) -> None:
    payload = {"format": FORMAT, "format_version": 1, "model": Payload(marker)}
    if kind == "torch-zip":
        torch.save(payload, path)
    else:  # a bare pickle, like torch's legacy format (protocol 2) or a newer protocol
        path.write_bytes(pickle.dumps(payload, protocol=2 if kind == "pickle-2" else 5))


UNSAFE = r"refused to load .*gift.pt': a checkpoint must hold only tensors and plain data; got a file that would import and call \S*open when unpickled. Nothing in it was run."


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("torch-zip", UnsafeCheckpointError, UNSAFE),
        ("pickle-2", UnsafeCheckpointError, UNSAFE),
        ("pickle-5", CheckpointError, r"gift.pt' must be a complete file written by seqclf; got a truncated, corrupted or foreign file \(UnpicklingError"),
    ],
)
@pytest.mark.parametrize("entry", ["load_checkpoint", "from_checkpoint", "resume_from"])
def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(
    tmp_path: Path, kind: str, error: type[Exception], message: str, entry: str
) -> None:
    path, marker = tmp_path / "gift.pt", tmp_path / "pwned"
    write_malicious(path, marker, kind)
    with pytest.raises(error, match=message):
        if entry == "load_checkpoint":
            load_checkpoint(path)
        elif entry == "from_checkpoint":
            SequenceClassifier.from_checkpoint(path)
        else:
            x, y = make_sequences(16)
            Trainer(SequenceClassifier(3, 8, 2), device="cpu").fit((x, y), resume_from=path)
    assert not marker.exists(), "the payload ran"
    # control: the payload is live, an unsafe load does run it (so the check above can fail)
    if kind == "torch-zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())  # the point of the control
    assert marker.exists()


def a_checkpoint(tmp_path: Path) -> Path:
    trainer, train, _ = build_run(tmp_path / "run")
    trainer.epochs = 1
    trainer.fit(train)
    path = tmp_path / "run" / "step-00000008.pt"  # the Checkpoint callback's save at the epoch's end
    return path.rename(tmp_path / "good.pt")


def damage(path: Path, how: str) -> Path:
    data = path.read_bytes()
    target = path.with_name(f"{how}.pt")
    if how == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "text":
        target.write_text("this is not a checkpoint\n" * 20)
    elif how == "flipped-weight-byte":  # the zip reader does not notice: only the checksum does
        weights = load_checkpoint(path)["model"]["state_dict"]["head.weight"]
        raw = weights.reshape(-1).view(torch.uint8).numpy().tobytes()
        offset = data.index(raw)
        target.write_bytes(data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1 :])
    return target


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", r"checkpoint '.*truncated.pt' must be a complete file written by seqclf; got a truncated, corrupted or foreign file \("),
        ("empty", r"must be a complete file written by seqclf; got a truncated, corrupted or foreign file \(EOFError"),
        ("text", r"must be a complete file written by seqclf; got a truncated, corrupted or foreign file"),
        ("flipped-weight-byte", r"checkpoint '.*flipped-weight-byte.pt' is corrupted: its content must match the SHA-256 checksum stored in it; got [0-9a-f]{16}\.\.\. for a stored [0-9a-f]{16}\.\.\."),
    ],
)
def test_truncated_or_corrupted_files_are_refused(tmp_path: Path, how: str, message: str) -> None:
    bad = damage(a_checkpoint(tmp_path), how)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=message):
        SequenceClassifier.from_checkpoint(bad)


def test_files_that_are_not_seqclf_checkpoints_are_refused(tmp_path: Path) -> None:
    state_dict = tmp_path / "weights.pt"
    torch.save(SequenceClassifier(3, 8, 2).state_dict(), state_dict)
    with pytest.raises(CheckpointError, match=r"must be a seqclf checkpoint \(a dict with format='seqclf.checkpoint'\); got a PyTorch file that is not a seqclf file \(a dict with keys \[.*'head.bias'"):
        load_checkpoint(state_dict)
    newer = Trainer(SequenceClassifier(3, 8, 2), device="cpu").state_dict()
    save_checkpoint(newer, tmp_path / "newer.pt")
    data = torch.load(tmp_path / "newer.pt", weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    data["sha256"] = seqclf._files.digest(data)
    torch.save(data, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match=rf"must have format_version <= {FORMAT_VERSION} \(seqclf .*\); got {FORMAT_VERSION + 1}, written by seqclf"):
        load_checkpoint(tmp_path / "newer.pt")
    incomplete = Trainer(SequenceClassifier(3, 8, 2), device="cpu").state_dict()
    del incomplete["history"]
    save_checkpoint(incomplete, tmp_path / "incomplete.pt")
    with pytest.raises(CheckpointError, match="is not a valid seqclf checkpoint: 'history' must be a list; got NoneType"):
        Trainer(SequenceClassifier(3, 8, 2), device="cpu").fit(make_sequences(8), resume_from=tmp_path / "incomplete.pt")


def test_missing_path_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint path must name an existing file; got '.*nope.pt', which does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(IsADirectoryError, match=r"checkpoint path must name a file; got the directory .*latest_checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike; got int"):
        load_checkpoint(3)  # type: ignore[arg-type]
    x, y = make_sequences(16)
    trainer = Trainer(SequenceClassifier(3, 8, 2), device="cpu")
    with pytest.raises(FileNotFoundError, match="which does not exist"):
        trainer.fit((x, y), resume_from=tmp_path / "nope.pt")
    assert trainer.state.step == 0


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("failing", ["fsync", "write"])
def test_failed_save_raises_and_leaves_previous_checkpoints_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A full disk (ENOSPC) at the third save: clear OSError, earlier files byte-identical, no temp file left."""
    directory = tmp_path / "run"
    trainer, train, _ = build_run(directory, every_n_steps=2)
    before: dict[str, str] = {}

    class FullDiskAtStep6(Callback):
        def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
            if trainer.state.step != 6:
                return
            before.update(digests(directory))

            def no_space(*args: object) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            if failing == "fsync":
                monkeypatch.setattr(os, "fsync", no_space)
            else:
                monkeypatch.setattr(torch, "save", lambda obj, file: (file.write(b"partial"), no_space()))

    trainer.callbacks.insert(0, FullDiskAtStep6())
    with pytest.raises(OSError, match=r"could not write checkpoint '.*step-00000006.pt' \(OSError: \[Errno 28\] No space left on device\); no file was written") as raised:
        trainer.fit(train)
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(before) == ["step-00000002.pt", "step-00000004.pt"]
    assert digests(directory) == before  # nothing changed, no temporary file left behind
    assert load_checkpoint(directory / "step-00000004.pt")["trainer"]["state"]["step"] == 4


def test_save_checkpoint_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    users_file = tmp_path / "model.pt"
    users_file.write_text("the user's own file")
    trainer = Trainer(SequenceClassifier(3, 8, 2), device="cpu")
    with pytest.raises(FileExistsError, match=r"path '.*model.pt' already exists; refusing to overwrite it \(pass overwrite=True to replace it\)"):
        save_checkpoint(trainer.state_dict(), users_file)
    assert users_file.read_text() == "the user's own file"
    save_checkpoint(trainer.state_dict(), users_file, overwrite=True)
    assert load_checkpoint(users_file)["format"] == FORMAT
    with pytest.raises(FileNotFoundError, match="path must be in an existing directory"):
        save_checkpoint(trainer.state_dict(), tmp_path / "missing" / "a.pt")


def test_checkpoint_values_must_be_plain_data(tmp_path: Path) -> None:
    class Odd(Callback):
        def state_dict(self) -> dict[str, object]:
            return {"when": object()}

    trainer = Trainer(SequenceClassifier(3, 8, 2), device="cpu", callbacks=[Odd()])
    with pytest.raises(TypeError, match=r"checkpoint values must be tensors or plain data .*; got object at checkpoint\['callbacks'\]\[0\]\['state'\]\['when'\]"):
        save_checkpoint(trainer.state_dict(), tmp_path / "a.pt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 4}, r"batch_size \* processes must equal the checkpoint's global batch to resume its epochs "
                            r"exactly: expected 8 \(batch_size 8 on 1 processes\); got 4 \(batch_size 4 on 1\)"),
        ({"optimizer": lambda p: torch.optim.SGD(p, lr=0.1)}, r"optimizer must be a Adam like the checkpoint's; got SGD"),
    ],
)
def test_resume_refuses_a_different_setup_before_any_step(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = a_checkpoint(tmp_path)
    x, y = make_sequences(16)
    trainer = Trainer(SequenceClassifier(3, 8, 2, num_layers=2, dropout=0.3), **{"batch_size": 8, "device": "cpu", **change})  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match=message):
        trainer.fit((x, y), resume_from=path)
    assert trainer.state.step == 0


def test_checkpoint_files_and_latest(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None and checkpoint_files(tmp_path / "missing") == []
    for name in ("step-00000010.pt", "step-00000009.pt", "step-00000100.pt", "notes.txt", ".step-00000200.pt.ab12.tmp"):
        (tmp_path / name).write_text("")
    assert [p.name for p in checkpoint_files(tmp_path)] == ["step-00000009.pt", "step-00000010.pt", "step-00000100.pt"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000100.pt"


def test_resume_from_an_epoch_end_checkpoint_is_exact(tmp_path: Path) -> None:
    first, train, evaluation = build_run(tmp_path / "first", every_n_steps=100)
    first.epochs = 1
    first.fit(train, evaluation)
    resumed, train, evaluation = build_run(tmp_path / "resumed", every_n_steps=100)
    resumed.fit(train, evaluation, resume_from=tmp_path / "first" / "step-00000008.pt")
    reference, train, evaluation = build_run(tmp_path / "reference", every_n_steps=100)
    reference.fit(train, evaluation)
    weights, history = final_state(resumed)
    expected_weights, expected_history = final_state(reference)
    assert all(torch.equal(weights[k], expected_weights[k]) for k in weights)
    assert history == expected_history and len(history) == 3


# ------------------------------------------------- resume on every data path
class Items(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A map-style dataset of items: the trainer loads it through a DataLoader of its own."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


class Seen(Callback):
    """Records the labels' positions: which samples each step trained on."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []

    def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
        self.batches.append(output.batch.x[:, 0, 0].tolist())


def make_train_data(kind: str) -> object:
    x, y = make_sequences(20)
    dataset = torch.utils.data.TensorDataset(x, y)
    if kind == "shuffled-loader":
        return torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)
    if kind == "loader-with-own-generator":
        return torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(9))
    return Items(x, y)


def data_path_run(directory: Path, kind: str, *extra: Callback) -> tuple[Trainer, object]:
    seqclf.seed_everything(0)
    data = make_train_data(kind)
    model = SequenceClassifier(3, 8, 2, num_layers=2, dropout=0.3)
    callbacks = [Checkpoint(directory, every_n_steps=3, keep_last=None), *extra]
    return Trainer(model, epochs=2, batch_size=4, seed=7, device="cpu", callbacks=callbacks), data


@pytest.mark.parametrize("kind", ["shuffled-loader", "loader-with-own-generator", "dataset-of-items"])
def test_a_mid_epoch_resume_is_exact_on_every_data_path(tmp_path: Path, kind: str) -> None:
    """5 batches per epoch; resumed from step 3 (mid-epoch 0) and step 6 (mid-epoch 1): bitwise the same run."""
    seen = Seen()
    reference, data = data_path_run(tmp_path / "reference", kind, seen)
    reference.fit(data)
    expected = reference.model.state_dict()
    for step in (3, 6):
        resumed_seen = Seen()
        resumed, data = data_path_run(tmp_path / f"resumed-{step}", kind, resumed_seen)
        resumed.fit(data, resume_from=tmp_path / "reference" / f"step-{step:08d}.pt")
        assert resumed_seen.batches == seen.batches[step:]  # the same samples, none repeated or skipped
        assert all(torch.equal(value, expected[name]) for name, value in resumed.model.state_dict().items())
        assert resumed.history.series("train_loss") == reference.history.series("train_loss")


class ShuffleOnItsOwn(torch.utils.data.Sampler[int]):
    """A sampler drawing its order from torch's global generator, which the trainer cannot reach."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.size).tolist())


def test_a_mid_epoch_resume_on_a_sampler_that_cannot_be_replayed_is_refused_with_why(tmp_path: Path) -> None:
    x, y = make_sequences(20)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4, sampler=ShuffleOnItsOwn(20))
    first = Trainer(SequenceClassifier(3, 8, 2), epochs=2, batch_size=4, seed=1, device="cpu",
                    callbacks=[Checkpoint(tmp_path, every_n_steps=3, keep_last=None)])
    first.fit(loader)
    second = Trainer(SequenceClassifier(3, 8, 2), epochs=2, batch_size=4, seed=1, device="cpu")
    before = {k: v.clone() for k, v in second.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"train_data's DataLoader must have a sampler whose order the trainer can replay to resume mid-epoch; got a ShuffleOnItsOwn"):
        second.fit(loader, resume_from=tmp_path / "step-00000003.pt")
    assert second.state.step == 0 and all(torch.equal(before[k], v) for k, v in second.model.state_dict().items())
    second.fit(loader, resume_from=tmp_path / "step-00000005.pt")  # an epoch's end: the next epoch draws its order
    assert second.state.step == 10  # from the global generator, restored as it was then: exact
    expected = first.model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in second.model.state_dict().items())


def test_a_failed_resume_leaves_the_trainer_unchanged(tmp_path: Path) -> None:
    """Model and optimizer fit but the optimizer's parameter groups do not: nothing may change."""
    path = a_checkpoint(tmp_path)

    def two_groups(params: Iterator[torch.nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        return torch.optim.Adam([{"params": params[:2]}, {"params": params[2:]}], lr=1e-3)

    early = EarlyStopping(monitor="train_loss", patience=50)
    trainer = Trainer(SequenceClassifier(3, 8, 2, num_layers=2, dropout=0.3), batch_size=8, device="cpu",
                      optimizer=two_groups, callbacks=[early])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"optimizer state must fit this trainer's optimizer") as raised:
        trainer.fit(make_sequences(16), resume_from=path)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items()), "weights were overwritten"
    assert str(raised.value).endswith("parameter groups of [10] parameters; got groups of [2, 8]")
    assert early.state_dict() == {"best": float("inf"), "bad_epochs": 0, "best_epoch": None}
    assert trainer.state.step == 0 and len(trainer.history) == 0 and not trainer.optimizer.state


def test_a_paused_run_resumes_to_its_end_and_an_ended_run_says_why_it_trains_no_more(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class TimeBudget(Callback):  # a pause: stops after step 3 of 12, mid-epoch
        def on_batch_end(self, trainer: Trainer, output: StepOutput) -> None:
            if trainer.state.step == 3:
                trainer.state.should_stop = True

    paused, train, _ = build_run(tmp_path / "paused", TimeBudget(), every_n_steps=100)
    paused.fit(train)
    assert [p.name for p in (tmp_path / "paused").iterdir()] == ["step-00000003.pt"]
    resumed, train, _ = build_run(tmp_path / "paused")
    resumed.fit(train, resume_from=tmp_path / "paused" / "step-00000003.pt")
    reference, train, _ = build_run(tmp_path / "reference")
    reference.fit(train)
    assert resumed.state.step == reference.state.step == 24
    expected = reference.model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in resumed.model.state_dict().items())

    seqclf.seed_everything(0)
    x, y = make_sequences(64)
    ended = Trainer(SequenceClassifier(3, 8, 2), epochs=20, batch_size=8, seed=1, device="cpu",
                    callbacks=[EarlyStopping(monitor="train_loss", patience=1, min_delta=10.0), Checkpoint(tmp_path / "ended")])
    ended.fit((x, y))
    assert ended.state.step == 16 and ended.state.finished  # ended after epoch 1 for good
    again = Trainer(SequenceClassifier(3, 8, 2), epochs=20, batch_size=8, seed=1, device="cpu",
                    callbacks=[EarlyStopping(monitor="train_loss", patience=1, min_delta=10.0)])
    with caplog.at_level("WARNING", logger="seqclf.trainer"):
        again.fit((x, y), resume_from=latest_checkpoint(tmp_path / "ended"))
    assert again.state.step == 16 and len(again.history) == 2
    assert "the run ended at epoch 2 (step 16): a callback ended it for good (e.g. EarlyStopping)" in caplog.text


def test_state_dict_round_trips_between_trainers_in_memory(tmp_path: Path) -> None:
    first, train, _ = build_run(tmp_path / "a", every_n_steps=100)
    first.epochs = 1
    first.fit(train)
    second, train, _ = build_run(tmp_path / "b", every_n_steps=100)
    second.load_state_dict(first.state_dict())
    assert second.state.step == 8 and second.history.to_list() == first.history.to_list()
    kept = {k: v.clone() for k, v in first.optimizer.state_dict()["state"][0].items()}
    second.fit(train)  # second's optimizer state is its own copy: first's stays as it was
    assert second.state.step == 24
    assert all(torch.equal(v, first.optimizer.state_dict()["state"][0][k]) for k, v in kept.items())


def test_a_state_dict_is_a_snapshot_that_later_training_does_not_change(tmp_path: Path) -> None:
    trainer, train, _ = build_run(tmp_path, every_n_steps=100)
    trainer.epochs = 1
    trainer.fit(train)
    snapshot = trainer.state_dict()
    before = {k: v.clone() for k, v in snapshot["model"]["state_dict"].items()}
    trainer.epochs = 2
    trainer.fit(train)
    assert all(torch.equal(before[k], v) for k, v in snapshot["model"]["state_dict"].items())
    assert not torch.equal(before["head.weight"], trainer.model.state_dict()["head.weight"])


def test_a_checkpoint_from_before_a_config_field_existed_still_loads(tmp_path: Path) -> None:
    model = SequenceClassifier(3, 4, 2)
    trainer = Trainer(model, epochs=1, batch_size=8, seed=0, device="cpu", progress=False)
    state = trainer.state_dict()
    del state["model"]["config"]["normalize"]  # written before the field was added
    path = save_checkpoint(state, tmp_path / "old.pt")
    loaded = SequenceClassifier.from_checkpoint(path)
    assert loaded.config == model.config
    resumed = Trainer(SequenceClassifier(3, 4, 2), epochs=1, batch_size=8, device="cpu", progress=False)
    resumed.load_state_dict(load_checkpoint(path))  # the trainer path checks the config the same way


@dataclasses.dataclass(frozen=True)
class MeanConfig:
    """The config of a second model class, not a SequenceClassifier: the rebuild is generic."""

    input_size: int
    num_classes: int

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MeanConfig:
        return cls(**data)  # type: ignore[arg-type]


class MeanClassifier(torch.nn.Module):
    """Classifies the mean of a sequence's steps."""

    def __init__(self, input_size: int, num_classes: int) -> None:
        super().__init__()
        self.config = MeanConfig(input_size, num_classes)
        self.head = torch.nn.Linear(input_size, num_classes)

    @classmethod
    def from_config(cls, config: MeanConfig) -> MeanClassifier:
        return cls(config.input_size, config.num_classes)

    @classmethod
    def from_checkpoint(cls, path: Path) -> MeanClassifier:
        return rebuild_model(cls, MeanConfig, path)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(x.mean(dim=1))


def test_any_model_class_with_a_config_is_rebuilt_from_its_checkpoint(tmp_path: Path) -> None:
    x, y = make_sequences(16)
    trainer = Trainer(MeanClassifier(3, 2), epochs=1, batch_size=8, device="cpu")
    trainer.fit((x, y))
    path = save_checkpoint(trainer.state_dict(), tmp_path / "mean.pt")
    model = MeanClassifier.from_checkpoint(path)
    assert model.config == MeanConfig(3, 2) and not model.training
    torch.testing.assert_close(model(x), trainer.model(x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"must hold a SequenceClassifier to rebuild one; got a MeanClassifier: use MeanClassifier.from_checkpoint"):
        SequenceClassifier.from_checkpoint(path)


def test_a_file_that_appears_during_a_save_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seqclf import _files

    path = tmp_path / "run.pt"
    real_save = torch.save

    def save_while_another_writer_creates_the_file(obj: object, file: object) -> None:
        path.write_bytes(b"another writer's file")  # after save_checkpoint checked that path was free
        real_save(obj, file)  # type: ignore[arg-type]

    monkeypatch.setattr(_files.torch, "save", save_while_another_writer_creates_the_file)
    with pytest.raises(FileExistsError, match="already exists; refusing to overwrite it"):
        save_checkpoint({"weights": torch.zeros(2)}, path)
    assert path.read_bytes() == b"another writer's file"
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind


def _fixture_models() -> list[tuple[str, torch.nn.Module]]:
    """Fresh models of the settings the fixture checkpoints were written with (tests/fixtures/make_fixtures.py)."""
    return [
        ("sequence_classifier_checkpoint.pt", SequenceClassifier(3, 4, 3, normalize=True)),
        ("lstm_fcn_checkpoint.pt", LSTMFCN(3, 3, hidden_size=4, filters=(4, 4, 4), kernel_sizes=(3, 3, 3), normalize=True)),
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["sequence_classifier", "lstm_fcn"])
def test_checkpoints_written_by_seqclf_0_1_0_still_load_and_predict_the_same(index: int) -> None:
    name, fresh = _fixture_models()[index]
    expected = torch.tensor(fixture_expected()[name])  # (5, 3): the logits when the file was written
    x, lengths = fixture_input()  # (5, 7, 3), (5,)
    model = type(fresh).from_checkpoint(FIXTURES / name)  # type: ignore[attr-defined]
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), expected, rtol=0, atol=1e-6)
    # the whole run state loads into a trainer of the same settings, which then continues it
    trainer = Trainer(fresh, epochs=3, batch_size=8, seed=0, device="cpu", progress=False)
    trainer.load_state_dict(load_checkpoint(FIXTURES / name))
    assert trainer.state.epoch == 2 and len(trainer.history) == 2
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trainer.model(x, lengths), expected, rtol=0, atol=1e-6)
    trainer.fit(make_sequences(24, time=7, features=3, classes=3))
    assert trainer.state.epoch == 3
