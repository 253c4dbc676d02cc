"""The one atomic writer under every file seqclf saves: checkpoints, model, estimator and ONNX files."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from seqclf import SequenceClassifier, Trainer
from seqclf._files import write_atomically
from seqclf.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = SequenceClassifier(3, 4, 2)


def _estimator_save(path: Path, overwrite: bool) -> None:
    sklearn = pytest.importorskip("seqclf.sklearn", reason="scikit-learn is needed for the estimator's files")
    x = np.random.default_rng(0).normal(size=(6, 4, 3))
    clf = sklearn.SequenceClassifierEstimator(layout="ntc", model="lstm", hidden_size=4, min_steps=1, random_state=0)
    clf.set_params(device="cpu")
    clf.fit(x, np.array([0, 1] * 3)).save(path, overwrite=overwrite)


def _onnx_save(path: Path, overwrite: bool) -> None:
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    from seqclf.export import to_onnx

    to_onnx(MODEL, path, overwrite=overwrite)


WRITERS: dict[str, Callable[[Path, bool], object]] = {
    "save_checkpoint": lambda path, overwrite: save_checkpoint(
        Trainer(MODEL, device="cpu", progress=False).state_dict(), path, overwrite=overwrite
    ),
    "model.save": lambda path, overwrite: MODEL.save(path, overwrite=overwrite),
    "estimator.save": _estimator_save,
    "to_onnx": _onnx_save,
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_refuses_to_overwrite_with_one_message_and_replaces_only_when_asked(
    tmp_path: Path, writer: str
) -> None:
    path = tmp_path / "users-file"
    path.write_bytes(b"the user's own file")
    message = r"path '.*users-file' already exists; refusing to overwrite it \(pass overwrite=True to replace it\)"
    with pytest.raises(FileExistsError, match=message):
        WRITERS[writer](path, False)
    assert path.read_bytes() == b"the user's own file"
    WRITERS[writer](path, True)
    assert path.read_bytes() != b"the user's own file"
    assert [p.name for p in tmp_path.iterdir()] == ["users-file"]  # no temporary file left behind


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_full_disk_leaves_the_previous_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    path = tmp_path / "saved"
    path.write_bytes(b"the previous save")

    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match=r"could not write .*'.*saved' \(OSError: .*No space left.*\); the file that was there is unchanged") as raised:
        WRITERS[writer](path, True)
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"the previous save"
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]


def test_an_error_of_the_write_itself_passes_unchanged_and_nothing_is_left(tmp_path: Path) -> None:
    def fails(temporary: Path) -> None:
        temporary.write_bytes(b"half")
        raise RuntimeError("the exporter failed")

    with pytest.raises(RuntimeError, match="the exporter failed"):
        write_atomically(tmp_path / "out.onnx", fails, overwrite=False)
    assert not any(tmp_path.iterdir())
    with pytest.raises(IsADirectoryError, match="path must be a file path; got the directory"):
        write_atomically(tmp_path, fails, overwrite=True)
    with pytest.raises(FileNotFoundError, match="path must be in an existing directory"):
        write_atomically(tmp_path / "missing" / "out.onnx", fails, overwrite=False)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike; got int"):
        write_atomically(3, fails, overwrite=False)  # type: ignore[arg-type]
