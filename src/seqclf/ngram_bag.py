"""fastText's text classifier over token ids: the mean of a text's word and n-gram vectors, then a linear layer.

:class:`NgramBag` reads the same input as a token model, padded ids ``(B, T)`` int64
and their ``lengths``, and forms the n-grams itself: the id of the n-gram ``(a, b)`` is
``vocab_size + hash(a, b) mod buckets`` (a fixed polynomial hash of the ids, so the
n-grams need no vocabulary of their own and an exported graph computes them as the model
does). Ids in the padding are never read. Order beyond ``ngrams`` words is lost: this is
a bag of words and short phrases, strong where a text's topic is in its words, blind where
the class is in their order.

:func:`fit_ngram_bag` trains it as fastText does: a few epochs of sparse row updates with
a learning rate that falls linearly to zero (Adagrad's per-row steps in place of plain
SGD, which needs many more epochs).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from ._checks import positive_int

__all__ = ["NgramBag", "fit_ngram_bag"]

logger = logging.getLogger(__name__)

_HASH_PRIME = 1_000_003  # the multiplier of the n-gram hash


class NgramBag(nn.Module):
    """The mean of the vectors of a text's words and of its n-grams of 2 to ``ngrams`` words, then a linear layer.

    Args:
        vocab_size: ids are in ``[0, vocab_size)``.
        num_classes: the logits per text.
        embedding_dim: size of each word's and n-gram's vector.
        ngrams: the longest n-gram read (1: words only).
        buckets: rows shared by the hashed n-grams (collisions share a row).
    """

    def __init__(
        self, vocab_size: int, num_classes: int, *, embedding_dim: int = 64, ngrams: int = 2, buckets: int = 2**18
    ) -> None:
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.ngrams = positive_int("ngrams", ngrams)
        self.buckets = positive_int("buckets", buckets) if ngrams > 1 else 0
        dim = positive_int("embedding_dim", embedding_dim)
        self.embedding = nn.Embedding(self.vocab_size + self.buckets, dim)  # the table; forward sums its rows
        self.head = nn.Linear(dim, positive_int("num_classes", num_classes))
        nn.init.uniform_(self.embedding.weight, -1 / dim, 1 / dim)  # fastText's initialisation
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def bag_ids(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The ids of each text's words and n-grams ``(B, L)`` and which of them are in the text ``(B, L)`` bool."""
        steps = torch.arange(x.shape[1], device=x.device)
        ids, valid = [x], [steps < lengths[:, None]]
        gram = x
        for n in range(2, self.ngrams + 1):
            if x.shape[1] < n:
                break
            gram = (gram[:, :-1] * _HASH_PRIME + x[:, n - 1:]) % self.buckets  # hash of the n words ending here
            ids.append(self.vocab_size + gram)
            valid.append(steps[: x.shape[1] - n + 1] < (lengths[:, None] - (n - 1)))
        return torch.cat(ids, dim=1), torch.cat(valid, dim=1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of padded ids ``x`` ``(B, T)`` with ``lengths`` ``(B,)``."""
        ids, valid = self.bag_ids(x, lengths)
        ids = ids.masked_fill(~valid, 0)  # padding reads row 0, then weighs nothing
        weights = valid.to(self.embedding.weight.dtype)
        if torch.onnx.is_in_onnx_export():  # the same sum as one product: ONNX has no plain bag op
            total = torch.bmm(weights[:, None, :], self.embedding(ids)).squeeze(1)  # (B, D)
        else:  # no (B, L, D) tensor in between, and sparse row gradients
            total = nn.functional.embedding_bag(
                ids, self.embedding.weight, mode="sum", per_sample_weights=weights, sparse=True
            )
        mean = total / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        logits: Tensor = self.head(mean)
        return logits


def fit_ngram_bag(
    model: NgramBag,
    x: Tensor,
    lengths: Tensor,
    y: Tensor,
    *,
    epochs: int = 5,
    lr: float = 0.5,
    batch_size: int = 32,
    seed: int = 0,
) -> NgramBag:
    """Train ``model`` on padded ids ``x`` ``(N, T)``, ``lengths`` ``(N,)`` and labels ``y`` ``(N,)``; eval mode after.

    Adagrad at ``lr`` falling linearly to 0 over ``epochs`` epochs of ``batch_size`` texts in
    an order drawn from ``seed``; cross-entropy. Runs on the device of ``model``.
    """
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr!r}")
    if not (len(x) == len(lengths) == len(y)):
        raise ValueError(f"x, lengths and y must have one row per text; got {len(x)}, {len(lengths)} and {len(y)}")
    device = model.head.weight.device
    optimizer = torch.optim.Adagrad(model.parameters(), lr=lr)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        total = torch.zeros((), device=device)  # summed on the device: no host sync per step
        order = torch.randperm(len(x), generator=generator)
        for chunk in (order[i : i + batch_size] for i in range(0, len(x), batch_size)):
            width = int(lengths[chunk].max())  # the batch's longest text: no step reads only padding
            logits = model(x[chunk, :width].to(device), lengths[chunk].to(device))
            loss = nn.functional.cross_entropy(logits, y[chunk].to(device))
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            # sparse row gradients: say that their checks are off, or torch warns that they are
            with torch.sparse.check_sparse_tensor_invariants(enable=False):  # type: ignore[no-untyped-call]
                optimizer.step()
            schedule.step()
            total += loss.detach() * len(chunk)
        logger.debug("n-gram bag epoch %d: train loss %.4f", epoch, float(total) / len(x))
    return model.eval()
