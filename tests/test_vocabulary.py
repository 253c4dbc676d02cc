"""Vocabulary: reserved ids, minimum count, maximum size, unknown tokens, plain-data round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqclf.vocabulary import PAD_ID, UNKNOWN_ID, Vocabulary

DOCS = [["b", "a", "a"], ["c", "a", "b"], ["d"]]  # a:3 b:2 c:1 d:1


def test_ids_reserve_padding_and_unknown_and_order_by_count() -> None:
    vocab = Vocabulary.fit(DOCS, min_count=1)
    assert (PAD_ID, UNKNOWN_ID) == (0, 1)
    assert vocab.tokens == ("a", "b", "c", "d")  # by count, ties in sorted order
    assert len(vocab) == 6
    assert vocab.encode(["a", "d", "zebra"]).tolist() == [2, 5, UNKNOWN_ID]
    assert vocab.encode([]).dtype == np.int64 and vocab.encode([]).shape == (0,)
    assert vocab.decode([0, 1, 2]) == ["<pad>", "<unk>", "a"]


def test_min_count_and_max_size() -> None:
    assert Vocabulary.fit(DOCS, min_count=2).tokens == ("a", "b")
    assert Vocabulary.fit(DOCS, min_count=1, max_size=3).tokens == ("a",)
    assert len(Vocabulary.fit(DOCS, min_count=1, max_size=3)) == 3
    assert Vocabulary.fit(DOCS, min_count=5).tokens == ()


def test_round_trip_through_json() -> None:
    vocab = Vocabulary.fit(DOCS, min_count=1)
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and again.encode(["c"]).tolist() == [4]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: Vocabulary.fit(["a text"]), TypeError, r"documents\[0\] must be a list of tokens; got a str"),
        (lambda: Vocabulary.fit(DOCS, min_count=0), ValueError, "min_count must be a positive int; got 0"),
        (lambda: Vocabulary.fit(DOCS, max_size=2), ValueError, r"max_size must be > 2 .*; got 2"),
        (lambda: Vocabulary(["a", "a"]), ValueError, "tokens must be distinct; got 'a'"),
        (lambda: Vocabulary(["a", 3]), TypeError, "tokens must all be str; got int 3"),
        (lambda: Vocabulary(["a"]).encode("a"), TypeError, "tokens must be a list of tokens; got a str"),
        (lambda: Vocabulary(["a"]).decode([3]), ValueError, r"ids must lie in \[0, 3\) .*; got 3"),
        (lambda: Vocabulary.from_dict({"words": []}), ValueError, "one key 'tokens'.*got \\['words'\\]"),
    ],
)
def test_bad_input_names_the_argument(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]
