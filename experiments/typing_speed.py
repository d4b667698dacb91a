"""Per-keystroke latency of the live keyboard: type held-out text a character at a time.

    python -m experiments.typing_speed run=RUN_DIR keystrokes=1000

Types the first ``keystrokes`` characters of the run's ``split`` (cut as in training) into a
:class:`lmjax.infer.live.LiveKeyboard` (``context``, ``n``, ``method`` as in suggest), one
``suggest`` call per keystroke after a warm-up, and prints the latency p50 / p90 / p99 / max in
milliseconds (``json=true``: as JSON). With ``context=stream`` a keystroke is one LSTM step plus
the completion search; ``context=0`` re-reads the trained window each time.
"""

from __future__ import annotations

import json
import time

import numpy as np

from lmjax.cli import friendly_errors
from lmjax.infer.args import MIN_SUFFIX_ARG, Arg, boolean, parse, setup
from lmjax.infer.score import context_arg

SPEC = [
    Arg("run", str, None, "the trained run directory", required=True),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("keystrokes", int, 1000, "how many characters to type"),
    Arg("split", str, "test", "train | valid | test: the text typed"),
    Arg("n", int, 5, "how many suggestions"),
    Arg("method", str, "beam", "char models: beam | tutorial"),
    MIN_SUFFIX_ARG,
    Arg("context", context_arg, "stream", "stream | 0 (the training window) | N tokens"),
    Arg("json", boolean, False, "print the result as JSON"),
]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.typing_speed", __doc__, SPEC, argv)
    setup()
    from lmjax.errors import ConfigError
    from lmjax.fmt import num
    from lmjax.infer.keyboard import split_texts
    from lmjax.infer.live import LiveKeyboard
    from lmjax.infer.load import load_run, parse_checkpoint

    loaded = load_run(a["run"], parse_checkpoint(a["checkpoint"]))
    texts, _ = split_texts(loaded.cfg)
    if a["split"] not in texts:
        raise ConfigError(f"split must be one of train, valid, test; got {a['split']!r}")
    text = texts[a["split"]][:a["keystrokes"]]
    kb = LiveKeyboard(loaded, a["n"], a["method"], context=a["context"],
                      min_suffix=a["min_suffix"])
    kb.warm_up()
    ms = []
    for k in range(1, len(text) + 1):
        t0 = time.perf_counter()
        kb.suggest(text[:k])
        ms.append(1000 * (time.perf_counter() - t0))
    q = {f"p{p}_ms": float(np.percentile(ms, p)) for p in (50, 90, 99)}
    r = {"keystrokes": len(ms), "context": a["context"], "method": a["method"], "n": a["n"],
         **q, "max_ms": max(ms), "mean_ms": float(np.mean(ms))}
    if a["json"]:
        print(json.dumps(r, indent=2))
    else:
        print(f"{len(ms)} keystrokes ({a['split']}, context={a['context']}, {a['method']}, "
              f"n={a['n']}): p50 {num(q['p50_ms'], 1)} ms, p90 {num(q['p90_ms'], 1)} ms, "
              f"p99 {num(q['p99_ms'], 1)} ms, max {num(r['max_ms'], 1)} ms")


if __name__ == "__main__":
    main()
