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
