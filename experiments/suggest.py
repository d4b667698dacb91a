"""Suggest completions of the word being typed, from a trained run.

    python -m experiments.suggest run=RUN_DIR                  # type: suggestions on every key
    python -m experiments.suggest run=RUN_DIR text="that which does not kill us makes us str"

On a terminal, without ``text``, it is a line editor: the ``n`` suggestions for the text before
the cursor are shown under it and refreshed on every keystroke (completions of the partly typed
word, or the next words after a space or punctuation); Tab accepts the first, 1-9 the numbered
one, Up/Down recall entered lines, Ctrl-D or Ctrl-C leaves. With ``text`` it prints the
suggestions for the end of ``text``; from a pipe, ``'line': word | word ...`` for each line read.
All three give the same suggestions for the same text. ``context=stream`` (char models): the whole
text is the context (the LSTM state advances one character per keystroke); ``context=0``: the
model's training window, ``context=N``: the last N tokens. Char models offer two methods:
``method=beam`` (the most probable whole words) and ``method=tutorial`` (the keyboard tutorial's:
the n most probable next characters, each continued greedily to the end of the word); see
docs/keyboard.md. Text is lowercased when the model was trained on lowercased text; characters or
words the model does not know are read as the unknown token, with a warning.
"""

from __future__ import annotations

import sys
import warnings

from lmjax.cli import friendly_errors
from lmjax.infer.args import MIN_SUFFIX_ARG, Arg, parse, setup
from lmjax.infer.score import context_arg

SPEC = [
    Arg("run", str, None, "the trained run directory", required=True),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("text", str, None, "what has been typed so far (none: interactive, or lines from a pipe)"),
    Arg("n", int, 5, "how many suggestions"),
    Arg("method", str, "beam", "char models: beam | tutorial"),
    Arg("beams", int, 0, "beam width for method=beam (0: max(2n, 8))"),
    MIN_SUFFIX_ARG,
    Arg("context", context_arg, "stream",
        "stream (all the text; char models) | 0 (the training window) | N tokens"),
]


def suggestions(kb, text: str) -> list[str]:
    unknown = kb.unknown(text)
    if unknown:
        warnings.warn(f"not in the vocabulary, read as <unk>: "
                      f"{', '.join(map(repr, unknown[:10]))}")
    return [c.word for c in kb.suggest(text).completions]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.suggest", __doc__, SPEC, argv)
    setup()
    from lmjax.infer.live import LiveKeyboard
    from lmjax.infer.load import load_run, parse_checkpoint

    loaded = load_run(a["run"], parse_checkpoint(a["checkpoint"]))
    kb = LiveKeyboard(loaded, a["n"], a["method"], a["beams"], a["context"],
                      min_suffix=a["min_suffix"])
    if a["text"] is not None:
        print(" | ".join(suggestions(kb, a["text"])))
        return
    if sys.stdin.isatty() and sys.stdout.isatty():
        import asyncio

        from lmjax.infer.terminal import interact

        print("type; Tab or 1-9 accepts a suggestion, Enter a line, Ctrl-D leaves",
              file=sys.stderr)
        tally = asyncio.run(interact(kb))
        print(tally.line(), file=sys.stderr)
        return
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        print(f"{text!r}: " + " | ".join(suggestions(kb, text)), flush=True)


if __name__ == "__main__":
    main()
