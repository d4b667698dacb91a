"""What a training run writes after training: greedy samples from ``sample.prompts`` (the
lines of samples.txt) and, with ``sample.complete``, the keyboard completions
(completions.json, printed too; see docs/keyboard.md).

The training floor does not import inference: the entry points pass :func:`run_samples` to
``lmjax.train.loop.run`` / ``lmjax.train.multiseed.run_seeds`` as their ``samples`` callback.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from lmjax.config import Config
from lmjax.data.vocab import Vocab
from lmjax.infer.generate import generate_seq

Predict = Callable[[np.ndarray], np.ndarray]  # inputs (B, T) -> log-probabilities (B, V)


def run_samples(cfg: Config, predict: Predict, vocab: Vocab, width: int,
                run_dir: Path) -> list[str]:
    """The samples of ``sample.prompts`` (returned); writes completions.json when asked."""
    samples: list[str] = []
    if cfg.sample.length:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = [generate_seq(predict, vocab, p, cfg.sample.length, width)
                       for p in cfg.sample.prompts]
    if cfg.sample.complete:  # the keyboard demo: 5 completions of each text's first 40 chars
        from lmjax.infer.complete import format_completions, prompt_completions

        rows = prompt_completions(predict, vocab, list(cfg.sample.complete), width,
                                  lowercase=cfg.data.lowercase)
        tmp = Path(run_dir) / "completions.json.tmp"
        tmp.write_text(json.dumps(rows, indent=2, default=float) + "\n")
        tmp.replace(Path(run_dir) / "completions.json")
        print("\n".join(["completions:"] + format_completions(rows)))
    return samples
