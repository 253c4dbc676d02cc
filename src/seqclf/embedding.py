"""Token ids to vectors: the front end of a model that reads text.

:class:`TokenEmbedding` turns a padded batch of token ids ``(batch, time)`` into vectors
``(batch, time, embedding_dim)`` for a recurrent encoder. Ids in the padding (after each
sequence's length) are never read, so they may hold anything, even ids outside the
vocabulary; ids inside a sequence must lie in ``[0, vocab_size)``, checked eagerly with
the values found.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import boolean, positive_int
from .encoders import _jit_tracing, _tracing, check_lengths

__all__ = ["TokenEmbedding", "check_ids"]


class TokenEmbedding(nn.Module):
    """A learned (or given, and optionally frozen) vector per token id.

    Args:
        vocab_size: number of ids; ids lie in ``[0, vocab_size)``.
        embedding_dim: size of each vector (the encoder's ``input_size``).
        freeze: keep the vectors fixed during training (``weight.requires_grad`` False).

    Examples:
        >>> embed = TokenEmbedding(vocab_size=100, embedding_dim=8)
        >>> embed(torch.tensor([[5, 7, 0]]), torch.tensor([2])).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, vocab_size: int, embedding_dim: int, *, freeze: bool = False) -> None:
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        boolean("freeze", freeze)
        self.weight = nn.Parameter(torch.randn(vocab_size, embedding_dim), requires_grad=not freeze)  # (V, E)

    @property
    def frozen(self) -> bool:
        """Whether the vectors stay fixed in training."""
        return not self.weight.requires_grad

    def load_vectors(self, vectors: Tensor | np.ndarray) -> None:
        """Copy ``vectors`` ``(vocab_size, embedding_dim)`` (e.g. GloVe rows in id order) into the weight."""
        if isinstance(vectors, np.ndarray):
            vectors = torch.from_numpy(np.asarray(vectors))
        if not isinstance(vectors, Tensor):
            raise TypeError(f"vectors must be a tensor or numpy array; got {type(vectors).__name__}")
        if not vectors.is_floating_point() or vectors.shape != self.weight.shape:
            raise ValueError(
                f"vectors must be floating point of shape (vocab_size, embedding_dim) = {tuple(self.weight.shape)}; "
                f"got {vectors.dtype} of shape {tuple(vectors.shape)}"
            )
        if not bool(torch.isfinite(vectors).all()):
            raise ValueError(f"vectors must be finite; got {int((~torch.isfinite(vectors)).sum())} NaN or Inf values")
        with torch.no_grad():
            self.weight.copy_(vectors)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Vectors ``(batch, time, embedding_dim)`` of ``ids`` ``(batch, time)``, input checked."""
        check_ids(ids, self.vocab_size, lengths)
        if lengths is not None:
            lengths = check_lengths(lengths, ids)
        return self.embed(ids, lengths)

    def embed(self, ids: Tensor, lengths: Tensor | None) -> Tensor:
        """:meth:`forward` on checked input (``lengths`` int64 on ids' device, or None).

        The padding is replaced by id 0 before the lookup, so whatever it held is never read.
        """
        if lengths is not None:
            padding = torch.arange(ids.shape[1], device=ids.device)[None, :] >= lengths[:, None]  # (B, T)
            ids = ids.masked_fill(padding, 0)
        return nn.functional.embedding(ids, self.weight)  # (B, T, E)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, embedding_dim={self.embedding_dim}" + (", frozen" if self.frozen else "")


def check_ids(ids: Tensor, vocab_size: int, lengths: Tensor | None = None, name: str = "x") -> None:
    """Raise unless ``ids`` is integer ``(batch, time >= 1)``, its ids before ``lengths`` in ``[0, vocab_size)``.

    The values are checked on the CPU only (a device tensor would cost a host sync per
    batch; the trainer checks a whole dataset once), and not while the model is traced.
    """
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids; got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(
            f"{name} must be integer token ids (batch, time) for a model that embeds them (vocab_size="
            f"{vocab_size}); got dtype {ids.dtype} of shape {tuple(ids.shape)}"
        )
    if _jit_tracing():
        return  # sizes are traced values here
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"{name} must be token ids of shape (batch, time >= 1); got {tuple(ids.shape)}")
    if ids.device.type != "cpu" or ids.numel() == 0 or _tracing():
        return
    values = ids
    if lengths is not None and isinstance(lengths, Tensor) and lengths.shape == (ids.shape[0],):
        valid = torch.arange(ids.shape[1])[None, :] < lengths.to("cpu")[:, None]  # (B, T)
        values = ids[valid]
        if values.numel() == 0:
            return
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name} token ids must lie in [0, {vocab_size}) (vocab_size); got values from {low} to {high}"
        )
