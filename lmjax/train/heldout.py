"""One yardstick for every word framing: the same held-out words, each with its framing's context.

Each framing's own validation samples differ (one_word has one sample per word pair,
line_by_line one per line prefix, ...), so their val metrics do not compare like with like.
:func:`heldout_word_metrics` scores every word model on the *same* targets:

* **Targets**: in each line of the held-out text (the valid split, or the whole text with
  ``data.split=none``), every word at position i >= 1, i.e. all words but the first of a line
  (no framing trained on within-line context can predict a line's first word from that line).
  A word outside the vocabulary is scored as the unknown token ``<unk>`` (the model's
  probability of ``<unk>``), for every framing alike; their share is ``heldout_word_oov_rate``.
  With ``data.eos`` a line's ``<eos>`` is one of its words (scored like the others).
* **Context** given to predict word i (token ids, left-padded with ``<pad>`` to the trained
  width ``seq_len`` where shorter, left-truncated where longer):

  | framing | context |
  |---|---|
  | ``one_word`` | the previous word |
  | ``n_words`` (two_word, three_word, ...) | the n previous words; with ``cross_lines`` they may come from earlier lines, else only from this line (padded) |
  | ``line_by_line`` | the line's prefix: words 0 .. i-1 of the line |
  | ``sequence`` at word level | up to ``seq_len`` previous words (across lines if ``cross_lines``) |
  | ``char``, ``sequence`` at char level | not a word model: no held-out word metrics (``{}``) |

Returns ``heldout_word_perplexity`` (exp of the mean negative log-likelihood over all targets,
unknown words as ``<unk>``), ``heldout_word_accuracy`` (the target has the highest
log-probability; ties count as right, as in the training metrics), ``heldout_word_count`` (all
targets), ``heldout_word_oov_rate`` (the share of targets outside the vocabulary) and
``heldout_word_perplexity_in_vocab`` (the same perplexity over in-vocabulary targets only).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from lmjax.config import Config
from lmjax.data.vocab import PAD_ID, UNK_ID, Vocab

Predict = Callable[[np.ndarray], np.ndarray]  # (B, T) int32 ids -> (B, V) log-probabilities


def heldout_contexts(cfg: Config, lines: list[np.ndarray],
                     seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(contexts (N, seq_len) int32, targets (N,) int32) for every word i >= 1 of every line,
    each context as the framing allows (see the module docstring). ``<unk>`` targets included."""
    f = cfg.framing
    if f.name == "one_word":
        width, cross = 1, f.cross_lines
    elif f.name == "n_words":
        width, cross = f.n_words, f.cross_lines
    elif f.name == "sequence":
        width, cross = seq_len, f.cross_lines
    elif f.name == "line_by_line":
        width, cross = seq_len, False
    else:
        raise ValueError(f"framing {f.name!r} has no held-out word contexts")
    width = min(width, seq_len)
    ctx, tgt = [], []
    before = np.zeros(0, np.int32)  # the stream before the current line (cross_lines)
    for line in lines:
        line = np.asarray(line, np.int32)
        stream = np.concatenate([before, line]) if cross else line
        offset = len(stream) - len(line)
        for i in range(1, len(line)):
            left = stream[max(0, offset + i - width): offset + i]
            row = np.full(seq_len, PAD_ID, np.int32)
            row[seq_len - len(left):] = left
            ctx.append(row)
            tgt.append(line[i])
        if cross:
            before = stream[-max(width, 1):]
    if not ctx:
        return np.zeros((0, seq_len), np.int32), np.zeros(0, np.int32)
    return np.stack(ctx), np.asarray(tgt, np.int32)


def heldout_word_metrics(predict: Predict, cfg: Config, vocab: Vocab, text: str, seq_len: int,
                         batch_size: int = 256) -> dict[str, float]:
    """Perplexity and accuracy of a word model on the held-out words of ``text`` (see above).

    predict: (B, T) int32 -> (B, V) log-probs (``Steps.predict`` / ``LoadedRun.predict``);
    ``seq_len``: the width the model was trained on. Char-level models return ``{}``.
    """
    return finalize_heldout(heldout_word_sums(predict, cfg, vocab, text, seq_len, batch_size))


def heldout_word_sums(predict: Predict, cfg: Config, vocab: Vocab, text: str, seq_len: int,
                      batch_size: int = 256) -> dict[str, float]:
    """The sums behind :func:`heldout_word_metrics` (they add up over pieces of a text):
    ``nll_sum``, ``correct``, ``total`` (every target, unknown words as ``<unk>``), and
    ``count`` / ``nll_sum_known`` (the in-vocabulary targets only)."""
    if cfg.framing.token_level != "word" or vocab.level != "word":
        return {}
    lines = [vocab.encode(x) for x in vocab.tokenize_lines(text)]
    ctx, tgt = heldout_contexts(cfg, lines, seq_len)
    nll_sum, nll_known, correct = 0.0, 0.0, 0
    n = len(tgt)
    bsz = max(1, min(batch_size, n))
    for a in range(0, n, bsz):  # fixed batch shape (last batch padded): one compilation
        x = ctx[a:a + bsz]
        real = len(x)
        if real < bsz:
            x = np.concatenate([x, np.zeros((bsz - real, seq_len), np.int32)])
        logp = np.asarray(predict(x), np.float64)[:real]  # (b, V)
        t = tgt[a:a + real]
        lp = logp[np.arange(real), t]
        nll_sum += float(-lp.sum())
        nll_known += float(-lp[t != UNK_ID].sum())
        correct += int(np.sum(np.sum(logp > lp[:, None], axis=1) == 0))
    return {"nll_sum": nll_sum, "correct": correct, "total": n,
            "count": int(np.sum(tgt != UNK_ID)), "nll_sum_known": nll_known}


SUM_KEYS = ("nll_sum", "correct", "total", "count", "nll_sum_known")


def finalize_heldout(sums: dict[str, float]) -> dict[str, float]:
    """Sums (possibly added up over pieces) -> the ``heldout_word_*`` metrics ({} if none)."""
    n, known = sums.get("total", 0), sums.get("count", 0)
    if not n:
        return {}
    return {"heldout_word_perplexity": math.exp(min(sums["nll_sum"] / n, 700.0)),
            "heldout_word_accuracy": sums["correct"] / n,
            "heldout_word_count": int(n),
            "heldout_word_oov_rate": 1.0 - known / n,
            "heldout_word_perplexity_in_vocab": (
                math.exp(min(sums["nll_sum_known"] / known, 700.0)) if known else None)}
