"""Scoring text with a trained model: log-probabilities, perplexity, bits per character.

**Which tokens are scored.** A text is tokenized at the model's level (characters, or Keras-style
words for a word model; a word text is one stream of words, line breaks included as word
breaks). Every token *after the first* is scored: token ``i`` (``i >= 1``) is predicted from the
up to ``context`` tokens before it (``context`` defaults to the window the model was trained on,
``seq_len``), left-padded with the padding id to the model's window when fewer are available.
The first token has no left context and is not scored. When a ``history`` string is given (the
text that precedes the scored text, e.g. the end of the previous split), it only serves as left
context, and then *every* token of the text is scored, the first included.

A target that is not in the vocabulary is scored as the unknown token ``<unk>`` (the model's
probability of ``<unk>``); their number is ``unknown`` and their share ``oov_rate``. Reported:

* ``log_prob``: the sum of the natural-log probabilities of the scored tokens;
* ``tokens``: how many tokens were scored (unknown ones included);
* ``bits_per_char`` (char models) = ``-log_prob / tokens / ln 2``, or ``perplexity`` (word models)
  = ``exp(-log_prob / tokens)``; ``perplexity_in_vocab`` / ``bits_per_char_in_vocab``: the same
  over the in-vocabulary targets only;
* ``next_token_accuracy`` (:func:`heldout_next_token`): the share of scored tokens whose
  log-probability is the highest of all tokens (ties count as right, as in the training metrics).

Windows are batched (``batch_size`` rows per call, the last batch padded to the same shape, so
the jitted predict function compiles once).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lmjax.data.vocab import PAD_ID, UNK_ID, Vocab
from lmjax.errors import DataError
from lmjax.train import stream as train_stream
from lmjax.train.cache import CacheSpec

PredictFn = Callable[[np.ndarray], np.ndarray]  # (B, T) int32 ids -> (B, V) log-probabilities
Progress = Callable[[int, int], None]  # progress(done, total) after each batch of predictions


def token_logprobs(predict: PredictFn, ids: np.ndarray, width: int, context: int | None = None,
                   start: int = 1, batch_size: int = 512,
                   progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability of ``ids[i]`` for every ``i >= start``, and whether it ranked first.

    Token ``i`` is predicted from ``ids[max(0, i - context):i]`` left-padded to ``width``
    (``context`` defaults to ``width``; a ``context`` above ``width`` widens the window).
    Returns ``(logp (N,), correct (N,) bool)`` with ``N = len(ids) - start``.
    """
    ids = np.asarray(ids, np.int32)
    context = width if context is None else context
    if context < 1:
        raise DataError(f"context must be >= 1, got {context}")
    width = max(width, context)
    n = len(ids) - start
    if n <= 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    padded = np.concatenate([np.full(context, PAD_ID, np.int32), ids])
    # window i (from position i of `padded`) = the `context` tokens before ids[i]
    windows = sliding_window_view(padded, context)[start:start + n]
    targets = ids[start:]
    lps, oks = [], []
    for b in range(0, n, batch_size):
        x = windows[b:b + batch_size]
        m = len(x)
        if width > context:
            x = np.concatenate([np.full((m, width - context), PAD_ID, np.int32), x], 1)
        if m < batch_size:  # one shape for every call: the jitted predict compiles once
            x = np.concatenate([x, np.full((batch_size - m, width), PAD_ID, np.int32)])
        logp = np.asarray(predict(np.ascontiguousarray(x)))[:m]
        t = targets[b:b + m]
        lp = logp[np.arange(m), t]
        lps.append(lp)
        oks.append(lp >= logp.max(axis=1))
        if progress is not None:
            progress(b + m, n)
    return np.concatenate(lps), np.concatenate(oks)


STREAM = "stream"  # context=stream: every token from all the tokens before it
STREAM_WARMUP = 10_000  # tokens of history the stream runs through before scoring starts


def context_arg(s: str) -> int | str:
    """The commands' ``context=``: a number of tokens (0: the trained window) or ``stream``."""
    s = str(s).strip()
    if s == STREAM:
        return STREAM
    n = int(s)
    if n < 0:
        raise ValueError(s)
    return n


context_arg.__name__ = "a number of tokens or 'stream'"


def stream_logprobs(loaded, ids: np.ndarray, start: int = 1, chunk: int = 256,
                    progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`token_logprobs` with unlimited context: the ids run through the LSTM as one
    stream (batch 1, the state carried from chunk to chunk), so token ``i >= start`` is
    predicted from all of ``ids[:i]``. ``loaded``: a LoadedRun. The one implementation,
    shared with the end-of-run test metrics: :func:`lmjax.train.stream.stream_logprobs`."""
    return train_stream.stream_logprobs(loaded.steps.stream, loaded.params,
                                        loaded.model.zero_state, ids, start, chunk, progress)


_per_token = train_stream.per_token
_summary = train_stream.summarize


def score_ids(predict: PredictFn, level: str, ids: np.ndarray, width: int,
              context: int | None = None, start: int = 1, batch_size: int = 512,
              progress: Progress | None = None) -> dict:
    """Score ``ids[start:]`` (see the module docstring); ``<unk>`` targets count as ``<unk>``."""
    lp, ok = token_logprobs(predict, ids, width, context, start, batch_size, progress)
    known = np.asarray(ids[start:]) != UNK_ID if len(ids) > start else np.zeros(0, bool)
    return _summary(level, lp, ok, known)


def score_text(predict: PredictFn, vocab: Vocab, text: str, width: int,
               context: int | None = None, history: str = "", batch_size: int = 512,
               progress: Progress | None = None) -> dict:
    """Score a text: every token after the first (all of them when ``history`` is given)."""
    hist = vocab.tokenize_text(history) if history else []
    toks = vocab.tokenize_text(text)
    ids = vocab.encode(hist + toks)
    start = len(hist) if hist else 1
    return score_ids(predict, vocab.level, ids, width, context, start, batch_size, progress)


def heldout_next_token(loaded, text: str, context: int | str | None = None, history: str = "",
                       batch_size: int = 1024, progress: Progress | None = None,
                       cache: CacheSpec | None = None) -> dict:
    """Next-token accuracy and bits per char (char) or perplexity (word) on a held-out text.

    Every position of ``text`` is predicted once, from up to ``context`` previous tokens
    (default: the model's trained window ``loaded.seq_len``, e.g. 40 for the keyboard), sliding
    one token at a time; the first token is predicted only when ``history`` (the text before,
    e.g. the end of the previous split) provides its context. ``loaded`` is a
    :class:`lmjax.infer.load.LoadedRun`. ``context="stream"``: every token from all the tokens
    before it (:func:`stream_logprobs`; the state first runs through up to the last
    STREAM_WARMUP tokens of ``history``). Returns ``next_token_accuracy``, ``bits_per_char`` or
    ``perplexity`` (unknown targets scored as ``<unk>``), ``tokens`` (scored), ``log_prob``,
    ``unknown`` (targets not in the vocabulary), ``oov_rate`` and ``perplexity_in_vocab`` /
    ``bits_per_char_in_vocab`` (over the in-vocabulary targets only). ``progress(done, total)``
    is called after each batch. ``cache`` (``context="stream"`` only): the same summary of the
    LSTM with a continuous cache (:mod:`lmjax.train.cache`) under the key ``"cache"``.
    """
    if cache is not None and context != STREAM:
        raise ValueError("a continuous cache needs context=stream")
    if context == STREAM:
        # a character tail first (a word is < 100 chars here), then the last tokens of it
        hist = loaded.vocab.tokenize_text(history[-100 * STREAM_WARMUP:])[-STREAM_WARMUP:] \
            if history else []
        ids = loaded.vocab.encode(hist + loaded.vocab.tokenize_text(text))
        start = len(hist) if hist else 1
        return train_stream.score_stream(loaded.steps.stream, loaded.params,
                                         loaded.model.zero_state, loaded.vocab.level, ids,
                                         start, progress, cache)
    ctx = loaded.seq_len if context is None else int(context)
    if history:
        history = history[-ctx:] if loaded.vocab.level == "char" else history
    return score_text(loaded.predict, loaded.vocab, text, loaded.seq_len, ctx, history,
                      batch_size, progress)


def score_lines(predict: PredictFn, vocab: Vocab, text: str, width: int,
                context: int | None = None) -> list[dict]:
    """One score per non-empty line of ``text`` (each line scored on its own)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            s = score_text(predict, vocab, line, width, context, batch_size=64)
            out.append({"line": line, **s})
    return out
