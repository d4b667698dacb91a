"""Load a trained run from its directory alone: config.yaml, vocab.json, orbax checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from flax import nnx

from lmjax.config import Config, from_dict
from lmjax.data.vocab import Vocab
from lmjax.errors import CheckpointError
from lmjax.train.checkpoint import Checkpointer
from lmjax.train.loop import build_model, make_steps, state_tree
from lmjax.train.step import Steps, TrainState, init_state


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: Config
    vocab: Vocab
    steps: Steps
    state: TrainState
    seq_len: int  # the window the model was trained on (prompts are fitted to it)
    meta: dict

    @property
    def params(self) -> Any:
        return self.state.params

    @property
    def model(self) -> nnx.Module:
        return nnx.merge(self.steps.graphdef, self.state.params)

    def predict(self, ids: np.ndarray) -> np.ndarray:
        """(B, T) int token ids -> (B, V) log-probabilities of the next token."""
        return np.asarray(self.steps.predict(self.state.params, jnp.asarray(ids, jnp.int32)))


def load_config(run_dir: str | Path) -> Config:
    if not Path(run_dir).exists():
        raise CheckpointError(f"{run_dir} does not exist (run= takes a run directory, e.g. "
                              f"results/runs/<date>/<time>_<name>)")
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not an lmjax run directory (no config.yaml)")
    try:
        return from_dict(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as e:
        raise CheckpointError(f"cannot parse {path}: {e}") from None


def parse_checkpoint(which: str) -> str | int:
    """``latest`` | ``best`` | a step number (the inference commands' ``checkpoint=``)."""
    which = str(which).strip()
    if which in ("latest", "best"):
        return which
    if which.isdigit():
        return int(which)
    raise CheckpointError(f"checkpoint={which!r} is not latest, best or a step number")


def load_run(run_dir: str | Path, step: int | str | None = None) -> LoadedRun:
    """The trained state of ``run_dir``: its latest checkpoint (``step`` None or ``"latest"``),
    the one with the lowest validation loss (``"best"``), or the checkpoint of step ``step``."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    vocab = Vocab.load(run_dir / "vocab.json")
    graphdef, params = build_model(cfg, len(vocab))
    steps = make_steps(cfg, graphdef)
    template = state_tree(init_state(params, steps.tx, jax.random.PRNGKey(0)))
    # read-only: never creates, cleans or deletes anything (the run may still be training)
    ckpt = Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        if step in (None, "latest"):
            step = ckpt.latest_step()  # one step for meta and state
        elif step == "best":
            best = ckpt.best_step()
            if best is None:
                raise CheckpointError(f"{run_dir} has no validation loss to pick the best "
                                      f"checkpoint by; use checkpoint=latest")
            if best not in ckpt.all_steps():
                raise CheckpointError(f"the best epoch (step {best}) of {run_dir} was not "
                                      f"checkpointed (train.checkpoint_every=1 keeps it); "
                                      f"kept steps: {sorted(ckpt.all_steps())}")
            step = best
        if ckpt.restore_meta(step).get("vocab_sha256") != vocab.sha256():
            raise CheckpointError(f"{run_dir / 'vocab.json'} does not match the vocabulary the "
                                  f"checkpoint was trained with; was it edited?")
        tree, meta = ckpt.restore(template, step)
    finally:
        ckpt.close()
    state = TrainState(params=tree["params"], opt_state=tree["opt_state"],
                       step=jnp.asarray(tree["step"]), key=jnp.asarray(tree["key"]))
    return LoadedRun(run_dir, cfg, vocab, steps, state, int(meta["seq_len"]), meta)
