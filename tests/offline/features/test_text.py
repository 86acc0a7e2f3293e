"""Review tokenizer and vocabulary (offline.features.text)."""

from __future__ import annotations

import numpy as np
import pytest

from offline.features.text import BOS, EOS, PAD, SPECIALS, UNK, Vocabulary, tokenize


def test_tokenize_lowercases_and_keeps_words_digits_and_apostrophes() -> None:
    assert tokenize("Love the RED collar, don't you?! 100% cotton") == [
        "love",
        "the",
        "red",
        "collar",
        "don't",
        "you",
        "100",
        "cotton",
    ]
    assert tokenize("") == [] and tokenize("?!, ...") == []


def test_specials_sit_at_fixed_indices() -> None:
    vocab = Vocabulary.build(["red red"], min_count=1)
    # PAD must be 0 (the loss masks token 0); encode hard-codes BOS=1, EOS=2, UNK=3
    assert [vocab.words.index(w) for w in (PAD, BOS, EOS, UNK)] == [0, 1, 2, 3]
    assert vocab.words[:4] == SPECIALS


def test_build_orders_by_count_then_alphabetically_and_applies_min_count() -> None:
    texts = ["red red blue", "Blue RED green", "green yellow"]
    # counts: red 3, blue 2, green 2, yellow 1
    assert Vocabulary.build(texts, min_count=2).words == SPECIALS + ("red", "blue", "green")
    assert Vocabulary.build(texts, min_count=1).words == SPECIALS + ("red", "blue", "green", "yellow")
    assert Vocabulary.build(texts, min_count=3).words == SPECIALS + ("red",)


def test_build_caps_the_size_including_specials() -> None:
    texts = ["red red blue", "blue red green", "green"]
    assert len(Vocabulary.build(texts, max_size=6, min_count=1)) == 6
    assert Vocabulary.build(texts, max_size=5, min_count=1).words == SPECIALS + ("red",)
    assert Vocabulary.build(texts, max_size=2, min_count=1).words == SPECIALS  # never drops a special


def test_encode_adds_bos_eos_pads_and_truncates() -> None:
    vocab = Vocabulary(SPECIALS + ("red", "blue"))  # red = 4, blue = 5
    out = vocab.encode(["red blue", "", "purple red red red", "red"], max_len=3)
    assert out.dtype == np.int32 and out.shape == (4, 5)
    np.testing.assert_array_equal(
        out,
        [
            [1, 4, 5, 2, 0],  # BOS red blue EOS PAD
            [0, 0, 0, 0, 0],  # empty review: all PAD
            [1, 3, 4, 4, 2],  # unknown word -> UNK; truncated to max_len = 3 words
            [1, 4, 2, 0, 0],
        ],
    )
    assert vocab.encode([], max_len=3).shape == (0, 5)
    np.testing.assert_array_equal(vocab.encode(["!!!"], max_len=2), [[0, 0, 0, 0]])  # no tokens: all PAD


def test_save_load_round_trip(tmp_path) -> None:
    vocab = Vocabulary.build(["red red blue", "blue red green don't"], min_count=1)
    vocab.save(tmp_path / "vocab.json")
    again = Vocabulary.load(tmp_path / "vocab.json")
    assert again == vocab and isinstance(again.words, tuple)
    texts = ["red don't green", ""]
    np.testing.assert_array_equal(again.encode(texts, 4), vocab.encode(texts, 4))


def test_vocabulary_is_immutable() -> None:
    with pytest.raises(AttributeError):
        Vocabulary(SPECIALS).words = ()  # type: ignore[misc]
