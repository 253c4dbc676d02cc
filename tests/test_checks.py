from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from seqclf import ModelConfig
from seqclf._checks import boolean, config_from_dict, fraction, one_of, positive_int


def test_positive_int_takes_python_and_numpy_ints_and_names_the_argument() -> None:
    assert positive_int("n", 3) == 3
    value = positive_int("n", np.int64(4))
    assert value == 4 and type(value) is int
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(ValueError, match=rf"n must be a positive int; got {bad!r}"):
            positive_int("n", bad)


def test_fraction_one_of_and_boolean() -> None:
    assert fraction("dropout", 0) == 0.0 and fraction("dropout", 0.5) == 0.5
    for bad in (1.0, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match=r"dropout must be a float in \[0, 1\)"):
            fraction("dropout", bad)
    one_of("cell", "gru", ("lstm", "gru"))
    with pytest.raises(ValueError, match=r"cell must be one of \('lstm', 'gru'\); got 'lstn'"):
        one_of("cell", "lstn", ("lstm", "gru"))
    boolean("flag", False)
    with pytest.raises(TypeError, match="flag must be a bool; got 1"):
        boolean("flag", 1)


def test_config_from_dict_refuses_unknown_fields() -> None:
    @dataclass(frozen=True)
    class Config:
        size: int
        name: str = "x"

    assert config_from_dict(Config, {"size": 2}) == Config(2)
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]; expected a subset of \['name', 'size'\]"):
        config_from_dict(Config, {"size": 2, "colour": "red"})


def test_a_model_config_stores_numpy_sizes_as_plain_ints() -> None:
    config = ModelConfig(input_size=np.int64(3), hidden_size=np.int32(8), num_classes=2)  # type: ignore[arg-type]
    assert type(config.input_size) is int and type(config.hidden_size) is int
    assert ModelConfig.from_dict(config.to_dict()) == config
