"""The keyboard in a browser: one page and a JSON API over :class:`~lmjax.infer.live.LiveKeyboard`.

Starlette (routing, requests, JSON responses) served by uvicorn; the page is the static file
``static/keyboard.html`` (plain HTML and JavaScript, no build step).

* ``GET /``: the page. ``GET /api/models``: ``{"models": [names], "n": N, "max_chars": M}``.
* ``POST /api/suggest`` with ``{"text": "the text before the cursor", "method": "beam"}``
  (``method`` optional) -> ``{"text", "partial", "kind": "completion" | "next_word", "models":
  [{"name", "completions": [{"word", "suffix", "prob"}], "latency_ms"}], "latency_ms"}``.

Bad requests get a 4xx JSON answer ``{"error": "one line"}`` and the server keeps serving: a body
that is not UTF-8 or not JSON (400), a text over ``max_chars`` (413), a missing or non-string
``text``, an unknown ``method`` or characters outside a char model's vocabulary (422; a word
model reads unknown words as ``<unk>``), a wrong HTTP method (405), an unknown path (404). Each
model's keyboard answers one request at a time (each user's text continues its own stack of
states), in Starlette's thread pool.
"""

from __future__ import annotations

import json
import math
import threading
import time
from importlib.resources import files

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from lmjax.errors import ConfigError
from lmjax.infer.complete import METHODS
from lmjax.infer.live import LiveKeyboard

MAX_CHARS = 2000  # the longest text a request may send


def page() -> str:
    return files("lmjax.infer").joinpath("static/keyboard.html").read_text(encoding="utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")


def _parse(body: bytes, max_chars: int) -> tuple[str, str | None]:
    """The request body -> (text, method); raises HTTPException(4xx, one line)."""
    if len(body) > 4 * max_chars + 1024:
        raise HTTPException(413, f"the request body is {len(body)} bytes; send at most "
                                 f"{max_chars} characters of text")
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HTTPException(400, f"the request body is not UTF-8 (byte {e.start})") from None
    try:
        req = json.loads(raw)
    except json.JSONDecodeError as e:
        raise HTTPException(400, f"malformed JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(req, dict) or not isinstance(req.get("text"), str):
        raise HTTPException(422, 'send a JSON object {"text": "..."} with the text typed so far')
    text, method = req["text"], req.get("method")
    if len(text) > max_chars:
        raise HTTPException(413, f"text is {len(text)} characters; the limit is {max_chars}")
    if method is not None and method not in METHODS:
        raise HTTPException(422, f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return text, method


def load_keyboards(run: str | None, runs: str | None, checkpoint: str = "latest",
                   **kwargs) -> dict[str, LiveKeyboard]:
    """name -> a warmed-up LiveKeyboard (``kwargs``: its n, method, beams, context) for the
    commands' ``run=DIR`` or ``runs=DIR_A,DIR_B``; the names are the directories as given."""
    from lmjax.infer.load import load_run, parse_checkpoint

    dirs = [d.strip() for d in (runs or run or "").split(",") if d.strip()]
    if not dirs or (run and runs):
        raise ConfigError("give run=RUN_DIR or runs=RUN_A,RUN_B (one of them)")
    if len(set(dirs)) < len(dirs):
        raise ConfigError(f"runs= names a run twice: {runs}")
    out = {}
    for d in dirs:
        kb = LiveKeyboard(load_run(d, parse_checkpoint(checkpoint)), **kwargs)
        kb.warm_up()
        out[d] = kb
    return out


def create_app(keyboards: dict[str, LiveKeyboard], max_chars: int = MAX_CHARS) -> Starlette:
    """The app serving ``keyboards`` (name -> keyboard), side by side in that order."""
    html = page()
    n = max(kb.n for kb in keyboards.values())

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"models": list(keyboards), "n": n, "max_chars": max_chars})

    async def suggest(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            text, method = _parse(await request.body(), max_chars)
        except HTTPException as e:
            return _error(e.status_code, e.detail)
        for name, kb in keyboards.items():
            unknown = kb.unknown(text) if kb.vocab.level == "char" else []  # new words: <unk>
            if unknown:
                return _error(422, f"characters not in the vocabulary of {name}: "
                                   f"{', '.join(map(repr, unknown[:10]))}")
        out = []
        for name, kb in keyboards.items():
            s = await run_in_threadpool(kb.suggest, text, method)
            out.append({"name": name, "latency_ms": 1000 * s.seconds, "completions": [
                {"word": c.word, "suffix": c.suffix, "prob": math.exp(c.log_prob)}
                for c in s.completions]})
        return JSONResponse({"text": text, "partial": s.partial, "kind": s.kind, "models": out,
                             "latency_ms": 1000 * (time.perf_counter() - t0)})

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [Route("/", index), Route("/favicon.ico", no_icon), Route("/api/models", models),
              Route("/api/suggest", suggest, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


class ServerThread:
    """uvicorn serving ``app`` on ``host:port`` in a background thread (tests, the load test):
    ``with ServerThread(app) as url: ...``; port 0 picks a free one."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 30:
                raise RuntimeError("the keyboard server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
