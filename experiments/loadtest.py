"""Load-test the keyboard server: concurrent clients typing the tutorial's quotes a key at a time.

    python -m experiments.serve run=RUN_DIR &                       # the server, in its own process
    python -m experiments.loadtest url=http://127.0.0.1:8000 clients=20 seconds=30
    python -m experiments.loadtest run=RUN_DIR seconds=5            # or a server in this process

Prints requests/s, latency p50 / p99 / max (ms, as the clients see it) and the errors (any answer
but 200); exits 1 when there were errors. ``json=true`` prints the numbers as JSON instead.
"""

from __future__ import annotations

import json
import sys

from lmjax.cli import friendly_errors
from lmjax.infer.args import Arg, boolean, parse, setup

SPEC = [
    Arg("url", str, None, "the server's address (or run=: start one in this process)"),
    Arg("run", str, None, "a run directory to serve in this process, on a free local port"),
    Arg("clients", int, 20, "concurrent clients"),
    Arg("seconds", float, 30.0, "how long the clients keep typing"),
    Arg("json", boolean, False, "print the result as JSON"),
]


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    a = parse("experiments.loadtest", __doc__, SPEC, argv)
    from contextlib import nullcontext

    from lmjax.errors import ConfigError
    from lmjax.infer.loadtest import format_load, load_test

    if bool(a["url"]) == bool(a["run"]):
        raise ConfigError("give url=http://HOST:PORT of a running server, or run=RUN_DIR")
    if a["clients"] < 1 or a["seconds"] <= 0:
        raise ConfigError("clients must be >= 1 and seconds > 0")
    server = nullcontext(a["url"])
    if a["run"]:
        setup()
        from lmjax.infer.serve import ServerThread, create_app, load_keyboards

        server = ServerThread(create_app(load_keyboards(a["run"], None)))
    with server as url:
        r = load_test(url, a["clients"], a["seconds"])
    print(json.dumps(r, indent=2) if a["json"] else format_load(r))
    if r["errors"]:
        print("first errors: " + "; ".join(r["first_errors"]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
