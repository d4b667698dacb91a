"""Score a text with a trained model: ``python -m experiments.score run=RUN_DIR text="..."``.

Prints the total log-probability (natural log) of the text and the per-token perplexity (word
models) or bits per character (char models). Scored: every token after the first, each predicted
from up to ``context`` tokens before it (default: the window the model was trained on), left-
padded to that window (``context=stream``: from all the tokens before it, the LSTM state
carried); a token outside the vocabulary is scored as ``<unk>`` (counted as unknown, with the
OOV rate and the perplexity over in-vocabulary tokens printed beside). With ``file=PATH`` each
non-empty line of the file is scored on its own, one line of output each, then the totals over
all lines; ``file=PATH context=stream`` scores the whole file as one stream instead (the state
carried from token to token, every token after the first scored; any size). With
``context=stream`` and a run trained with ``model.cache_window`` > 0 (or ``cache_window=N``
here), a second line scores the same tokens with the LSTM's continuous cache (``cache_*``; the
same numbers as the run's ``test_cache_*``), e.g. to choose ``cache_theta`` and
``cache_lambda`` on validation text. Details: docs/metrics.md, docs/keyboard.md.
"""

from __future__ import annotations

import math

from lmjax.cli import friendly_errors
from lmjax.infer.args import Arg, parse, setup
from lmjax.infer.score import STREAM, context_arg

SPEC = [
    Arg("run", str, None, "the trained run directory", required=True),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("text", str, None, "the text to score"),
    Arg("file", str, None, "score each line of this UTF-8 file instead (context=stream: the "
        "whole file as one stream)"),
    Arg("context", context_arg, 0, "tokens of left context (0: the model's trained window; "
        "stream: all the tokens before, the LSTM state carried)"),
    Arg("cache_window", int, None, "context=stream: also score with a continuous cache over "
        "this many positions (default: the run's model.cache_window; 0: off)"),
    Arg("cache_theta", float, None, "the cache's theta (default: the run's model.cache_theta)"),
    Arg("cache_lambda", float, None, "the cache's weight (default: the run's "
        "model.cache_lambda)"),
]


def _cache_spec(a: dict, model_cfg):
    """The continuous cache of this command: the run's model.cache_* with the given overrides
    (None when its window is 0)."""
    import dataclasses

    from lmjax.errors import ConfigError
    from lmjax.train.cache import CacheSpec

    given = {k: a[k] for k in ("cache_window", "cache_theta", "cache_lambda")
             if a[k] is not None}
    if given and a["context"] != STREAM:
        raise ConfigError(f"{', '.join(given)}: only with context=stream (the cache keeps "
                          f"the stream's past)")
    try:
        m = dataclasses.replace(model_cfg, **given)
    except ValueError as e:  # the ModelConfig's own check, one line
        raise ConfigError(str(e).replace("model.", "")) from None
    return CacheSpec.from_model(m)


def _fmt(s: dict, metric: str, prefix: str = "") -> str:
    from lmjax.fmt import num  # a diverged model's perplexity of 1e300 prints as 1.0e+300

    out = (f"{prefix}log_prob {num(s['log_prob'])}  tokens {s['tokens']}  {prefix}{metric} "
           f"{num(s[metric])}")
    if s["unknown"]:  # scored as <unk>; the OOV rate (and in-vocabulary figure) beside it
        out += f"  unknown {s['unknown']} (oov_rate {num(s['unknown'] / s['tokens'])}"
        if f"{metric}_in_vocab" in s:
            out += f", {metric}_in_vocab {num(s[f'{metric}_in_vocab'])}"
        out += ")"
    return out


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.score", __doc__, SPEC, argv)
    from lmjax.errors import ConfigError

    if (a["text"] is None) == (a["file"] is None):
        raise ConfigError("give exactly one of text=... or file=PATH")
    setup()
    from lmjax.data.corpus import read_text_file
    from lmjax.infer.load import load_run, parse_checkpoint
    from lmjax.infer.score import heldout_next_token, score_lines, score_text

    text = a["text"] if a["file"] is None else read_text_file(a["file"])
    loaded = load_run(a["run"], parse_checkpoint(a["checkpoint"]))
    if loaded.cfg.data.lowercase:
        text = text.lower()
    metric = "bits_per_char" if loaded.vocab.level == "char" else "perplexity"
    ctx = a["context"] or None
    cache = _cache_spec(a, loaded.cfg.model)
    if ctx == STREAM:  # the text or the whole file, one stream
        s = heldout_next_token(loaded, text, STREAM, cache=cache)
        head = "" if a["file"] is None else f"{a['file']} (one stream): "
        print(f"{head}{_fmt(s, metric)}")
        if cache is not None:
            print(f"{head}with cache (window {cache.window}, theta {cache.theta:g}, lambda "
                  f"{cache.lam:g}): {_fmt(s['cache'], metric, 'cache_')}")
        return
    if a["file"] is None:
        s = score_text(loaded.predict, loaded.vocab, text, loaded.seq_len, ctx, batch_size=64)
        print(_fmt(s, metric))
        return
    rows = score_lines(loaded.predict, loaded.vocab, text, loaded.seq_len, ctx)
    for r in rows:
        print(f"{_fmt(r, metric)}  {r['line']}")
    lp = sum(r["log_prob"] for r in rows)
    n = sum(r["tokens"] for r in rows)
    total = {"log_prob": lp, "tokens": n, "unknown": sum(r["unknown"] for r in rows),
             metric: None if n == 0 else (-lp / n / math.log(2) if metric == "bits_per_char"
                                          else math.exp(-lp / n))}
    print(f"total ({len(rows)} lines): {_fmt(total, metric)}")


if __name__ == "__main__":
    main()
