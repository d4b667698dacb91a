"""Scoring a token stream with the LSTM state carried from token to token (batch 1).

The one implementation behind ``experiments.score ... context=stream``
(:func:`lmjax.infer.score.stream_logprobs`) and the end-of-run test metrics of a training run
(:func:`test_metrics`, ``test_*`` in summary.json): the ids run through the model as one stream,
in chunks of ``chunk`` tokens with the state carried from chunk to chunk, so token ``i >= start``
is predicted from all of ``ids[:i]``. A target outside the vocabulary is the id of ``<unk>`` and
is scored as ``<unk>`` (the model's probability of ``<unk>``); :func:`summarize` counts them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from lmjax.data.vocab import PAD_ID, UNK_ID

Progress = Callable[[int, int], None]  # progress(done, total) after each chunk
# (params, state (L, 2, 1, H), inputs (1, T)) -> (log-probabilities (T, 1, V), final state)
StreamFn = Callable[[Any, Any, np.ndarray], tuple[Any, Any]]


def stream_logprobs(stream: StreamFn, params: Any, zero_state: Callable[[int], Any],
                    ids: np.ndarray, start: int = 1, chunk: int = 256,
                    progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability of ``ids[i]`` for every ``i >= start`` given all of ``ids[:i]``, and
    whether it ranked first (ties count as right). ``stream``: ``Steps.stream``;
    ``zero_state(batch)``: the model's zero LSTM state."""
    if start < 1:
        raise ValueError(f"start must be >= 1 (the first token has no context), got {start}")
    ids = np.asarray(ids, np.int32)
    n = len(ids) - start
    if n <= 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    x, y = ids[:-1], ids[1:]  # x[j] is followed by y[j] = ids[j + 1]
    state = zero_state(1)
    lps, oks = [], []
    for a in range(0, len(x), chunk):
        xb = x[a:a + chunk]
        m = len(xb)
        if m < chunk:  # one shape: one compilation (the padded tail's state is never used)
            xb = np.concatenate([xb, np.full(chunk - m, PAD_ID, np.int32)])
        logp, state = stream(params, state, xb[None, :])
        logp = np.asarray(logp)[:m, 0]
        lp = logp[np.arange(m), y[a:a + m]]
        lps.append(lp)
        oks.append(lp >= logp.max(axis=1))
        if progress is not None:
            progress(a + m, len(x))
    lp, ok = np.concatenate(lps), np.concatenate(oks)
    return lp[start - 1:], ok[start - 1:]


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
                 ids: np.ndarray, start: int = 1, progress: Progress | None = None) -> dict:
    """:func:`summarize` of :func:`stream_logprobs` over ``ids[start:]``."""
    ids = np.asarray(ids, np.int32)
    lp, ok = stream_logprobs(stream, params, zero_state, ids, start, progress=progress)
    return summarize(level, lp, ok, ids[start:] != UNK_ID)


def test_metrics(s: dict, level: str) -> dict:
    """A stream score (:func:`score_stream`) as summary.json's ``test_*`` keys: ``test_loss``
    (mean NLL in nats), ``test_perplexity`` (word) or ``test_bits_per_char`` (char),
    ``test_tokens`` (scored, unknown ones included), ``test_oov_rate``, ``test_accuracy``."""
    n = s["tokens"]
    metric = "bits_per_char" if level == "char" else "perplexity"
    return {"test_loss": -s["log_prob"] / n if n else None, f"test_{metric}": s[metric],
            "test_tokens": n, "test_oov_rate": s["oov_rate"],
            f"test_{metric}_in_vocab": s[f"{metric}_in_vocab"],
            "test_accuracy": s["next_token_accuracy"]}
