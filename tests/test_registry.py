from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from torch import Tensor, nn

import seqclf
from seqclf import LSTMFCN, SequenceClassifier, create_model, list_models, register_model
from seqclf.registry import model_entry


def test_list_models_sorted_and_filtered() -> None:
    assert list_models() == sorted(list_models())
    assert {"gru", "lstm", "lstm_fcn", "rnn"} <= set(list_models())
    assert list_models("lstm*") == [name for name in list_models() if name.startswith("lstm")]
    assert list_models("no-such-*") == []


@pytest.mark.parametrize(("name", "cls", "cell"), [("lstm", SequenceClassifier, "lstm"), ("gru", SequenceClassifier, "gru"),
                                                  ("rnn", SequenceClassifier, "rnn"), ("lstm_fcn", LSTMFCN, None)])
def test_create_model_builds_the_registered_class_with_its_defaults(name: str, cls: type, cell: str | None) -> None:
    model = create_model(name, input_size=4, num_classes=3)
    assert type(model) is cls and model.config.input_size == 4 and model.config.num_classes == 3
    if cell is not None:
        assert model.config.cell == cell and model.config.hidden_size == 64  # the estimator's default size


def test_options_override_the_names_defaults() -> None:
    model = create_model("gru", input_size=2, num_classes=2, hidden_size=7, readout="mean")
    assert (model.config.cell, model.config.hidden_size, model.config.readout) == ("gru", 7, "mean")
    fcn = create_model("lstm_fcn", input_size=2, num_classes=2, filters=(4, 4), kernel_sizes=(3, 3))
    assert fcn.config.filters == (4, 4)


def test_bad_names_and_options_are_refused_with_what_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"model must be one of the registered models \[.*'lstm'.*\]; got 'cnn'"):
        create_model("cnn", input_size=2, num_classes=2)
    with pytest.raises(TypeError, match=r"options of model 'lstm_fcn' must be among \[.*'filters'.*\]; got \['cell'\]"):
        create_model("lstm_fcn", input_size=2, num_classes=2, cell="gru")
    with pytest.raises(ValueError, match="hidden_size must be a positive int; got 0"):
        create_model("lstm", input_size=2, num_classes=2, hidden_size=0)
    assert model_entry("lstm_fcn").model_class is LSTMFCN
    assert "hidden_size" in model_entry("lstm").options and "input_size" not in model_entry("lstm").options


@dataclass(frozen=True)
class _TinyConfig:
    input_size: int
    num_classes: int
    scale: float = 1.0


class _Tiny(nn.Module):
    config_class = _TinyConfig

    def __init__(self, input_size: int, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        self.config = _TinyConfig(input_size, num_classes, scale)
        self.head = nn.Linear(input_size, num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.head(x.mean(dim=1)) * self.config.scale  # type: ignore[no-any-return]


def test_register_model_adds_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seqclf.registry, "_REGISTRY", dict(seqclf.registry._REGISTRY))
    register_model("tiny", scale=2.0)(_Tiny)
    assert "tiny" in list_models()
    model = create_model("tiny", input_size=3, num_classes=2)
    assert isinstance(model, _Tiny) and model.config.scale == 2.0
    register_model("tiny", scale=2.0)(_Tiny)  # the same class again (a reloaded module): accepted

    class Other(_Tiny):
        pass

    with pytest.raises(ValueError, match="model name 'tiny' is already registered to _Tiny; got another class, Other"):
        register_model("tiny")(Other)
    with pytest.raises(ValueError, match=r"defaults of model 'tiny2' must be options of _Tiny other than the sizes"):
        register_model("tiny2", depth=3)(_Tiny)
    with pytest.raises(ValueError, match="other than the sizes"):
        register_model("tiny2", input_size=3)(_Tiny)

    class NoConfig(nn.Module):
        pass

    with pytest.raises(TypeError, match="must have a config_class dataclass with fields"):
        register_model("bare")(NoConfig)
    bad_name: Any = ""
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        register_model(bad_name)
