"""The record of a run: one plain dict per epoch, JSON round-trippable."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

__all__ = ["History", "Record", "Value"]

Value = int | float | str | None
"""One value of an epoch's record: a metric, a count, a name or None."""
Record = dict[str, Value]
"""One epoch's record: ``{"epoch": 0, "train_loss": 0.69, ...}``."""


class History(list[Record]):
    """A list of per-epoch records such as ``{"epoch": 0, "train_loss": 0.31, ...}``.

    Examples:
        >>> history = History([{"epoch": 0, "val_accuracy": 0.9}])
        >>> history.series("val_accuracy")
        [0.9]
        >>> History.from_json(history.to_json()) == history
        True
    """

    def series(self, key: str) -> list[Value]:
        """The values of ``key`` over the epochs that recorded it."""
        if self and not any(key in record for record in self):
            known = sorted({name for record in self for name in record})
            raise KeyError(f"key must be one of {known}; got {key!r}")
        return [record[key] for record in self if key in record]

    def last(self, key: str) -> Value:
        """The latest recorded value of ``key``."""
        values = self.series(key)
        if not values:
            raise KeyError(f"history has no records yet; asked for {key!r}")
        return values[-1]

    def to_list(self) -> list[Record]:
        """A plain list of dict copies."""
        return [dict(record) for record in self]

    def to_dataframe(self) -> pandas.DataFrame:
        """The history as a pandas DataFrame, one row per epoch and one column per key.

        Raises:
            ImportError: pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas
        except ImportError as error:
            message = "History.to_dataframe needs pandas, which is not installed: pip install pandas"
            raise ImportError(message) from error
        frame: pandas.DataFrame = pandas.DataFrame(self.to_list())
        return frame

    def to_json(self) -> str:
        """The history as a JSON array."""
        return json.dumps(self.to_list())

    @classmethod
    def from_json(cls, text: str) -> History:
        """Rebuild a history from :meth:`to_json` output."""
        data: Any = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"text must be a JSON array of objects; got {type(data).__name__}")
        return cls(data)
