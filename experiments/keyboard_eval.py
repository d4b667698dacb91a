"""Evaluate a trained run as a predictive keyboard.

    python -m experiments.keyboard_eval run=RUN_DIR split=test n=1,3,5

On the run's own held-out split (cut as in training): next-token accuracy and bits per char (char
models) or perplexity (word models) over every position, each predicted from up to ``context``
previous tokens (default: the trained window); then a simulated user types the first
``max_words`` words, accepting a suggestion as soon as the intended word is among the top n,
for each n: keystroke savings and hit rates. Also completes the keyboard tutorial's five quotes
(or the run's ``sample.complete`` texts). Writes ``keyboard_eval.json`` and ``completions.json``
into the run dir (nothing else; ``checkpoint=best`` evaluates the checkpoint with the lowest
validation loss and writes ``keyboard_eval_best.json``, ``checkpoint=N`` step N's,
``keyboard_eval_stepN.json``; a ``context`` other than the default adds ``_ctxN`` or
``_stream`` to the names, a ``min_suffix`` other than 2 ``_minN``). Definitions: docs/keyboard.md.
"""

from __future__ import annotations

from lmjax.cli import friendly_errors
from lmjax.infer.args import MIN_SUFFIX_ARG, Arg, boolean, ints, parse, setup
from lmjax.infer.score import context_arg

SPEC = [
    Arg("run", str, None, "the trained run directory", required=True),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("split", str, "test", "train | valid | test"),
    Arg("n", ints, (1, 3, 5), "suggestion counts, comma separated"),
    Arg("method", str, "beam", "char models: beam | tutorial"),
    Arg("max_words", int, 2000, "words the simulated user types (0: the whole split)"),
    Arg("context", context_arg, 0, "tokens of context for next-token metrics (0: the trained "
        "window; stream: all the text before, the LSTM state carried through the split)"),
    MIN_SUFFIX_ARG,
    Arg("progress", boolean, True, "a progress bar on stderr (when it is a terminal)"),
]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.keyboard_eval", __doc__, SPEC, argv)
    setup()
    from lmjax.errors import ConfigError
    from lmjax.infer.complete import METHODS
    from lmjax.infer.keyboard import format_report, keyboard_eval, output_tag
    from lmjax.infer.load import load_run, parse_checkpoint

    if a["method"] not in METHODS:
        raise ConfigError(f"unknown method {a['method']!r}; choose one of {', '.join(METHODS)}")
    if a["max_words"] < 0:
        raise ConfigError("max_words must be >= 0")
    which = parse_checkpoint(a["checkpoint"])
    loaded = load_run(a["run"], which)
    which = which if isinstance(which, str) else "step"
    r = keyboard_eval(loaded, a["split"], a["n"], a["method"], a["max_words"],
                      a["context"] or None, a["progress"], checkpoint=which,
                      min_suffix=a["min_suffix"])
    print(format_report(r))
    tag = output_tag(which, r["step"], a["context"] or None, a["min_suffix"])
    print(f"wrote {loaded.run_dir / f'keyboard_eval{tag}.json'} and completions{tag}.json")


if __name__ == "__main__":
    main()
