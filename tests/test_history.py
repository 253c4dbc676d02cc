from __future__ import annotations

import sys

import pytest

from seqclf import History


def test_series_and_last() -> None:
    history = History([{"epoch": 0, "val_accuracy": 0.5}, {"epoch": 1, "val_accuracy": 0.75}])
    assert history.series("val_accuracy") == [0.5, 0.75]
    assert history.last("epoch") == 1


def test_json_round_trip() -> None:
    history = History([{"epoch": 0, "train_loss": 0.25, "note": None}])
    restored = History.from_json(history.to_json())
    assert restored == history and isinstance(restored, History)
    assert history.to_list() == [{"epoch": 0, "train_loss": 0.25, "note": None}]


def test_unknown_key_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"key must be one of \['epoch'\]; got 'loss'"):
        History([{"epoch": 0}]).series("loss")
    with pytest.raises(KeyError, match="history has no records yet"):
        History().last("epoch")


def test_from_json_rejects_non_lists() -> None:
    with pytest.raises(ValueError, match="text must be a JSON array of objects; got dict"):
        History.from_json('{"epoch": 0}')


def test_to_dataframe_has_a_row_per_epoch() -> None:
    pytest.importorskip("pandas", reason="pandas is not installed")
    history = History([{"epoch": 0, "train_loss": 0.5}, {"epoch": 1, "train_loss": 0.25, "val_loss": 0.3}])
    frame = history.to_dataframe()
    assert list(frame.columns) == ["epoch", "train_loss", "val_loss"]
    assert frame["train_loss"].tolist() == history.series("train_loss") and len(frame) == 2


def test_to_dataframe_without_pandas_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"History.to_dataframe needs pandas, which is not installed: pip install pandas"):
        History([{"epoch": 0}]).to_dataframe()
