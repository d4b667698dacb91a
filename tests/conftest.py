"""Test-wide settings: no network, W&B offline, private caches, corpora from ../shared/data."""

import os
from pathlib import Path

import pytest

os.environ["WANDB_MODE"] = "offline"  # never online in tests (tests that need it disable it)
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["LMJAX_TRACEBACK"] = "0"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Each test: a private cache dir (nothing downloaded into the user's), W&B offline."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("WANDB_DIR", str(cache / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("LMJAX_DATA_DIR", str(SHARED_DATA))
    else:
        monkeypatch.delenv("LMJAX_DATA_DIR", raising=False)


def need_shared(name: str) -> Path:
    path = SHARED_DATA / f"{name}.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def need_chromium() -> str:
    """Debian's headless Chromium for the browser tests. Where it is missing the test skips,
    except under ``LMJAX_REQUIRE_BROWSER=1`` (set by .ci/run, which installs it): there a
    missing browser fails, so CI never passes with its browser tests skipped."""
    import shutil

    path = (os.environ.get("LMJAX_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))
    if path:
        return path
    if os.environ.get("LMJAX_REQUIRE_BROWSER"):
        pytest.fail("no Chromium found, and LMJAX_REQUIRE_BROWSER is set (.ci/run installs "
                    "Debian's chromium)")
    pytest.skip("no headless Chromium on this machine (.ci/run installs Debian's chromium)")


def poison_losses_from(monkeypatch, step: int):
    """Make training report a NaN loss at optimizer step ``step`` (0-based: the run's step
    ``step + 1``) and at every chunk after it, by wrapping ``Steps.train_chunk`` of the steps
    ``lmjax.train.loop.make_steps`` builds. Returns ``lmjax.train.loop``."""
    import jax.numpy as jnp

    from lmjax.train import loop

    real = loop.make_steps

    def poisoned(cfg, graphdef, take=None):
        steps = real(cfg, graphdef, take)
        chunk = steps.train_chunk

        def train_chunk(state, data, idx):
            before = int(state.step)
            state, sums, losses = chunk(state, data, idx)
            if before + len(idx) > step:
                losses = losses.at[max(step - before, 0)].set(jnp.nan)
            return state, sums, losses

        steps.train_chunk = train_chunk
        return steps

    monkeypatch.setattr(loop, "make_steps", poisoned)
    return loop
