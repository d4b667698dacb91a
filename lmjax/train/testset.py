"""The end-of-run test score: the best-validation checkpoint on the whole test text as one stream.

Every run with a test split (``data.test`` with ``data=files``, or ``data.test_frac`` > 0 with
``data.split=position``) ends with ``test_loss``, ``test_perplexity`` / ``test_bits_per_char``,
``test_tokens`` and ``test_oov_rate`` (docs/metrics.md): the test text tokenized as training read
it, run through the LSTM as one stream of batch 1 (the state carried from token to token), every
token after the first scored, an out-of-vocabulary target scored as ``<unk>``. The same numbers
as ``python -m experiments.score run=RUN file=TEST context=stream checkpoint=best``. With
``model.cache_window`` > 0 the same pass also gives ``test_cache_*``: the LSTM with a continuous
cache (:mod:`lmjax.train.cache`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

import jax

from lmjax.config import Config
from lmjax.train.cache import CacheSpec
from lmjax.train.parallel import local_copy
from lmjax.train.resume import Position
from lmjax.train.step import Steps, TrainState, zero_lstm
from lmjax.train.stream import score_stream, test_metrics

log = logging.getLogger("lmjax.train")


def has_test(cfg: Config) -> bool:
    """Does this run score a test split at the end (``data.test`` with ``data=files``, or
    ``data.test_frac`` > 0 with ``data.split=position``)?"""
    d = cfg.data
    return d.test_frac > 0 and d.split == "position" if d.name != "files" else bool(d.test)


def _skip_reason(cfg: Config, data: Any) -> str | None:
    """Why the test split is not scored here ("" on a process other than 0), or None."""
    if cfg.train.parallel_seeds > 1:
        return "not scored with train.parallel_seeds > 1 (score each seed with experiments.score)"
    if data.shards is not None:
        return "not scored with data.shard=devices (no process holds the whole test text)"
    if jax.process_index() > 0:
        return ""  # process 0 scores; its summary.json is the run's
    if not data.test_text.strip():
        return "not scored: the test split is empty"
    return None


def score_test(cfg: Config, data: Any, state: TrainState, steps: Steps, pos: Position,
               kept_steps: Iterable[int], restore_params: Callable[[int], Any]) -> dict:
    """``test_*`` (:func:`lmjax.train.stream.test_metrics`) of the best-validation checkpoint,
    or ``test_note`` saying why not scored. ``kept_steps``: the checkpoints on disk;
    ``restore_params(step)``: the parameters of one of them."""
    if not has_test(cfg):
        return {}
    why = _skip_reason(cfg, data)
    if why is not None:
        if why:
            log.info("test metrics %s", why)
        return {"test_note": why} if why else {}
    last = int(state.step)
    best = pos.best_step if pos.best_step is not None else last
    params = state.params
    if best != last:
        if best not in set(kept_steps):
            why = (f"the best-validation checkpoint (step {best}) was not kept; "
                   f"scored the last one (step {last})")
            log.warning("test metrics: %s", why)
            best = last
        else:
            params = restore_params(best)
    params = local_copy(params)
    vocab, level = data.vocab, cfg.framing.token_level
    ids = vocab.encode(vocab.tokenize_text(data.test_text))
    cap = cfg.train.test_max_tokens
    if cap and len(ids) > cap + 1:
        ids = ids[:cap + 1]  # the first token has no context: cap tokens scored
    progress = progress_log(f"test metrics (step {best})", cfg.train.log_every_s)
    s = score_stream(steps.stream, params, lambda b: zero_lstm(steps.graphdef, params, b),
                     level, ids, progress=progress, cache=CacheSpec.from_model(cfg.model))
    out = dict(test_metrics(s, level), test_step=best)
    if why:
        out["test_note"] = why
    return out


def progress_log(what: str, every_s: float) -> Callable[[int, int], None]:
    """progress(done, total): a log line every ``every_s`` seconds (0: none)."""
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if every_s and (now - last[0] >= every_s or (done == total and now - last[0] > 0
                                                      and total > 100_000)):
            last[0] = now
            log.info("%s: %s of %s tokens", what, f"{done:,}", f"{total:,}")

    return progress
