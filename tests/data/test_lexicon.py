"""Pronunciations (CMUdict + espeak fallback), phone edit distance, confusable and generic negatives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wakeword.data.lexicon import IPA_TO_ARPABET, edit_distances, ipa_to_arpabet, load_lexicon, words_of

_CMU = "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
CMU_PHONES = set(_CMU.split())


def levenshtein(a, b) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.fixture(scope="module")
def lexicon():
    return load_lexicon()


def test_cmudict_lookup_without_stress(lexicon):
    assert lexicon.pronunciations("Computer") == [("K", "AH", "M", "P", "Y", "UW", "T", "ER")]
    assert len(lexicon.pronunciations("read")) >= 2  # "read(2)" lines become extra pronunciations
    assert lexicon.phones("Hey, computer!") == ("HH", "EY", "K", "AH", "M", "P", "Y", "UW", "T", "ER")


def test_unknown_words_fall_back_to_espeak(lexicon):
    assert "zorblax" not in lexicon
    (phones,) = lexicon.pronunciations("zorblax")
    assert phones[0] == "Z" and set(phones) <= CMU_PHONES and len(phones) >= 6


def test_espeak_mapping_agrees_with_cmudict(lexicon):
    """The IPA table is approximate; on everyday words espeak's mapped phones must be close to CMUdict's."""
    from wakeword.data.tts import espeak_phonemes

    words = ["computer", "weather", "kitchen", "morning", "thought", "church", "judge", "singing", "water",
             "island", "mother", "yellow", "house", "boy", "music", "alarm"]  # fmt: skip
    errors = [levenshtein(ipa_to_arpabet(espeak_phonemes(w)), lexicon.pronunciations(w)[0]) for w in words]
    lengths = [len(lexicon.pronunciations(w)[0]) for w in words]
    assert sum(errors) / sum(lengths) < 0.2, dict(zip(words, errors, strict=True))


def test_ipa_to_arpabet_cases():
    assert ipa_to_arpabet(["h", "ˈeɪ"]) == ("HH", "EY")
    assert ipa_to_arpabet(["tʃ", "ˈɜː", "tʃ"]) == ("CH", "ER", "CH")
    assert ipa_to_arpabet(["ɔːɹ", "ɾ", "ɚ"]) == ("AO", "R", "T", "ER")
    assert all(set(v.split()) <= CMU_PHONES for v in IPA_TO_ARPABET.values())


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 4), max_size=7), st.lists(st.lists(st.integers(0, 4), max_size=9), min_size=1, max_size=6)
)
def test_vectorised_edit_distance_matches_reference(target, rows):
    width = max(len(r) for r in rows) or 1
    matrix = np.full((len(rows), width), -1, dtype=np.int16)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    got = edit_distances(target, matrix, np.array([len(r) for r in rows]))
    assert got.tolist() == [levenshtein(target, r) for r in rows]


def test_says_by_spelling_and_pronunciation(lexicon):
    assert lexicon.says("Hey, COMPUTER!", "hey computer")
    assert lexicon.says("hay computer", "hey computer")  # homophone
    assert lexicon.says("ok hey computers please", "hey computer")  # contains the phones
    assert not lexicon.says("hey commuter", "hey computer")
    assert not lexicon.says("computer hey", "hey computer")
    assert not lexicon.says("", "hey computer")


@pytest.mark.parametrize("wake_word", ["hey computer", "alexa", "ok jarvis"])
def test_confusables_are_near_but_never_the_wake_word(lexicon, wake_word):
    kinds = lexicon.confusables(wake_word, n_per_kind=30)
    wake = lexicon.phones(wake_word)
    assert len(kinds["near"]) >= 10
    for kind, texts in kinds.items():
        assert len(set(texts)) == len(texts)
        for text in texts:
            assert not lexicon.says(text, wake_word), (kind, text)
            assert text != wake_word and lexicon.phones(text) != wake
    distances = [levenshtein(lexicon.phones(t), wake) for t in kinds["near"]]
    assert min(distances) >= 1 and max(distances) <= 3


def test_confusables_of_hey_computer(lexicon):
    kinds = lexicon.confusables("hey computer", n_per_kind=40)
    assert "hey commuter" in kinds["near"] and "hey computed" in kinds["near"]
    assert {"hey", "computer", "hey come"} <= set(kinds["partial"])
    assert kinds["reordered"] == ["computer hey"]


def test_generic_texts_are_seeded_and_negative(lexicon):
    texts = lexicon.generic_texts(40, "the weather", seed=3)
    assert len(texts) == 40 and texts == lexicon.generic_texts(40, "the weather", seed=3)
    assert texts != lexicon.generic_texts(40, "the weather", seed=4)
    assert not any(lexicon.says(t, "the weather") for t in texts)
    assert any(len(words_of(t)) == 1 for t in texts) and any(len(words_of(t)) >= 3 for t in texts)
