"""The keyboard_fast preset keeps its promise: next-character accuracy >= 0.55 on the Nietzsche
test split (every position, 40 chars of context) within 120 s of training. Slow (~3 minutes):
``python -m pytest -m slow tests/infer/test_keyboard_presets.py``."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, need_shared


@pytest.mark.slow
def test_keyboard_fast_reaches_055_on_test_within_120s(tmp_path):
    need_shared("nietzsche")
    run_dir = tmp_path / "fast"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "experiments.run", "experiment=keyboard_fast",
                    "logger=none", "train.progress=false", f"hydra.run.dir={run_dir}"],
                   cwd=REPO, env=env, check=True, timeout=600)
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_seconds"] <= 120.0
    assert len(records) >= 2  # a learning curve: one line per epoch

    from lmjax.data.corpus import load_text, split_text
    from lmjax.infer.load import load_run
    from lmjax.infer.score import heldout_next_token

    loaded = load_run(run_dir)
    assert loaded.seq_len == 40
    sp = split_text(load_text(loaded.cfg.data), loaded.cfg.data)  # the last 10% is test
    got = heldout_next_token(loaded, sp.test, history=sp.train + sp.valid)
    assert got["tokens"] == len(sp.test)  # every position, once (unknown ones as <unk>)
    assert got["next_token_accuracy"] >= 0.55, (got, summary.get("val_accuracy"))
