"""What the convolutional models share: a dropout-and-linear head over an encoding, and the refusal to stream."""

from __future__ import annotations

from typing import Any, NoReturn

from torch import Tensor, nn

__all__ = ["ConvolutionalClassifier"]


class ConvolutionalClassifier:
    """Mixin for a model with ``forward_features``, ``self.dropout`` and ``self.head``, whose convolutions read ahead.

    Gives ``forward`` (features, then the head) and ``forward_head``; refuses ``initial_state`` and
    ``step``, naming the class and what to do instead.
    """

    dropout: nn.Module
    head: nn.Module

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits ``(batch, num_classes)`` for ``x`` ``(batch, time, input_size)``."""
        return self.forward_head(self.forward_features(x, lengths))

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)`` from an encoding ``(batch, num_features)``."""
        logits: Tensor = self.head(self.dropout(features))  # (B, C)
        return logits

    def initial_state(self, batch_size: int) -> NoReturn:
        """Refused: a model whose convolutions read ahead cannot stream (see :meth:`step`)."""
        raise NotImplementedError(self._no_streaming())

    def step(self, x_t: Tensor, state: Any, *, grad: bool = False) -> NoReturn:
        """Refused: each convolution reads steps after the current one, which a stream has not reached.

        Raises:
            NotImplementedError: always; the message says what to do instead.
        """
        raise NotImplementedError(self._no_streaming())

    def _no_streaming(self) -> str:
        return (
            f"{type(self).__name__} cannot stream one step at a time: its convolutions read the steps after each "
            "step ('same' padding), which a stream has not reached; classify the sequence so far with "
            "model(x[:, : t + 1]) instead, or stream a one-direction SequenceClassifier (model.step)"
        )
