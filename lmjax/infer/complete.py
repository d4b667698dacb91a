"""Word completions for a predictive keyboard, from a char model or a word model.

The *partial word* is the run of word characters (letters, digits, apostrophes) at the end of
the typed text; it is empty right after a space or punctuation. A completion is the whole word
(``word``), the characters still to type (``suffix``) and a log-probability (``log_prob``).

Char models, two methods (``method=``):

* ``tutorial`` (the predictive-keyboard tutorial's ``predict_completions``): the ``n`` most
  probable next characters, each continued greedily until the model emits a space or
  punctuation (or ``max_len`` characters); separators count as one first character (they all
  end the word as typed), so the n words differ. Ranked by the first character's probability;
  ``log_prob`` is that of the characters generated, the terminating one included. When the
  partial word is empty, separators are not offered as first characters; otherwise a separator
  first means "the word is complete as typed" (suffix "").
* ``beam``: a beam search over characters for the ``n`` most probable *whole words*:
  P(word) = P(its remaining characters) x P(any separator after them). Each step scores all live
  beams in one predict call; it stops when no live beam can beat the n-th finished word (log-
  probabilities only fall) or after ``max_len`` characters.

Word models: the ``n`` most probable next words (partial word empty), or the vocabulary words
that start with the partial word, ranked by their probability after the complete words before it.

**Completions that save nothing take no slot** (``min_suffix``, default :data:`MIN_SUFFIX` = 2;
the beam method and word models). Accepting a suggestion is one keystroke and inserts the rest
of the word, so a completion with fewer than ``min_suffix`` characters left to type (the word
as already typed, or one letter short of it) would cost as much as typing it; the next most
probable words are shown in its place. ``min_suffix=1`` also offers one-letter endings,
``min_suffix=0`` the word as typed too. The tutorial's method keeps the tutorial's rule.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from lmjax.data.vocab import PAD_ID, UNK_ID, Vocab, word_tokens
from lmjax.errors import ConfigError
from lmjax.infer.generate import PredictFn, encode_prompt, fit_context

METHODS = ("beam", "tutorial")
MIN_SUFFIX = 2  # the fewest characters a completion leaves to type (see the module docstring)
_PUNCT = set(string.punctuation) - {"'"}


def is_word_char(c: str) -> bool:
    return len(c) == 1 and (c.isalnum() or c == "'")


def is_separator(c: str) -> bool:
    return len(c) == 1 and (c.isspace() or c in _PUNCT)


def partial_word(text: str) -> str:
    i = len(text)
    while i > 0 and is_word_char(text[i - 1]):
        i -= 1
    return text[i:]


@dataclass(frozen=True)
class Completion:
    word: str  # the whole word
    suffix: str  # what remains to be typed
    log_prob: float


@lru_cache(maxsize=16)
def _char_classes(vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over ids: word characters, separators (special tokens are neither)."""
    word = np.array([i > UNK_ID and is_word_char(t) for i, t in enumerate(vocab.tokens)])
    sep = np.array([i > UNK_ID and is_separator(t) for i, t in enumerate(vocab.tokens)])
    return word, sep


# [continuation after the typed text (ids)] -> (len, V) log-probabilities of the token after each
NextLogProbs = Callable[[list[list[int]]], np.ndarray]


def window_scorer(predict: PredictFn, ids: list[int], width: int) -> NextLogProbs:
    """The batch commands' context: each continuation after ``ids``, fitted to the trained
    window ``width`` (left-truncated or left-padded), read by one predict call."""
    def next_logp(seqs: list[list[int]]) -> np.ndarray:
        return predict(np.stack([fit_context(ids + list(s), width) for s in seqs]))
    return next_logp


def complete_tutorial(predict: PredictFn, vocab: Vocab, ids: list[int], partial: str, n: int,
                      width: int, max_len: int = 30) -> list[Completion]:
    """The tutorial's method (see the module docstring) on the trained window."""
    return tutorial_words(window_scorer(predict, ids, width), vocab, partial, n, max_len)


def tutorial_words(next_logp: NextLogProbs, vocab: Vocab, partial: str, n: int,
                   max_len: int = 30) -> list[Completion]:
    """The tutorial's method from any context (``next_logp``); the ``n`` continuations are
    extended together, one ``next_logp`` call per character."""
    word_mask, sep_mask = _char_classes(vocab)
    logp = np.asarray(next_logp([[]])[0], np.float64)
    allowed = word_mask | (sep_mask if partial else False)
    first = np.where(allowed, logp, -np.inf)
    order: list[int] = []  # all separators mean the same word: offer one of them at most
    for i in np.argsort(-first, kind="stable"):
        if len(order) == n or not np.isfinite(first[i]):
            break
        if not (sep_mask[i] and any(sep_mask[j] for j in order)):
            order.append(int(i))
    seqs = [[i] for i in order]
    lps = [float(logp[i]) for i in order]
    done = [bool(sep_mask[i]) for i in order]
    for _ in range(max_len):
        todo = [j for j, d in enumerate(done) if not d]
        if not todo:
            break
        out = np.asarray(next_logp([seqs[j] for j in todo]), np.float64)
        out[:, [PAD_ID, UNK_ID]] = -np.inf
        for row, j in zip(out, todo):
            c = int(np.argmax(row))
            seqs[j].append(c)
            lps[j] += float(row[c])
            done[j] = bool(sep_mask[c])
    result = []
    for s, lp in zip(seqs, lps):
        chars = vocab.decode(s)
        if sep_mask[s[-1]]:
            chars = chars[:-1]
        suffix = "".join(chars)
        result.append(Completion(partial + suffix, suffix, lp))
    return result


def complete_beam(predict: PredictFn, vocab: Vocab, ids: list[int], partial: str, n: int,
                  width: int, beams: int = 0, max_len: int = 20,
                  min_suffix: int = MIN_SUFFIX) -> list[Completion]:
    """The beam method (see the module docstring) on the trained window."""
    return beam_words(window_scorer(predict, ids, width), vocab, partial, n, beams, max_len,
                      min_suffix)


def beam_words(next_logp: NextLogProbs, vocab: Vocab, partial: str, n: int, beams: int = 0,
               max_len: int = 20, min_suffix: int = MIN_SUFFIX) -> list[Completion]:
    """The ``n`` most probable whole words found by a beam search of ``beams`` (default
    ``max(2n, 8)``) live beams from any context (``next_logp``), each leaving at least
    ``min_suffix`` characters to type; see the module docstring."""
    word_mask, sep_mask = _char_classes(vocab)
    beams = beams or max(2 * n, 8)
    shortest = max(min_suffix, 0 if partial else 1)  # a word has at least one character
    word_ids = np.flatnonzero(word_mask)
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[float, list[int]]] = []
    for step in range(max_len + 1):
        logp = np.asarray(next_logp([s for s, _ in live]), np.float64)
        end = np.logaddexp.reduce(np.where(sep_mask, logp, -np.inf), axis=1)
        for (s, lp), e in zip(live, end):
            if len(s) >= shortest and np.isfinite(e):
                finished.append((lp + e, s))
        finished.sort(key=lambda x: -x[0])
        finished = finished[:n]
        if step == max_len:
            break
        total = np.array([lp for _, lp in live])[:, None] + logp[:, word_ids]
        flat = total.ravel()
        order = np.argsort(-flat, kind="stable")[:beams]
        live = [(live[i // len(word_ids)][0] + [int(word_ids[i % len(word_ids)])], float(flat[i]))
                for i in order if np.isfinite(flat[i])]
        if not live or (len(finished) == n and live[0][1] <= finished[-1][0]):
            break
    return [Completion(partial + "".join(vocab.decode(s)), "".join(vocab.decode(s)), lp)
            for lp, s in finished]


def rank_words(logp: np.ndarray, vocab: Vocab, prefix: str, n: int,
               min_suffix: int = MIN_SUFFIX) -> list[Completion]:
    """The ``n`` vocabulary words starting with ``prefix`` and at least ``min_suffix``
    characters longer, most probable first."""
    tokens = np.asarray(vocab.tokens, dtype=object)
    ok = np.array([t.startswith(prefix) and len(t) - len(prefix) >= min_suffix
                   for t in vocab.tokens])
    ok[[PAD_ID, UNK_ID]] = False
    cand = np.flatnonzero(ok)
    best = cand[np.argsort(-logp[cand], kind="stable")[:n]]
    return [Completion(str(tokens[i]), str(tokens[i])[len(prefix):], float(logp[i]))
            for i in best]


def complete(predict: PredictFn, vocab: Vocab, text: str, n: int, width: int,
             method: str = "beam", beams: int = 0, max_len: int = 20,
             warn: bool = True, min_suffix: int = MIN_SUFFIX) -> list[Completion]:
    """The ``n`` suggested completions of the word being typed at the end of ``text``
    (``min_suffix``: see the module docstring)."""
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if method not in METHODS:
        raise ConfigError(f"unknown completion method {method!r}; choose one of "
                          f"{', '.join(METHODS)}")
    partial = partial_word(text)
    if vocab.level == "word":
        done = text[:len(text) - len(partial)]
        ids = encode_prompt(vocab, done) if warn else vocab.encode(word_tokens(done))
        logp = np.asarray(predict(fit_context(ids, width)[None, :])[0], np.float64)
        return rank_words(logp, vocab, partial, n, min_suffix)
    ids = [int(i) for i in (encode_prompt(vocab, text) if warn else vocab.encode(list(text)))]
    if method == "tutorial":
        return complete_tutorial(predict, vocab, ids, partial, n, width, max_len)
    return complete_beam(predict, vocab, ids, partial, n, width, beams, max_len, min_suffix)


def prompt_completions(predict: PredictFn, vocab: Vocab, prompts: list[str], width: int,
                       n: int = 5, chars: int = 40, lowercase: bool = True,
                       min_suffix: int = MIN_SUFFIX) -> list[dict]:
    """The keyboard tutorial's demo: for each prompt, its first ``chars`` characters (lowercased
    when the model was trained on lowercased text) and ``n`` completions by each method (char
    models: ``tutorial`` and ``beam``; word models: ``words``)."""
    out = []
    for p in prompts:
        text = p[:chars].lower() if lowercase else p[:chars]
        methods = METHODS[::-1] if vocab.level == "char" else ("beam",)
        row: dict = {"prompt": text}
        for m in methods:
            cs = complete(predict, vocab, text, n, width, method=m, warn=False,
                          min_suffix=min_suffix)
            row["words" if vocab.level == "word" else m] = [c.word for c in cs]
        out.append(row)
    return out


def format_completions(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        lines.append(repr(r["prompt"]))
        lines += [f"  {k}: {', '.join(map(repr, v))}" for k, v in r.items() if k != "prompt"]
    return lines
