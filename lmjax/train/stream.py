"""Scoring a token stream with the LSTM state carried from token to token (batch 1).

The one implementation behind ``experiments.score ... context=stream``
(:func:`lmjax.infer.score.stream_logprobs`) and the end-of-run test metrics of a training run
(:func:`test_metrics`, ``test_*`` in summary.json): the ids run through the model as one stream,
in chunks of ``chunk`` tokens with the state carried from chunk to chunk, so token ``i >= start``
is predicted from all of ``ids[:i]``. A target outside the vocabulary is the id of ``<unk>`` and
is scored as ``<unk>`` (the model's probability of ``<unk>``); :func:`summarize` counts them.
With a :class:`~lmjax.train.cache.CacheSpec` the same pass also scores the tokens with the
LSTM's continuous cache (``cache``; ``test_cache_*``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from lmjax.data.vocab import PAD_ID, UNK_ID
from lmjax.train.cache import CacheSpec, ContinuousCache

Progress = Callable[[int, int], None]  # progress(done, total) after each chunk
CHUNK = 256  # tokens per call: one compiled shape
# (params, state (L, 2, 1, H), inputs (1, T)) -> (log-probabilities (T, 1, V), final state,
# top-layer outputs (T, 1, H))
StreamFn = Callable[[Any, Any, np.ndarray], tuple[Any, Any, Any]]


def _scored(stream: StreamFn, params: Any, zero_state: Callable[[int], Any], ids: np.ndarray,
            start: int, chunk: int, progress: Progress | None, cache: CacheSpec | None
            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(lp, ok)] of the LSTM, then of the cache mixture when ``cache`` is given."""
    if start < 1:
        raise ValueError(f"start must be >= 1 (the first token has no context), got {start}")
    ids = np.asarray(ids, np.int32)
    n_out = 1 if cache is None else 2
    if len(ids) - start <= 0:
        return [(np.zeros(0, np.float32), np.zeros(0, bool))] * n_out
    x, y = ids[:-1], ids[1:]  # x[j] is followed by y[j] = ids[j + 1]
    state = zero_state(1)
    mixer = None if cache is None else ContinuousCache(cache)
    out: list[tuple[list, list]] = [([], []) for _ in range(n_out)]
    for a in range(0, len(x), chunk):
        xb = x[a:a + chunk]
        m = len(xb)
        if m < chunk:  # one shape: one compilation (the padded tail's state is never used)
            xb = np.concatenate([xb, np.full(chunk - m, PAD_ID, np.int32)])
        logp, state, h = stream(params, state, xb[None, :])
        logp, yb = np.asarray(logp)[:m, 0], y[a:a + m]
        lp = logp[np.arange(m), yb]
        pairs = [(lp, lp >= logp.max(axis=1))]
        if mixer is not None:
            pairs.append(mixer.mix(logp, np.asarray(h)[:m, 0], yb))
        for (lps, oks), (lp_, ok_) in zip(out, pairs):
            lps.append(lp_)
            oks.append(ok_)
        if progress is not None:
            progress(a + m, len(x))
    return [(np.concatenate(lps)[start - 1:], np.concatenate(oks)[start - 1:])
            for lps, oks in out]


def stream_logprobs(stream: StreamFn, params: Any, zero_state: Callable[[int], Any],
                    ids: np.ndarray, start: int = 1, chunk: int = CHUNK,
                    progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability of ``ids[i]`` for every ``i >= start`` given all of ``ids[:i]``, and
    whether it ranked first (ties count as right). ``stream``: ``Steps.stream``;
    ``zero_state(batch)``: the model's zero LSTM state."""
    return _scored(stream, params, zero_state, ids, start, chunk, progress, None)[0]


def stream_logprobs_cached(stream: StreamFn, params: Any, zero_state: Callable[[int], Any],
                           ids: np.ndarray, cache: CacheSpec, start: int = 1, chunk: int = CHUNK,
                           progress: Progress | None = None
                           ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """:func:`stream_logprobs` of the LSTM alone and of the LSTM with a continuous cache
    (:mod:`lmjax.train.cache`), from one pass: ((lp, ok), (cache_lp, cache_ok))."""
    plain, cached = _scored(stream, params, zero_state, ids, start, chunk, progress, cache)
    return plain, cached


def per_token(level: str, lp: np.ndarray) -> float | None:
    """exp(mean NLL) (word) or mean NLL in bits (char) of the log-probabilities ``lp``."""
    if len(lp) == 0:
        return None
    nll = -float(lp.sum(dtype=np.float64)) / len(lp)
    return nll / math.log(2) if level == "char" else math.exp(min(nll, 700.0))


def summarize(level: str, lp: np.ndarray, ok: np.ndarray, known: np.ndarray) -> dict:
    """``lp``/``ok``: every scored target (unknown ones as ``<unk>``); ``known``: which are in
    the vocabulary. -> tokens, log_prob, unknown, perplexity | bits_per_char, oov_rate,
    ..._in_vocab, next_token_accuracy."""
    n = int(len(lp))
    metric = "bits_per_char" if level == "char" else "perplexity"
    return {"tokens": n, "log_prob": float(lp.sum(dtype=np.float64)),
            "unknown": int(n - known.sum()), metric: per_token(level, lp),
            "oov_rate": float(1 - known.mean()) if n else None,
            f"{metric}_in_vocab": per_token(level, lp[known]),
            "next_token_accuracy": float(ok.mean()) if n else None}


def score_stream(stream: StreamFn, params: Any, zero_state: Callable[[int], Any], level: str,
                 ids: np.ndarray, start: int = 1, progress: Progress | None = None,
                 cache: CacheSpec | None = None) -> dict:
    """:func:`summarize` of :func:`stream_logprobs` over ``ids[start:]``; with ``cache``, the
    summary of the cache mixture under the key ``"cache"`` too (the same pass)."""
    ids = np.asarray(ids, np.int32)
    known = ids[start:] != UNK_ID
    plain, *cached = _scored(stream, params, zero_state, ids, start, CHUNK, progress, cache)
    out = summarize(level, *plain, known)
    if cached:
        out["cache"] = summarize(level, *cached[0], known)
    return out


def test_metrics(s: dict, level: str) -> dict:
    """A stream score (:func:`score_stream`) as summary.json's ``test_*`` keys: ``test_loss``
    (mean NLL in nats), ``test_perplexity`` (word) or ``test_bits_per_char`` (char),
    ``test_tokens`` (scored, unknown ones included), ``test_oov_rate``, ``test_accuracy``; with
    a cache, ``test_cache_loss``, ``test_cache_perplexity`` / ``test_cache_bits_per_char`` and
    ``test_cache_accuracy`` (the LSTM with its continuous cache, the same tokens)."""
    n = s["tokens"]
    metric = "bits_per_char" if level == "char" else "perplexity"
    out = {"test_loss": -s["log_prob"] / n if n else None, f"test_{metric}": s[metric],
           "test_tokens": n, "test_oov_rate": s["oov_rate"],
           f"test_{metric}_in_vocab": s[f"{metric}_in_vocab"],
           "test_accuracy": s["next_token_accuracy"]}
    if "cache" in s:
        c = s["cache"]
        out.update({"test_cache_loss": -c["log_prob"] / n if n else None,
                    f"test_cache_{metric}": c[metric],
                    "test_cache_accuracy": c["next_token_accuracy"]})
    return out
