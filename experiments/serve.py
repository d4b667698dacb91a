"""Serve the keyboard to a browser: a page with suggestions as you type, and a JSON API.

    python -m experiments.serve run=RUN_DIR                 # http://127.0.0.1:8000
    python -m experiments.serve runs=RUN_A,RUN_B port=8001  # two models side by side

The models are loaded once and compiled (a warm-up call) before the server answers. The page:
a text box, each model's top ``n`` suggestions for the text before the cursor, refreshed on every
keystroke; Tab accepts the first model's first, a click any; a running count of keystrokes
typed and saved. The API: ``POST /api/suggest`` with ``{"text": "..."}`` (see docs/keyboard.md).
It binds 127.0.0.1 (this machine only) unless ``host=`` says otherwise.
"""

from __future__ import annotations

import sys

from lmjax.cli import friendly_errors
from lmjax.infer.args import MIN_SUFFIX_ARG, Arg, parse, setup
from lmjax.infer.score import context_arg

SPEC = [
    Arg("run", str, None, "the trained run directory (or runs=)"),
    Arg("runs", str, None, "two or more run directories, comma-separated, shown side by side"),
    Arg("checkpoint", str, "latest", "latest | best (lowest validation loss) | a step number"),
    Arg("n", int, 5, "how many suggestions"),
    Arg("method", str, "beam", "char models: beam | tutorial"),
    Arg("beams", int, 0, "beam width for method=beam (0: max(2n, 8))"),
    MIN_SUFFIX_ARG,
    Arg("context", context_arg, "stream",
        "stream (all the text; char models) | 0 (the training window) | N tokens"),
    Arg("host", str, "127.0.0.1", "the address to listen on (0.0.0.0: every interface)"),
    Arg("port", int, 8000, "the port to listen on"),
    Arg("max_chars", int, 2000, "the longest text a request may send"),
]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.serve", __doc__, SPEC, argv)
    setup()
    import uvicorn

    from lmjax.infer.serve import create_app, load_keyboards

    kbs = load_keyboards(a["run"], a["runs"], a["checkpoint"], n=a["n"], method=a["method"],
                         beams=a["beams"], context=a["context"], min_suffix=a["min_suffix"])
    app = create_app(kbs, a["max_chars"])
    print(f"serving http://{a['host']}:{a['port']} (Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=a["host"], port=a["port"], log_level="warning")


if __name__ == "__main__":
    main()
