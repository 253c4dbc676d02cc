"""A vocabulary: the tokens of training texts mapped to the integer ids a token model embeds."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._checks import positive_int

__all__ = ["PAD_ID", "UNKNOWN_ID", "Vocabulary"]

PAD_ID = 0
"""The id reserved for padding (the zeros :func:`seqclf.pad_sequences` adds); no token maps to it."""
UNKNOWN_ID = 1
"""The one id of every token the vocabulary does not hold."""
_RESERVED = 2


class Vocabulary:
    """Tokens to ids: ``0`` is padding, ``1`` every unknown token, ``2..`` the known tokens, most frequent first.

    Build it from tokenised training texts with :meth:`fit`; it keeps the tokens seen at
    least ``min_count`` times, at most ``max_size`` ids in all (the two reserved ones
    included), so ``len(vocabulary)`` is the ``vocab_size`` of the model that embeds its ids.

    Args:
        tokens: the known tokens in id order (id ``2 + i`` for ``tokens[i]``), all distinct.

    Examples:
        >>> vocab = Vocabulary.fit([["the", "cat"], ["the", "dog"]], min_count=1)
        >>> len(vocab), vocab.encode(["the", "dog", "emu"]).tolist()
        (5, [2, 4, 1])
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        bad = next((t for t in tokens if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"tokens must all be str; got {type(bad).__name__} {bad!r}")
        self._index = {token: i + _RESERVED for i, token in enumerate(tokens)}
        if len(self._index) != len(tokens):
            repeated = next(t for t, n in collections.Counter(tokens).items() if n > 1)
            raise ValueError(f"tokens must be distinct; got {repeated!r} more than once")
        self.tokens: tuple[str, ...] = tuple(tokens)

    @classmethod
    def fit(
        cls, documents: Iterable[Sequence[str]], *, min_count: int = 2, max_size: int | None = None
    ) -> Vocabulary:
        """The vocabulary of tokenised ``documents``.

        Args:
            documents: each document as its list of tokens.
            min_count: keep tokens seen at least this many times in all documents.
            max_size: at most this many ids, the two reserved ones included (the most
                frequent tokens are kept; ties go to the token first in sorted order);
                None: no limit.
        """
        positive_int("min_count", min_count)
        if max_size is not None and positive_int("max_size", max_size) <= _RESERVED:
            raise ValueError(f"max_size must be > {_RESERVED} (ids 0 and 1 are reserved) or None; got {max_size}")
        counts: collections.Counter[str] = collections.Counter()
        for i, doc in enumerate(documents):
            if isinstance(doc, str):
                raise TypeError(f"documents[{i}] must be a list of tokens; got a str (tokenise it first)")
            counts.update(doc)
        kept = sorted((token for token, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - _RESERVED]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.tokens) + _RESERVED

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """The ids ``(len(tokens),)`` int64 of ``tokens``; unknown tokens get :data:`UNKNOWN_ID`."""
        if isinstance(tokens, str):
            raise TypeError("tokens must be a list of tokens; got a str (tokenise it first)")
        get = self._index.get
        return np.fromiter((get(t, UNKNOWN_ID) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of ``ids``: ``"<pad>"`` and ``"<unk>"`` for the reserved ids."""
        names = ("<pad>", "<unk>")
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise ValueError(f"ids must lie in [0, {len(self)}) (the vocabulary's size); got {i}")
            out.append(names[i] if i < _RESERVED else self.tokens[i - _RESERVED])
        return out

    def to_dict(self) -> dict[str, Any]:
        """The vocabulary as plain data (JSON-safe)."""
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_dict` output."""
        if not isinstance(data, dict) or set(data) != {"tokens"} or not isinstance(data["tokens"], list):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"data must be a dict with one key 'tokens' holding a list; got {got}")
        return cls(data["tokens"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"
