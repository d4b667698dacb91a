"""Training speed, lmjax against its peers: ``python -m experiments.bench``.

    python -m experiments.bench                                   # configs A-D, every impl
    python -m experiments.bench bench.configs=[A] bench.impls=[lmjax,torch] bench.out=a.json

Keys (``bench.*``): configs, impls (lmjax, lmjax_dp, torch, flax, keras), rounds, round_s,
warmup_rounds, lr, loop_overhead, loop_epochs, first_step, first_step_repeats, out, seed; see
lmjax/bench/shapes.py. Peers that are not installed (``pip install -e '.[bench]'``) are skipped
with a note. Writes JSON to bench.out and a Markdown table next to it. docs/benchmarks.md has
the configs and the results on this machine.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

from omegaconf import OmegaConf  # noqa: E402

from lmjax.cli import friendly_errors, setup_jax  # noqa: E402
from lmjax.errors import ConfigError  # noqa: E402


def parse(argv: list[str]):
    """key=value overrides (``bench.`` prefix optional) -> BenchConfig; unknown keys refused."""
    from lmjax.bench.shapes import BenchConfig

    schema = OmegaConf.structured(BenchConfig)
    args = [a[len("bench."):] if a.startswith("bench.") else a for a in argv]
    for a in args:
        if "=" not in a:
            raise ConfigError(f"expected key=value, got {a!r} (keys: "
                              f"{', '.join(schema.keys())})")
    try:
        merged = OmegaConf.merge(schema, OmegaConf.from_dotlist(args))
    except Exception as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    return BenchConfig(**OmegaConf.to_container(merged))


@friendly_errors
def main(argv: list[str]) -> None:
    cfg = parse(argv)
    if "lmjax_dp" in cfg.impls:  # one CPU device per core, unless the user chose a count
        os.environ.setdefault("LMJAX_CPU_DEVICES", "auto")
    setup_jax()
    from lmjax.bench.runner import run_bench

    res = run_bench(cfg)
    for name, c in res["configs"].items():
        r = c["ratio_vs_torch"]
        dp = c.get("ratio_dp_vs_torch")
        print(f"{name}: lmjax / torch = " + ("n/a (torch not run)" if r is None else f"{r:.2f}x")
              + ("" if dp is None else f"; lmjax_dp / torch = {dp:.2f}x"))


if __name__ == "__main__":
    main(sys.argv[1:])
