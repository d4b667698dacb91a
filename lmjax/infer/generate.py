"""Text generation from a trained model: the tutorials' greedy ``generate_seq``.

A prompt is fitted to the model's training window the way its framing was trained: left-padded
with the padding id when shorter, truncated on the left when longer.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from lmjax.data.vocab import PAD_ID, UNK_ID, Vocab

# (B, T) int32 token ids -> (B, V) log-probabilities of the next token
PredictFn = Callable[[np.ndarray], np.ndarray]


def fit_context(ids: np.ndarray | list[int], width: int) -> np.ndarray:
    """Left-pad with PAD_ID or left-truncate ``ids`` to exactly ``width`` tokens."""
    ids = np.asarray(ids, np.int32)[-width:]
    return np.concatenate([np.full(width - len(ids), PAD_ID, np.int32), ids])


def encode_prompt(vocab: Vocab, prompt: str) -> np.ndarray:
    """Prompt text -> ids; unknown tokens map to the unknown id with a warning."""
    tokens = vocab.tokenize(prompt)
    unknown = sorted({t for t in tokens if t not in vocab})
    if unknown:
        warnings.warn(f"not in the vocabulary, read as {vocab.tokens[UNK_ID]}: "
                      f"{', '.join(map(repr, unknown[:10]))}", stacklevel=2)
    return vocab.encode(tokens)


def start_context(vocab: Vocab) -> np.ndarray:
    """What generation without a prompt starts from: a char model, a line break (the start of
    a line, when its vocabulary has one); a word model, nothing (an all-padding window, what
    the left-padded framings see at the start of a line)."""
    if vocab.level == "char" and "\n" in vocab:
        return vocab.encode(["\n"])
    return np.zeros(0, np.int32)


def greedy(predict: PredictFn, ids: np.ndarray, length: int, width: int) -> list[int]:
    """Append the most probable next token ``length`` times (padding is never chosen)."""
    out = [int(i) for i in ids]
    for _ in range(length):
        logp = np.array(predict(fit_context(out, width)[None, :])[0])
        logp[PAD_ID] = -np.inf
        out.append(int(np.argmax(logp)))
    return out[len(ids):]


def generate_seq(predict: PredictFn, vocab: Vocab, prompt: str, length: int, width: int) -> str:
    """The tutorials' ``generate_seq``: prompt followed by ``length`` greedy tokens, as text."""
    ids = encode_prompt(vocab, prompt)
    new = greedy(predict, ids, length, width)
    return vocab.join(vocab.tokenize(prompt) + vocab.decode(new))
