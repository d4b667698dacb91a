"""Data parallelism: a 1-D device mesh, replicated state, batches split along the batch axis.

Every run goes through a :class:`Placement`, one device included, so there is a single code
path. The jitted steps carry no sharding annotations of their own: their inputs arrive with
``NamedSharding``s (state and dataset replicated, batch-index rows split over the ``data``
axis) and XLA's SPMD partitioner inserts the gradient all-reduce.

Multi-host: :func:`init_distributed` calls ``jax.distributed.initialize`` from the environment
(SLURM, or LMJAX_COORDINATOR / LMJAX_NUM_PROCESSES / LMJAX_PROCESS_ID). Every process computes
the same seeded batch order, and each one materialises only the index rows of its own devices
(``make_array_from_callback`` asks a process only for its addressable shards).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lmjax.errors import ConfigError

AXIS = "data"


def init_distributed() -> bool:
    """Join a multi-process job when the environment describes one; True if it did.

    Explicit: LMJAX_COORDINATOR=host:port, LMJAX_NUM_PROCESSES=N, LMJAX_PROCESS_ID=i.
    SLURM: inside an ``srun`` step with more than one task, JAX reads SLURM's variables itself.
    """
    if jax.distributed.is_initialized():
        return True
    coord = os.environ.get("LMJAX_COORDINATOR")
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in os.environ
    if coord or slurm:  # CPU processes exchange gradients over gloo (ignored on GPU)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coord:
        jax.distributed.initialize(coordinator_address=coord,
                                   num_processes=int(os.environ["LMJAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["LMJAX_PROCESS_ID"]))
        return True
    if slurm:
        jax.distributed.initialize()
        return True
    return False


def process_run_dir(run_dir: Path) -> Path:
    """Where this process writes. Process 0 (or a single process) owns ``run_dir``: config,
    metrics, W&B, samples, summary, checkpoints. Process i > 0 of a multi-process job trains the
    same replicated state and keeps its own copy in ``<run_dir>.process<i>`` (its checkpoints let
    it resume with the others; it logs nothing to W&B), so no two processes write one file."""
    i = jax.process_index()
    return run_dir if i == 0 else run_dir.with_name(f"{run_dir.name}.process{i}")


def select_devices(spec: str) -> list:
    """``auto``: every device of the job; ``N``: the first N; default ``1``."""
    devices = jax.devices()
    if spec == "auto":
        return devices
    try:
        n = int(spec)
    except ValueError:
        raise ConfigError(f"train.devices must be 'auto' or a positive number, got {spec!r}") from None
    if not 1 <= n <= len(devices):
        raise ConfigError(f"train.devices={n} but {len(devices)} device(s) are available "
                          f"({devices[0].platform}); use train.devices=auto")
    return devices[:n]


class Placement:
    """Where arrays live: replicated (state, dataset) or split over the data axis (batch rows)."""

    def __init__(self, devices: list):
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.size = len(devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.rows_sharding = NamedSharding(self.mesh, P(None, AXIS))

    def check_batch(self, batch_size: int, what: str = "train.batch_size") -> None:
        if batch_size % self.size:
            raise ConfigError(f"{what}={batch_size} does not split across {self.size} devices; "
                              f"use a multiple of {self.size}")

    def replicate(self, tree: Any) -> Any:
        """Host or device pytree -> the same values on every device of the mesh."""
        def put(x: Any) -> jax.Array:
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, self.replicated, lambda idx: x[idx])
        return jax.tree.map(put, tree)

    def rows(self, idx: np.ndarray) -> jax.Array:
        """(K, B) host batch-index rows -> a global array split along B over the devices.

        Only the shards of this process's devices are materialised.
        """
        idx = np.ascontiguousarray(idx, np.int32)
        return jax.make_array_from_callback(idx.shape, self.rows_sharding, lambda i: idx[i])

    def local_positions(self) -> list[int]:
        """Mesh positions of this process's devices (global data-shard ids), in mesh order."""
        me = jax.process_index()
        return [k for k, d in enumerate(self.mesh.devices.flat) if d.process_index == me]


def local_copy(tree: Any) -> Any:
    """Replicated arrays -> this process's copy on one of its devices (no collectives)."""
    return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, tree)


def allgather_json(obj: Any) -> list:
    """Every process's ``obj`` (JSON-serialisable), in process order; ``[obj]`` in one process."""
    import json

    if jax.process_count() == 1:
        return [json.loads(json.dumps(obj))]
    from jax.experimental import multihost_utils

    raw = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(len(raw)))).reshape(-1)
    buf = np.zeros(int(sizes.max()), np.uint8)
    buf[: len(raw)] = raw
    got = np.asarray(multihost_utils.process_allgather(buf)).reshape(len(sizes), -1)
    return [json.loads(bytes(row[:n]).decode()) for row, n in zip(got, sizes)]


def agreed(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on every process; if it raised an lmjax error on any, every process raises
    (a process that failed alone would leave the others waiting in a collective)."""
    from lmjax.errors import LmjaxError

    try:
        out, err = fn(*args), None
    except LmjaxError as e:
        out, err = None, e
    if jax.process_count() == 1:
        if err is not None:
            raise err
        return out
    errors = allgather_json(None if err is None else [type(err).__name__, str(err)])
    if err is not None:
        raise err
    bad = [(i, e) for i, e in enumerate(errors) if e is not None]
    if bad:
        from lmjax import errors as errs

        i, (name, msg) = bad[0]
        cls = getattr(errs, name, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, LmjaxError) else ConfigError
        raise cls(f"process {i} failed: {msg}")
    return out
