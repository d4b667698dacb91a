"""A bounded load test of the keyboard server: concurrent clients typing, a key per request.

Each of ``clients`` httpx clients types one of ``texts`` (the tutorial's quotes by default,
client ``i`` starting at quote ``i``) a character at a time, POSTing the text so far to
``/api/suggest`` after each character and waiting for the answer before the next, until
``seconds`` have passed. Reported: requests, errors (a status other than 200, or no answer),
requests per second, and the client-side latency p50 / p99 / max in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Sequence

import httpx
import numpy as np

from lmjax.infer.keyboard import TUTORIAL_QUOTES


async def _client(http: httpx.AsyncClient, url: str, text: str, until: float,
                  lat: list[float], errors: list[str]) -> None:
    k = 0
    while time.perf_counter() < until:
        k = k % len(text) + 1
        t0 = time.perf_counter()
        try:
            r = await http.post(url, json={"text": text[:k]})
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:200]}")
        except httpx.HTTPError as e:
            errors.append(f"{type(e).__name__}: {e}")
        lat.append(time.perf_counter() - t0)


async def _run(base: str, clients: int, seconds: float, texts: Sequence[str]) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        t0 = time.perf_counter()
        until = t0 + seconds
        await asyncio.gather(*(_client(http, base.rstrip("/") + "/api/suggest",
                                       texts[i % len(texts)], until, lat, errors)
                               for i in range(clients)))
        wall = time.perf_counter() - t0
    ms = np.asarray(lat) * 1000
    return {"clients": clients, "seconds": wall, "requests": len(lat), "errors": len(errors),
            "first_errors": errors[:3], "requests_per_s": len(lat) / wall,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "max_ms": float(ms.max()) if len(ms) else None}


def load_test(base_url: str, clients: int = 20, seconds: float = 30.0,
              texts: Sequence[str] | None = None, lowercase: bool = True) -> dict:
    """Run the load test against the server at ``base_url`` (module docstring)."""
    texts = list(texts or TUTORIAL_QUOTES)
    texts = [t.lower() for t in texts] if lowercase else texts
    return asyncio.run(_run(base_url, clients, seconds, texts))


def format_load(r: dict) -> str:
    from lmjax.fmt import num

    return (f"{r['requests']} requests from {r['clients']} clients in {num(r['seconds'], 1)} s: "
            f"{num(r['requests_per_s'], 1)} requests/s, latency p50 {num(r['p50_ms'], 1)} ms, "
            f"p99 {num(r['p99_ms'], 1)} ms, max {num(r['max_ms'], 1)} ms; {r['errors']} errors")
