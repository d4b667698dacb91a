"""Orbax checkpoints of the whole training state, plus JSON metadata.

One orbax ``CheckpointManager`` per run dir (``run_dir/checkpoints/<step>/``) keeps the latest
``keep`` checkpoints plus the one with the best validation loss (a preservation policy: latest N
or best 1). Each step folder holds two items: ``state`` (params, optimizer state, step, dropout
key, saved as a flat ``{path: array}`` dict) and ``meta`` (JSON: position in the data order,
running sums, best metric, vocabulary hash, config hash, W&B run id; see results/README.md).

Restoring matches the saved paths and shapes against a template built from the run's config and
vocabulary, so a checkpoint that does not fit the model (another config, an edited vocabulary)
fails with a clear error instead of loading half-matching arrays. Orbax writes each step to
``<step>.orbax-checkpoint-tmp`` and renames it when complete; such leftovers of an interrupted
write are never listed as checkpoints and are deleted when the manager opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm
from orbax.checkpoint.path import atomicity

from lmjax.errors import CheckpointError
from lmjax.train import faults

TMP_SUFFIX = ".orbax-checkpoint-tmp"


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def flatten(tree: Any) -> dict[str, Any]:
    """Pytree -> {"params__layers__0__w_ih": leaf, ...}."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"__".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


# The carried LSTM state (framing.carry_state) is optional both ways: a checkpoint written before
# it was saved resumes from the zero state of the template, and a reader that does not train
# (load_run) ignores it.
OPTIONAL = "lstm"


def unflatten(template: Any, flat: dict[str, Any]) -> Any:
    """Put the arrays of ``flat`` into the structure of ``template``, checking names and shapes."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = ["__".join(_key_name(k) for k in p) for p, _ in paths]
    flat = {k: v for k, v in flat.items() if k in names or not k.startswith(OPTIONAL)}
    flat.update({n: np.asarray(ref) for n, (_, ref) in zip(names, paths)
                 if n.startswith(OPTIONAL) and n not in flat})
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
        leaves.append(np.asarray(arr, dtype=np.asarray(ref).dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves)


class _HookedTemporaryPath(atomicity.AtomicRenameTemporaryPath):
    """Orbax's atomic tmp-dir-then-rename, with the ``ckpt_write`` fault point before the rename
    of the step folder (only used when a test armed that point)."""

    async def finalize(self, *args: Any, **kwargs: Any) -> None:
        if TMP_SUFFIX in self.get().name and TMP_SUFFIX not in self.get().parent.name:
            faults.reached("ckpt_write")
        return await super().finalize(*args, **kwargs)


def _val_loss(metrics: Any) -> float:
    return float(metrics["val_loss"])


class Checkpointer:
    """An orbax CheckpointManager over ``directory``: latest ``keep`` + best by val_loss."""

    def __init__(self, directory: Path, keep: int = 3, read_only: bool = False):
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoints in {self.directory}")
        policy = cm.AnyPreservationPolicy([
            cm.LatestN(n=keep),
            cm.BestN(get_metric_fn=_val_loss, reverse=True, n=1,
                     keep_checkpoints_without_metrics=False),
        ])
        extra = {"temporary_path_class": _HookedTemporaryPath} if faults.armed("ckpt_write") else {}
        create = not read_only
        if jax.process_count() > 1:
            # A multi-process job: only process 0 writes checkpoints (the state is replicated),
            # every process may read them; an orbax manager per process, so no save or restore
            # waits on a cross-process barrier.
            i = jax.process_index()
            if create:  # orbax does not create the root with active_processes set
                self.directory.mkdir(parents=True, exist_ok=True)
                create = False
            extra["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=i, active_processes={i}, barrier_sync_key_prefix=f"lmjax{i}")
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=policy, create=create, read_only=read_only,
                enable_async_checkpointing=False, cleanup_tmp_directories=not read_only,
                **extra),
        )

    def save(self, step: int, state: Any, meta: dict, val_loss: float | None = None) -> None:
        """Write ``state`` and ``meta`` as step ``step``; ``val_loss`` ranks it for "best"."""
        flat = {k: np.asarray(v) for k, v in flatten(state).items()}
        metrics = {"val_loss": val_loss} if val_loss is not None and np.isfinite(val_loss) else None
        if step in self.manager.all_steps():  # the same step holds the same state: keep it
            return
        faults.reached("ckpt_begin")
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)), metrics=metrics,
            force=True)
        self.manager.wait_until_finished()
        faults.reached("ckpt_done")

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the lowest epoch-end validation loss so far, as the latest
        checkpoint's metadata records it (``best_step``). Its checkpoint is kept (the
        preservation policy) if one was written at that step (``train.checkpoint_every``)."""
        latest = self.manager.latest_step()
        return None if latest is None else self.restore_meta(latest).get("best_step")

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def _restore(self, step: int | None, **items: Any) -> dict:
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step not in self.manager.all_steps():
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory} "
                                  f"(there are {sorted(self.manager.all_steps())})")
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001 - orbax raises many types for a damaged folder
            msg = (str(e).splitlines() or [""])[0][:200]
            raise CheckpointError(f"checkpoint {self.directory / str(step)} cannot be read "
                                  f"({type(e).__name__}: {msg}); delete that folder to use an "
                                  f"earlier checkpoint") from None
        return dict(out)

    def restore_meta(self, step: int | None = None) -> dict:
        return dict(self._restore(step, meta=ocp.args.JsonRestore())["meta"])

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state in the structure of ``template``, metadata) of ``step`` (default: latest)."""
        out = self._restore(step, state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
        if not isinstance(out.get("meta"), dict) or not isinstance(out.get("state"), dict):
            raise CheckpointError(f"checkpoint {self.directory} is incomplete (state or meta "
                                  f"missing); delete it to use an earlier checkpoint")
        return unflatten(template, out["state"]), dict(out["meta"])

    def close(self) -> None:
        self.manager.close()


class FollowerCheckpointer:
    """Process i > 0 of a multi-process job: writes no checkpoint (process 0 does, the state
    being replicated) and resumes from process 0's checkpoints in ``directory`` (a run dir on
    a filesystem every process sees, as on a cluster)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()
        self._reader: Checkpointer | None = None

    def _open(self) -> Checkpointer | None:
        if self._reader is None and self.directory.is_dir():
            self._reader = Checkpointer(self.directory, read_only=True)
        return self._reader

    def save(self, step: int, state: Any, meta: dict, val_loss: float | None = None) -> None:
        return None

    def latest_step(self) -> int | None:
        reader = self._open()
        return reader.latest_step() if reader else None

    def all_steps(self) -> list[int]:
        reader = self._open()
        return reader.all_steps() if reader else []

    def restore_meta(self, step: int | None = None) -> dict:
        reader = self._open()
        if reader is None:
            raise CheckpointError(f"no checkpoints in {self.directory}")
        return reader.restore_meta(step)

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        reader = self._open()
        if reader is None:
            raise CheckpointError(f"no checkpoints in {self.directory}")
        return reader.restore(template, step)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
