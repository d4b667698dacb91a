"""TensorBoard over a run, a sweep or a folder of them: start the server, wait until it has read
the runs, ask its HTTP API, and take a screenshot of a view in headless Chromium.

Used by ``python -m experiments.dashboard`` and by the tests. The server is TensorBoard's own
(``python -m tensorboard.main``) in a child process, always stopped by :meth:`stop` (or leaving
the ``with`` block); the screenshot uses playwright (the ``test`` extra) with a Chromium from the
system (Debian's ``chromium``), as playwright's own browser download needs the network.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lmjax.errors import LmjaxError
from lmjax.track import EVENTS_GLOB, TB_DIR

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
VIEWS = {"table": "TABLE VIEW", "parallel": "PARALLEL COORDINATES VIEW",
         "scatter": "SCATTER PLOT MATRIX VIEW"}


class DashboardError(LmjaxError):
    """No TensorBoard data where asked, or the server or browser could not be started."""


def resolve_logdir(path: str | Path) -> Path:
    """The folder to give TensorBoard: a sweep dir's or run dir's ``tensorboard/`` (so runs are
    named by their job), else the folder itself; it must hold event files somewhere below."""
    path = Path(path)
    if not path.exists():
        raise DashboardError(f"{path} does not exist; give a sweep dir, a run dir or a folder "
                             f"of them (results/sweeps/<sweep>)")
    if not path.is_dir():
        raise DashboardError(f"{path} is not a directory; give a sweep dir, a run dir or a "
                             f"folder of them")
    logdir = path / TB_DIR if (path / TB_DIR).is_dir() else path
    if next(logdir.rglob(EVENTS_GLOB), None) is None:
        raise DashboardError(f"no TensorBoard data under {path}; train with logger=tensorboard "
                             f"(or logger=[wandb,tensorboard])")
    return logdir


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TensorBoardServer:
    """``python -m tensorboard.main --logdir LOGDIR`` on ``host:port`` (port 0: a free one).

    ``with TensorBoardServer(logdir) as tb:`` starts it and waits until it answers; leaving the
    block stops it. ``tb.get(path)`` / ``tb.post(path, body)`` call its HTTP API.
    """

    def __init__(self, logdir: str | Path, host: str = "127.0.0.1", port: int = 0,
                 reload_interval: float = 5.0):
        self.logdir, self.host = Path(logdir), host
        self.port = port or free_port(host)
        self.reload_interval = reload_interval
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout: float = 60.0) -> TensorBoardServer:
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logdir),
               "--host", self.host, "--port", str(self.port),
               "--reload_interval", str(self.reload_interval)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DashboardError(f"TensorBoard exited with status {self.proc.returncode}: "
                                     f"{self.output()[-500:]}")
            try:
                self.get("data/environment", timeout=2)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        self.stop()
        raise DashboardError(f"TensorBoard did not answer on {self.url} within {timeout:g} s")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> TensorBoardServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self._log.close()

    def get(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict, timeout: float = 10.0) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    # --- what the server has read ---------------------------------------------------------

    def scalar_tags(self) -> dict[str, list[str]]:
        """{run: [tag, ...]} of the scalars plugin."""
        return {run: sorted(tags) for run, tags in self.get("data/plugin/scalars/tags").items()}

    def experiment(self) -> dict:
        """The HParams experiment: ``hparamInfos`` and ``metricInfos``."""
        return self.post("data/plugin/hparams/experiment", {"experimentName": ""})

    def session_groups(self) -> list[dict]:
        """The rows of the HParams table: name, hparams, metric values, sessions (status)."""
        body = {"experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": [],
                "startIndex": 0, "sliceSize": 100000}
        return self.post("data/plugin/hparams/session_groups", body).get("sessionGroups", [])

    def wait_for_sessions(self, n: int | None = None, timeout: float = 60.0) -> list[dict]:
        """Wait until the HParams table has ``n`` rows (None: the number of runs with event
        files under the logdir) each with at least one metric value; returns the rows."""
        want = n if n is not None else len({p.parent for p in self.logdir.rglob(EVENTS_GLOB)})
        deadline = time.monotonic() + timeout
        groups: list[dict] = []
        while time.monotonic() < deadline:
            try:
                groups = [g for g in self.session_groups() if g.get("metricValues")]
            except (OSError, urllib.error.URLError, ValueError):
                groups = []
            if len(groups) >= want:
                return groups
            time.sleep(0.5)
        raise DashboardError(f"TensorBoard showed {len(groups)} of {want} runs in its HParams "
                             f"table after {timeout:g} s")


def find_chromium() -> str:
    """``$LMJAX_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else one on the PATH."""
    for c in (os.environ.get("LMJAX_CHROMIUM"), "/usr/bin/chromium"):
        if c and Path(c).is_file():
            return c
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise DashboardError("a screenshot needs Chromium: install it (apt-get install chromium) "
                         "or set LMJAX_CHROMIUM=/path/to/chrome")


def table_width(experiment: dict) -> int:
    """Pixels that show every column of the HParams table: its side panel, trial id and
    "show metrics" columns, each hparam and the (at most 5) metrics it shows at first."""
    columns = 2 + len(experiment.get("hparamInfos", [])) + min(
        5, len(experiment.get("metricInfos", [])))
    return 320 + 170 * columns


def screenshot(url: str, out: str | Path, names: list[str], view: str = "table",
               width: int = 1400, timeout: float = 60.0) -> Path:
    """A PNG of TensorBoard's HParams dashboard at ``url`` once every one of ``names`` (the
    table's trial ids) is shown; ``view``: table, parallel (coordinates) or scatter."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise DashboardError("a screenshot needs playwright: "
                             "pip install -c constraints.txt -e '.[test]'") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    height = min(1600, 330 + 36 * max(len(names), 4)) if view == "table" else 900
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url.rstrip("/") + "/#hparams", timeout=timeout * 1000)
            for name in names:
                page.get_by_text(name, exact=True).first.wait_for(timeout=timeout * 1000)
            if view != "table":
                page.get_by_text(VIEWS[view], exact=True).first.click()
            page.wait_for_timeout(1000)  # let the view finish drawing
            page.screenshot(path=str(out))
        finally:
            browser.close()
    return out
