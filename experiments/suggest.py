"""Suggest completions of the word being typed, from a trained run.

    python -m experiments.suggest run=RUN_DIR text="that which does not kill us makes us str"

Prints the ``n`` suggested words for the end of ``text``: completions of the partly typed word,
or the next word right after a space. Without ``text`` it is interactive: each line read from
stdin (a terminal or a pipe) gets its suggestions. Char models offer two methods:
``method=beam`` (the most probable whole words) and ``method=tutorial`` (the keyboard tutorial's:
the n most probable next characters, each continued greedily to the end of the word); see
docs/keyboard.md. Text is lowercased when the model was trained on lowercased text; characters or
words the model does not know are read as the unknown token, with a warning.
"""

from __future__ import annotations

import sys

from lmjax.cli import friendly_errors
from lmjax.infer.args import Arg, parse, setup

SPEC = [
    Arg("run", str, None, "the trained run directory", required=True),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("text", str, None, "what has been typed so far (none: read lines from stdin)"),
    Arg("n", int, 5, "how many suggestions"),
    Arg("method", str, "beam", "char models: beam | tutorial"),
    Arg("beams", int, 0, "beam width for method=beam (0: max(2n, 8))"),
]


def suggestions(loaded, text: str, a: dict) -> list[str]:
    from lmjax.infer.complete import complete

    if loaded.cfg.data.lowercase:
        text = text.lower()
    return [c.word for c in complete(loaded.predict, loaded.vocab, text, a["n"], loaded.seq_len,
                                     method=a["method"], beams=a["beams"])]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.suggest", __doc__, SPEC, argv)
    setup()
    from lmjax.infer.complete import METHODS
    from lmjax.errors import ConfigError
    from lmjax.infer.load import load_run, parse_checkpoint

    if a["method"] not in METHODS:
        raise ConfigError(f"unknown method {a['method']!r}; choose one of {', '.join(METHODS)}")
    loaded = load_run(a["run"], parse_checkpoint(a["checkpoint"]))
    if a["text"] is not None:
        print(" | ".join(suggestions(loaded, a["text"], a)))
        return
    interactive = sys.stdin.isatty()
    if interactive:
        print("type some text and press Enter (Ctrl-D to quit)", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.rstrip("\r\n")
        print(f"{text!r}: " + " | ".join(suggestions(loaded, text, a)), flush=True)


if __name__ == "__main__":
    main()
