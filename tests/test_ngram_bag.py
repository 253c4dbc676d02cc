"""NgramBag and fit_ngram_bag: fastText's bag of words and hashed n-grams over token ids."""

from __future__ import annotations

import pytest
import torch

from seqclf.ngram_bag import NgramBag, fit_ngram_bag


def phrase_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class 1 when the two-word phrase (2, 3) appears, class 0 when (3, 2) does: the same words either way."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 12, (n,), generator=g)
    x = torch.randint(4, 40, (n, 12), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        at = int(torch.randint(0, int(lengths[i]) - 1, (1,), generator=g))
        x[i, at], x[i, at + 1] = (2, 3) if y[i] == 1 else (3, 2)
        x[i, int(lengths[i]):] = 0
    return x, lengths, y


def test_bag_ids_are_the_words_then_the_hashed_bigrams_of_the_valid_steps() -> None:
    model = NgramBag(10, 2, ngrams=2, buckets=7)
    x = torch.tensor([[4, 5, 6], [7, 0, 0]])
    ids, valid = model.bag_ids(x, torch.tensor([3, 1]))
    assert ids.shape == valid.shape == (2, 5)  # 3 words and 2 bigrams a row
    assert valid.tolist() == [[True, True, True, True, True], [True, False, False, False, False]]
    assert ids[0, :3].tolist() == [4, 5, 6]
    assert ids[0, 3:].tolist() == [10 + (4 * 1_000_003 + 5) % 7, 10 + (5 * 1_000_003 + 6) % 7]
    assert int(ids[valid].max()) < 10 + 7
    words_only = NgramBag(10, 2, ngrams=1)
    assert words_only.embedding.num_embeddings == 10 and words_only.bag_ids(x, torch.tensor([3, 1]))[0].shape == (2, 3)


def test_ids_in_the_padding_never_change_the_logits() -> None:
    model = NgramBag(50, 3, ngrams=3, buckets=64)
    torch.nn.init.normal_(model.head.weight)  # zero at first: make the logits depend on the bag
    x, lengths, _ = phrase_task(16, 0)
    junk = torch.where(torch.arange(12) >= lengths[:, None], torch.randint(0, 50, x.shape), x)
    torch.testing.assert_close(model(junk, lengths), model(x, lengths), rtol=0, atol=0)
    trimmed = int(lengths.max())
    torch.testing.assert_close(model(x[:, :trimmed], lengths), model(x, lengths), rtol=0, atol=1e-6)


def test_word_order_is_read_only_through_the_ngrams() -> None:
    x = torch.tensor([[5, 6, 7, 8]])
    swapped = torch.tensor([[8, 7, 6, 5]])
    lengths = torch.tensor([4])
    words = NgramBag(10, 2, ngrams=1)
    torch.nn.init.normal_(words.head.weight)
    torch.testing.assert_close(words(x, lengths), words(swapped, lengths))
    bigrams = NgramBag(10, 2, ngrams=2, buckets=101)
    torch.nn.init.normal_(bigrams.head.weight)
    assert not torch.allclose(bigrams(x, lengths), bigrams(swapped, lengths))


def test_fit_learns_a_phrase_that_its_words_alone_cannot_tell(one_thread: None) -> None:
    x, lengths, y = phrase_task(600, 1)
    x_test, lengths_test, y_test = phrase_task(300, 2)
    scores = {}
    for ngrams in (1, 2):
        torch.manual_seed(0)
        model = fit_ngram_bag(NgramBag(40, 2, ngrams=ngrams, buckets=1024), x, lengths, y, epochs=10, seed=0)
        assert not model.training
        with torch.no_grad():
            scores[ngrams] = float((model(x_test, lengths_test).argmax(1) == y_test).float().mean())
    assert scores[1] < 0.65  # the same words in both classes: chance
    assert scores[2] >= 0.95


def test_fit_is_deterministic_for_a_seed(one_thread: None) -> None:
    x, lengths, y = phrase_task(100, 3)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        weights.append(fit_ngram_bag(NgramBag(40, 2, buckets=64), x, lengths, y, seed=5).head.weight.detach())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 0}, "vocab_size must be a positive int; got 0"),
        ({"ngrams": 0}, "ngrams must be a positive int; got 0"),
        ({"buckets": -1}, "buckets must be a positive int; got -1"),
        ({"embedding_dim": 2.0}, "embedding_dim must be a positive int; got 2.0"),
    ],
)
def test_bad_sizes_name_the_argument(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NgramBag(**{"vocab_size": 10, "num_classes": 2, **kwargs})  # type: ignore[arg-type]


def test_bad_fit_arguments_name_the_argument() -> None:
    x, lengths, y = phrase_task(8, 4)
    model = NgramBag(40, 2, buckets=8)
    with pytest.raises(ValueError, match=r"lr must be > 0; got 0\.0"):
        fit_ngram_bag(model, x, lengths, y, lr=0.0)
    with pytest.raises(ValueError, match="epochs must be a positive int; got 0"):
        fit_ngram_bag(model, x, lengths, y, epochs=0)
    with pytest.raises(ValueError, match=r"one row per text; got 8, 8 and 7"):
        fit_ngram_bag(model, x, lengths, y[:7])
