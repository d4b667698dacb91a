"""Generation strategies: greedy, temperature sampling, top-k, top-p (nucleus) and beam search.

Every strategy extends a list of token ids one token at a time. The context given to the model
is fitted to its trained window the way its framing was trained (:func:`fit_context`: left-padded
with the padding id, or truncated on the left). The padding token is never generated. Beam
search batches all live candidates into one predict call per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmjax.data.vocab import PAD_ID, Vocab
from lmjax.errors import ConfigError
from lmjax.infer.generate import PredictFn, encode_prompt, fit_context, greedy

STRATEGIES = ("greedy", "sample", "top_k", "top_p", "beam")


@dataclass(frozen=True)
class Beam:
    ids: tuple[int, ...]  # the generated tokens (prompt excluded)
    log_prob: float  # sum of their log-probabilities


def _contexts(prefix: list[int], seqs: list[tuple[int, ...]], width: int) -> np.ndarray:
    return np.stack([fit_context(prefix + list(s), width) for s in seqs])


def beam_search(predict: PredictFn, ids: list[int] | np.ndarray, length: int, width: int,
                beams: int = 4) -> list[Beam]:
    """The ``beams`` most probable continuations of exactly ``length`` tokens that beam search
    finds, best first. Each step scores every live beam's every next token in one call of
    ``predict`` on a (live beams, width) batch and keeps the ``beams`` best extensions (ties
    broken by token id). With ``beams`` >= the number of all sequences it is exhaustive."""
    if beams < 1:
        raise ConfigError(f"beams must be >= 1, got {beams}")
    prefix = [int(i) for i in ids]
    live = [Beam((), 0.0)]
    for _ in range(length):
        logp = np.asarray(predict(_contexts(prefix, [b.ids for b in live], width)), np.float64)
        logp[:, PAD_ID] = -np.inf
        total = np.array([b.log_prob for b in live])[:, None] + logp  # (L, V)
        flat = total.ravel()
        k = min(beams, int(np.isfinite(flat).sum()))
        order = np.lexsort((np.arange(flat.size), -flat))[:k]  # best first, stable
        v = logp.shape[1]
        live = [Beam(live[i // v].ids + (int(i % v),), float(flat[i])) for i in order]
    return live


def _filter_top_k(logp: np.ndarray, k: int) -> np.ndarray:
    if k < len(logp):
        cut = np.sort(logp)[-k]
        logp = np.where(logp >= cut, logp, -np.inf)
    return logp


def _filter_top_p(logp: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest set of most probable tokens whose probability reaches ``p``."""
    order = np.argsort(-logp, kind="stable")
    probs = np.exp(logp[order] - np.logaddexp.reduce(logp))
    keep = int(np.searchsorted(np.cumsum(probs), p) + 1)
    out = np.full_like(logp, -np.inf)
    out[order[:keep]] = logp[order[:keep]]
    return out


def sample(predict: PredictFn, ids: list[int] | np.ndarray, length: int, width: int, *,
           temperature: float = 1.0, k: int = 0, p: float = 1.0, seed: int = 0) -> list[int]:
    """Sample ``length`` tokens from softmax(log-probs / temperature), optionally restricted to
    the ``k`` most probable tokens (k > 0) and/or the nucleus of probability ``p`` (p < 1).
    The same ``seed`` gives the same tokens."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 (use strategy=greedy), got {temperature}")
    if k < 0 or not 0 < p <= 1:
        raise ConfigError(f"need k >= 0 and 0 < p <= 1, got k={k}, p={p}")
    rng = np.random.default_rng(seed)
    out = [int(i) for i in ids]
    for _ in range(length):
        logp = np.asarray(predict(fit_context(out, width)[None, :])[0], np.float64)
        logp[PAD_ID] = -np.inf
        logp = logp / temperature
        if k:
            logp = _filter_top_k(logp, k)
        if p < 1:
            logp = _filter_top_p(logp, p)
        probs = np.exp(logp - np.logaddexp.reduce(logp))
        out.append(int(rng.choice(len(probs), p=probs / probs.sum())))
    return out[len(ids):]


def decode(predict: PredictFn, ids: list[int] | np.ndarray, length: int, width: int,
           strategy: str = "greedy", *, temperature: float = 1.0, k: int = 10, p: float = 0.9,
           beams: int = 4, seed: int = 0) -> list[int]:
    """``length`` new tokens after ``ids`` by ``strategy`` (one of :data:`STRATEGIES`).

    ``sample`` uses ``temperature`` only; ``top_k`` adds ``k``; ``top_p`` adds ``p``; ``beam``
    returns the best of ``beams`` beams; ``greedy`` is the tutorials' ``generate_seq``.
    """
    if length < 0:
        raise ConfigError(f"length must be >= 0, got {length}")
    if strategy == "greedy":
        return greedy(predict, np.asarray(ids), length, width)
    if strategy == "sample":
        return sample(predict, ids, length, width, temperature=temperature, seed=seed)
    if strategy == "top_k":
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        return sample(predict, ids, length, width, temperature=temperature, k=k, seed=seed)
    if strategy == "top_p":
        return sample(predict, ids, length, width, temperature=temperature, p=p, seed=seed)
    if strategy == "beam":
        return list(beam_search(predict, ids, length, width, beams)[0].ids)
    raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def generate_text(predict: PredictFn, vocab: Vocab, prompt: str, length: int, width: int,
                  **kwargs) -> str:
    """Prompt followed by ``length`` generated tokens, as text (unknown prompt tokens warn)."""
    ids = encode_prompt(vocab, prompt)
    new = decode(predict, ids, length, width, **kwargs)
    return vocab.join(vocab.tokenize(prompt) + vocab.decode(new))
