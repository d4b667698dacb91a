"""Open TensorBoard on a run, a sweep or a folder of them (trained with logger=tensorboard).

Starts TensorBoard on LOGDIR (a sweep dir or run dir: its tensorboard/ folder), prints the URL
and serves until Ctrl-C. With screenshot=PATH it instead waits until the HParams table shows
every run, saves a PNG of the HParams view (headless Chromium) and stops. See docs/dashboard.md.
"""

from __future__ import annotations

import sys
import time

from lmjax.cli import friendly_errors
from lmjax.infer.args import Arg, parse

SPEC = [
    Arg("logdir", str, None, "a sweep dir, a run dir or a folder of them", required=True),
    Arg("host", str, "127.0.0.1", "address to serve on (0.0.0.0: reachable from other hosts)"),
    Arg("port", int, 6006, "port to serve on (0: any free port)"),
    Arg("screenshot", str, "", "save a PNG of the HParams view here and stop"),
    Arg("view", str, "table", "the HParams view to screenshot: table, parallel or scatter"),
    Arg("width", int, 0, "screenshot width in pixels (0: wide enough for every column)"),
]


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parse("experiments.dashboard", __doc__, SPEC, argv)
    from lmjax.dashboard import (VIEWS, DashboardError, TensorBoardServer, resolve_logdir,
                                 screenshot, table_width)

    if args["view"] not in VIEWS:
        raise DashboardError(f"view must be one of {', '.join(VIEWS)}, got {args['view']!r}")
    logdir = resolve_logdir(args["logdir"])
    port = 0 if args["screenshot"] else args["port"]  # a screenshot never clashes with a server
    with TensorBoardServer(logdir, host=args["host"], port=port) as tb:
        if args["screenshot"]:
            print(f"TensorBoard on {logdir} at {tb.url}; waiting for its HParams table",
                  flush=True)
            names = [g["name"] for g in tb.wait_for_sessions()]
            out = screenshot(tb.url, args["screenshot"], names, view=args["view"],
                             width=args["width"] or table_width(tb.experiment()))
            print(f"{len(names)} runs; wrote {out}")
            return 0
        print(f"TensorBoard on {logdir}: {tb.url}  (HParams: {tb.url}#hparams; "
              f"Ctrl-C stops it)", flush=True)
        try:
            while tb.proc is not None and tb.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopped TensorBoard")
            return 0
        raise DashboardError(f"TensorBoard stopped: {tb.output()[-300:]}")


if __name__ == "__main__":
    sys.exit(main())
