"""Orbax checkpoints of the whole training state, plus JSON metadata.

The state pytree is saved as a flat ``{path: array}`` dict, and restored by matching those
paths against a template built from the run's config and vocabulary. A checkpoint that does not
fit the model (another config, an edited vocabulary) fails with a clear error instead of
loading half-matching arrays. Orbax writes each step to a temporary folder and renames it when
complete, so an interrupted write is never taken for a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from lmjax.errors import CheckpointError


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def flatten(tree: Any) -> dict[str, Any]:
    """Pytree -> {"params__layers__0__w_ih": leaf, ...}."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"__".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def unflatten(template: Any, flat: dict[str, Any]) -> Any:
    """Put the arrays of ``flat`` into the structure of ``template``, checking names and shapes."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = ["__".join(_key_name(k) for k in p) for p, _ in paths]
    if set(names) != set(flat):
        missing = sorted(set(names) - set(flat))[:3]
        extra = sorted(set(flat) - set(names))[:3]
        raise CheckpointError(f"checkpoint does not match the model (missing {missing}, "
                              f"unexpected {extra}); was the config or vocabulary changed?")
    leaves = []
    for name, (_, ref) in zip(names, paths):
        arr = flat[name]
        if np.shape(arr) != np.shape(ref):
            raise CheckpointError(f"checkpoint array {name} has shape {np.shape(arr)}, the model "
                                  f"expects {np.shape(ref)}; was the config or vocabulary changed?")
        leaves.append(arr)
    return jax.tree_util.tree_unflatten(treedef, leaves)


class Checkpointer:
    """An orbax CheckpointManager over ``run_dir/checkpoints``."""

    def __init__(self, directory: Path, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=False),
        )

    def save(self, step: int, state: Any, meta: dict) -> None:
        flat = {k: np.asarray(v) for k, v in flatten(state).items()}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state in the structure of ``template``, metadata) of ``step`` (default: latest)."""
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - orbax raises many types for a damaged folder
            raise CheckpointError(f"checkpoint {self.directory / str(step)} cannot be read "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        return unflatten(template, out["state"]), dict(out["meta"])

    def close(self) -> None:
        self.manager.close()
