"""Pronunciations and the negative texts made from them.

Pronunciations are ARPAbet phone tuples without stress marks ("computer" -> K AH M P Y UW T ER), from the
CMU pronouncing dictionary that the `pocketsphinx` wheel ships (134k words). A word not in it is
phonemized by espeak-ng (IPA) and mapped to ARPAbet with `IPA_TO_ARPABET`, an approximate table: flaps and
glottal stops become T, syllabic consonants AH + consonant, r-coloured vowels vowel + R.

Negatives for a wake word come in three kinds (`confusables`):
- near: a word of the phrase replaced by a word 1-2 phone edits away ("hey commuter", "hey computed");
- partial: a proper part of the phrase, or its start followed by a word that says the first phones of the
  next word ("hey", "computer", "hey come");
- reordered: the same words in another order ("computer hey").
No confusable and no generic text ever contains the wake word, also not by pronunciation ("hay computer").
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from wakeword.data.clips import normalize_word

Phones = tuple[str, ...]

IPA_TO_ARPABET = {
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "ɡ": "G", "f": "F", "v": "V", "θ": "TH",
    "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH", "tʃ": "CH", "dʒ": "JH", "m": "M",
    "n": "N", "ŋ": "NG", "l": "L", "ɹ": "R", "r": "R", "w": "W", "j": "Y", "ɾ": "T", "ʔ": "T", "x": "HH",
    "ɬ": "L", "i": "IY", "iː": "IY", "ɪ": "IH", "ᵻ": "IH", "e": "EY", "eɪ": "EY", "ɛ": "EH", "æ": "AE",
    "a": "AE", "ɑ": "AA", "ɑː": "AA", "ɒ": "AA", "ɔ": "AO", "ɔː": "AO", "o": "OW", "oʊ": "OW", "əʊ": "OW",
    "ʊ": "UH", "u": "UW", "uː": "UW", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɚ": "ER", "ɜ": "ER", "ɜː": "ER",
    "aɪ": "AY", "aʊ": "AW", "ɔɪ": "OY", "ɔːɹ": "AO R", "ɑːɹ": "AA R", "ɪɹ": "IH R", "ɛɹ": "EH R",
    "ʊɹ": "UH R", "oːɹ": "AO R", "iə": "IY AH", "eə": "EH R", "aɪɚ": "AY ER", "aɪə": "AY AH",
    "n̩": "AH N", "l̩": "AH L", "əl": "AH L", "m̩": "AH M",
}  # fmt: skip

# Everyday words for generic negative sentences; CMUdict alone is mostly names and rare words.
_COMMON_TEXT = """
the of and to a in is it you that he was for on are with as i his they be at one have this from or had by word but
what some we can out other were all there when up use your how said an each she which do their time if will way
about many then them write would like so these her long make thing see him two has look more day could go come did
number sound no most people my over know water than call first who may down side been now find any new work part
take get place made live where after back little only round man year came show every good me give our under name
very through just form sentence great think say help low line differ turn cause much mean before move right boy old
too same tell does set three want air well also play small end put home read hand port large spell add even land
here must big high such follow act why ask men change went light kind off need house picture try us again animal
point mother world near build self earth father head stand own page should country found answer school grow study
still learn plant cover food sun four between state keep eye never last let thought city tree cross farm hard start
might story saw far sea draw left late run while press close night real life few north open seem together next white
children begin got walk example ease paper group always music those both mark often letter until mile river car feet
care second book carry took science eat room friend began idea fish mountain stop once base hear horse cut sure
watch colour face wood main enough plain girl usual young ready above ever red list though feel talk bird soon body
dog family direct leave song measure door product black short class wind question happen complete ship area half
rock order fire south problem piece told knew pass since top whole king space heard best hour better during hundred
five remember step early hold west ground interest reach fast verb sing listen six table travel less morning ten
simple several vowel toward war lay against pattern slow centre love person money serve appear road map rain rule
govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star
box noun field rest correct able pound done beauty drive stood contain front teach week final gave green quick
develop ocean warm free minute strong special mind behind clear tail produce fact street inch multiply nothing
course stay wheel full force blue object decide surface deep moon island foot system busy test record boat common
gold possible plane dry wonder laugh thousand ago ran check game shape yes hot miss brought heat snow tire bring
distant fill east paint language among weather today tomorrow kitchen lights please okay thanks coffee phone message
timer alarm
"""
COMMON_WORDS = tuple(_COMMON_TEXT.split())

_LETTERS = re.compile(r"[a-z]+(?:'[a-z]+)*")


def cmudict_path() -> Path:
    """The CMUdict copy inside the pocketsphinx wheel (model/en-us/cmudict-en-us.dict)."""
    import pocketsphinx

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CMUdict not found in the pocketsphinx wheel; reinstall pocketsphinx")
    return path


def words_of(text: str) -> list[str]:
    """Lower-case words of free text; punctuation and hyphens split words ("Hey, Computer!" -> hey computer)."""
    return _LETTERS.findall(text.lower().replace("\u2019", "'"))


def ipa_to_arpabet(ipa_phones: Iterable[str]) -> Phones:
    """Map espeak-ng IPA phones ("h", "ˈeɪ", ...) to ARPAbet; unknown multi-letter phones go letter by letter."""
    out: list[str] = []
    for phone in ipa_phones:
        phone = phone.replace("ˈ", "").replace("ˌ", "").strip()
        if not phone:
            continue
        if phone in IPA_TO_ARPABET:
            out.extend(IPA_TO_ARPABET[phone].split())
            continue
        for char in phone.replace("ː", ""):
            if char in IPA_TO_ARPABET:
                out.extend(IPA_TO_ARPABET[char].split())
    return tuple(out)


def edit_distances(target: Sequence[int], rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Levenshtein distance of `target` to each row of `rows` (n_rows, max_len), padded with -1.

    Vectorised over rows: len(target) * max_len numpy steps, so one scan of CMUdict takes ~0.1 s.
    """
    n_rows, max_len = rows.shape
    previous = np.broadcast_to(np.arange(max_len + 1), (n_rows, max_len + 1)).copy()
    for i, symbol in enumerate(target, start=1):
        current = np.empty_like(previous)
        current[:, 0] = i
        substitution = previous[:, :-1] + (rows != symbol)
        deletion = previous[:, 1:] + 1
        best = np.minimum(substitution, deletion)
        for j in range(1, max_len + 1):  # insertion depends on the cell to the left
            current[:, j] = np.minimum(best[:, j - 1], current[:, j - 1] + 1)
        previous = current
    return previous[np.arange(n_rows), lengths]


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(tuple(haystack[i : i + n]) == tuple(needle) for i in range(len(haystack) - n + 1))


class Lexicon:
    """Word -> pronunciations, with an espeak-ng fallback. Use `load_lexicon()` for the shared instance."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cmudict_path()
        self.entries: dict[str, list[Phones]] = {}
        with open(self.path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                parts = line.split()
                if len(parts) < 2:
                    continue
                word = parts[0].split("(")[0].lower()  # "read(2)" is a second pronunciation of "read"
                phones = tuple(re.sub(r"\d", "", p) for p in parts[1:])
                if not all(p.isalpha() for p in phones):
                    raise ValueError(f"{self.path}:{line_no}: bad pronunciation {line.strip()!r}")
                self.entries.setdefault(word, []).append(phones)
        self._guessed: dict[str, Phones] = {}

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.entries

    def pronunciations(self, word: str) -> list[Phones]:
        """All pronunciations of one word; a word not in CMUdict gets espeak-ng's (one)."""
        word = word.lower()
        if word in self.entries:
            return self.entries[word]
        if word not in self._guessed:
            from wakeword.data.tts import espeak_phonemes

            self._guessed[word] = ipa_to_arpabet(espeak_phonemes(word))
        return [self._guessed[word]]

    def phones(self, text: str) -> Phones:
        """The first pronunciation of each word of `text`, concatenated."""
        return tuple(p for word in words_of(text) for p in self.pronunciations(word)[0])

    def says(self, text: str, wake_word: str) -> bool:
        """Does `text` contain `wake_word`, by spelling or by pronunciation (homophones such as "hay")?"""
        words, wake = words_of(text), words_of(wake_word)
        if not wake or _contains(words, wake):
            return bool(wake)
        if _contains(self.phones(text), self.phones(wake_word)):
            return True
        options = [self.pronunciations(w) for w in wake]
        for start in range(len(words) - len(wake) + 1):
            window = words[start : start + len(wake)]
            if all(set(self.pronunciations(w)) & set(opts) for w, opts in zip(window, options, strict=True)):
                return True
        return False

    # -- neighbourhoods ------------------------------------------------------------------------------
    @functools.cached_property
    def _table(self) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, int]]:
        """Plain alphabetic words as an integer matrix (n_words, max_len) for vectorised edit distance."""
        words = [w for w in self.entries if w.isalpha()]
        prons = [self.entries[w][0] for w in words]
        symbols = {p: i for i, p in enumerate(sorted({p for pron in prons for p in pron}))}
        lengths = np.array([len(p) for p in prons])
        rows = np.full((len(words), lengths.max()), -1, dtype=np.int16)
        for i, pron in enumerate(prons):
            rows[i, : len(pron)] = [symbols[p] for p in pron]
        return words, rows, lengths, symbols

    def near_words(self, phones: Phones, max_distance: int = 2) -> list[tuple[int, str]]:
        """(distance, word) for words 1..max_distance phone edits from `phones`, nearest first."""
        words, rows, lengths, symbols = self._table
        target = [symbols.get(p, -2) for p in phones]
        keep = np.abs(lengths - len(target)) <= max_distance
        index = np.flatnonzero(keep)
        width = len(target) + max_distance
        sub_rows = rows[index, :width]
        distances = edit_distances(target, sub_rows, np.minimum(lengths[index], width))
        near = [(int(d), words[i]) for d, i in zip(distances, index, strict=True) if 0 < d <= max_distance]
        return sorted(near)

    def prefix_words(self, phones: Phones, min_phones: int = 2) -> list[str]:
        """Words that say a proper start of `phones` ("come" for K AH M P Y UW T ER)."""
        by_pronunciation = self._by_pronunciation
        return [w for n in range(min_phones, len(phones)) for w in by_pronunciation.get(phones[:n], [])]

    @functools.cached_property
    def _rare_words(self) -> tuple[str, ...]:
        """generic_texts' vocabulary beyond COMMON_WORDS. Built once: the long form draws ~700 texts one at a
        time, and building it per call (with rng.choice copying it) took 60 ms a text, most of its synthesis."""
        return tuple(w for w in self._table[0] if 3 <= len(w) <= 10)

    @functools.cached_property
    def _by_pronunciation(self) -> dict[Phones, list[str]]:
        table: dict[Phones, list[str]] = {}
        for word, prons in self.entries.items():
            for pron in prons if word.isalpha() else ():
                table.setdefault(pron, []).append(word)
        return table

    # -- negative texts ------------------------------------------------------------------------------
    def confusables(self, wake_word: str, n_per_kind: int = 40, seed: int = 0) -> dict[str, list[str]]:
        """Near, partial and reordered phrases for `wake_word` (see module doc); none says the wake word."""
        rng = np.random.default_rng(seed)
        wake = words_of(wake_word)
        # ranked by the share of phones changed, so a 2-phone "hey" does not crowd out "computer"'s neighbours
        ranked: list[tuple[float, float, str]] = []
        for i, word in enumerate(wake):
            phones = self.pronunciations(word)[0]
            for distance, w in self.near_words(phones, max_distance=min(2, max(1, len(phones) // 3))):
                ranked.append((distance / len(phones), rng.random(), " ".join([*wake[:i], w, *wake[i + 1 :]])))
        if len(wake) > 1:
            phones = self.phones(wake_word)
            ranked += [(d / len(phones), rng.random(), w) for d, w in self.near_words(phones, 3)]
        near = [phrase for _, _, phrase in sorted(ranked)]
        partial = [" ".join(wake[a:b]) for a in range(len(wake)) for b in range(a + 1, len(wake) + 1)]
        for i, word in enumerate(wake):
            partial += [" ".join([*wake[:i], w]) for w in self.prefix_words(self.pronunciations(word)[0])]
        reordered = [" ".join(p) for p in itertools.islice(itertools.permutations(wake), 1, 25)]
        kinds = {"near": near, "partial": partial, "reordered": reordered}
        return {kind: self._keep_negatives(texts, wake_word, n_per_kind) for kind, texts in kinds.items()}

    def _keep_negatives(self, texts: list[str], wake_word: str, n: int) -> list[str]:
        """The first n unique texts that do not say the wake word."""
        kept: list[str] = []
        for text in dict.fromkeys(normalize_word(t) for t in texts):
            if len(kept) == n:
                break
            if text and not self.says(text, wake_word):
                kept.append(text)
        return kept

    def generic_texts(self, n_texts: int, wake_word: str | None = None, seed: int = 0) -> list[str]:
        """Random single words (a third) and 3-9 word sentences from common words, none saying `wake_word`."""
        rng, rare = np.random.default_rng(seed), self._rare_words

        def pick(words: Sequence[str]) -> str:  # rng.choice(words) without its copy of the list: the same draw
            return words[int(rng.integers(0, len(words)))]

        texts: list[str] = []
        while len(texts) < n_texts:
            if rng.random() < 1 / 3:
                text = pick(rare)
            else:
                n_words = int(rng.integers(3, 10))
                text = " ".join(pick(COMMON_WORDS if rng.random() < 0.9 else rare) for _ in range(n_words))
            if wake_word is None or not self.says(text, wake_word):
                texts.append(text)
        return texts


@functools.lru_cache(maxsize=2)
def load_lexicon(path: str | None = None) -> Lexicon:
    """The lexicon, loaded once per process (~1 s for CMUdict)."""
    return Lexicon(path)
