"""Shared plumbing for the ``experiments/`` entry points: JAX set-up, one-line errors, signals
(:class:`StopSignals` lives in :mod:`lmjax.train.signals`; it is re-exported here)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

from lmjax.errors import LmjaxError
from lmjax.train.signals import StopSignals  # noqa: F401 - re-exported for existing users


def cpu_devices_flag() -> None:
    """``LMJAX_CPU_DEVICES=N`` (or ``auto``: one per CPU core) splits the CPU into N JAX
    devices, so that ``train.devices=auto`` trains data parallel over the cores: each device
    runs its share of the batch on its own thread (XLA runs the small matmuls of an LSTM step
    on one core). Must run before JAX creates its CPU backend; a count already in XLA_FLAGS
    wins."""
    want = os.environ.get("LMJAX_CPU_DEVICES", "").strip().lower()
    if not want or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    n = (os.cpu_count() or 1) if want == "auto" else (int(want) if want.isdigit() else 0)
    if n < 1:
        raise LmjaxError(f"LMJAX_CPU_DEVICES={want!r}: use a positive number or auto")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={n}").strip()


def setup_jax() -> None:
    """Persistent compilation cache (reruns of a config skip compiling), quiet logs, and the
    CPU device count of ``LMJAX_CPU_DEVICES``."""
    import logging

    cpu_devices_flag()
    import jax

    for name in ("absl", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)

    cache = os.environ.get("LMJAX_JAX_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmjax" / "jax")
    if cache != "off":
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    from lmjax.train.parallel import init_distributed

    init_distributed()  # a multi-process job (SLURM srun, or LMJAX_COORDINATOR=...) joins here


def error_exit(message: str, code: int = 2) -> None:
    print(f"lmjax: error: {message}", file=sys.stderr)
    sys.exit(code)


def closed_pipe_exit() -> None:
    """Exit quietly (status 1) when stdout's reader has gone (``... --help | head``), as Unix
    tools do, instead of a BrokenPipeError traceback. Python's recipe
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe): stdout is pointed at
    /dev/null first, so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn LmjaxError (and config-composition errors) into one line and exit code 2; a closed
    stdout (a pipe to ``head``) into a quiet exit.

    LMJAX_TRACEBACK=1 shows the full traceback instead.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.environ.get("LMJAX_TRACEBACK") == "1":
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except LmjaxError as e:
            error_exit(str(e), getattr(e, "exit_code", 2))
        except KeyboardInterrupt:
            error_exit("interrupted", 130)
        except BrokenPipeError:
            closed_pipe_exit()
        except Exception as e:  # omegaconf errors carry their own clear first line
            if type(e).__module__.startswith("omegaconf"):
                error_exit(str(e).splitlines()[0])
            raise
    return wrapper


_GROUP_WORDS = {"data": "corpus", "framing": "framing", "optim": "optimizer"}


def check_group_choices(conf_dir: Path, argv: list[str]) -> None:
    """Reject ``group=unknown`` overrides with one line before Hydra composes anything.

    Hydra would also refuse them, but with a multi-line listing; this names the group the way a
    user thinks of it (corpus, framing, optimizer) and lists the choices on the same line.
    """
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if "/" in key or "." in key or not (conf_dir / key).is_dir() or "(" in value:
            continue  # choice(a,b), glob(...): Hydra (or a search's sweeper) checks the values
        choices = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
        for v in value.split(","):  # multirun sweeps list several; [a,b] selects several
            v = v.strip().strip("[]").strip()
            if v and v != "null" and v not in choices and not v.startswith(("choice(", "glob(")):
                what = _GROUP_WORDS.get(key, key)
                extra = ", or data=file data.path=PATH" if key == "data" else ""
                error_exit(f"unknown {what} {v!r}; choose one of {', '.join(choices)}{extra}")
