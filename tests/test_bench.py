"""experiments.bench: lmjax's own step timed on a tiny shape, peers faked or skipped."""

import json
import time

import pytest

from lmjax.bench import impls, runner
from lmjax.bench.shapes import SHAPES, BenchConfig, Shape
from lmjax.errors import ConfigError

TINY = Shape("A", 57, 0, 8, 1, 12, 16, True, "tiny")


class FakePeer:
    """A peer whose speed is known: each step sleeps a fixed time."""

    name = "torch"

    def __init__(self, shape, lr, seed):
        self.calls = 0

    def run(self, n):
        self.calls += 1
        time.sleep(0.002 * n)
        return n


class Missing:
    def __init__(self, shape, lr, seed):
        raise impls.PeerMissing("keras not importable (test)")


def _cfg(**kw):
    base = dict(impls=["lmjax", "torch", "keras"], rounds=3, round_s=0.05, warmup_rounds=0,
                loop_overhead=False, first_step=False, out="")
    return BenchConfig(**{**base, **kw})


def test_times_lmjax_and_computes_ratio_from_measured_medians(monkeypatch):
    monkeypatch.setitem(impls.ADAPTERS, "torch", FakePeer)
    monkeypatch.setitem(impls.ADAPTERS, "keras", Missing)
    monkeypatch.setattr(runner, "GAP_S", 0.0)
    res = runner.time_shape(TINY, _cfg(), log=lambda s: None)
    assert set(res["results"]) == {"lmjax", "torch"}
    assert "keras not importable" in res["skipped"]["keras"]
    for r in res["results"].values():
        s = r["tokens_per_s"]
        assert len(r["samples"]) == 3 and s["min"] <= s["median"] <= s["max"]
        assert s["median"] == sorted(r["samples"])[1] > 0
    # the fake peer sleeps 2 ms a step: at most 16 * 12 / 0.002 tokens/s
    assert res["results"]["torch"]["tokens_per_s"]["max"] <= TINY.tokens_per_step / 0.002
    ratio = (res["results"]["lmjax"]["tokens_per_s"]["median"]
             / res["results"]["torch"]["tokens_per_s"]["median"])
    assert res["ratio_vs_torch"] == pytest.approx(ratio)
    assert res["shape"]["tokens_per_step"] == 16 * 12


def test_lmjax_impl_trains_with_the_runs_steps():
    impl = impls.LmjaxImpl(TINY, 1e-2, 0)
    before = impl.state.params["layers"][0]["w_hh"][...].copy()
    done = impl.run(1)
    assert done == impl.per_call == 1 and int(impl.state.step) == 1
    impl.set_per_call(impl.auto_per_call)
    assert impl.run(1) == impl.auto_per_call > 1 and int(impl.state.step) == 1 + impl.auto_per_call
    assert not (impl.state.params["layers"][0]["w_hh"][...] == before).all()


def test_run_bench_writes_json_and_markdown(monkeypatch, tmp_path):
    monkeypatch.setitem(SHAPES, "A", TINY)
    monkeypatch.setitem(impls.ADAPTERS, "torch", Missing)
    monkeypatch.setattr(runner, "GAP_S", 0.0)
    out = tmp_path / "b.json"
    res = runner.run_bench(_cfg(configs=["A"], impls=["lmjax", "torch"], rounds=2,
                                loop_overhead=True, loop_epochs=2, first_step=True,
                                first_step_repeats=1, out=str(out)),
                           log=lambda s: None)
    saved = json.loads(out.read_text())
    assert saved["configs"]["A"]["ratio_vs_torch"] is None  # no torch: no ratio
    assert saved["configs"]["A"]["results"]["lmjax"]["tokens_per_s"]["median"] > 0
    assert "torch" in saved["configs"]["A"]["skipped"]
    lo = saved["loop_overhead"]
    assert lo["overhead"] == pytest.approx(lo["bare_step_tokens_per_s"] / lo["loop_tokens_per_s"] - 1)
    assert lo["loop_steps_timed"] == 100  # epoch 2 of 100 steps, compile excluded
    fs = saved["first_step"]  # two real experiments.run processes sharing a fresh cache
    cold, warm = fs["runs"]["cold"][0], fs["runs"]["warm"][0]
    assert cold["first_chunk_steps"] == warm["first_chunk_steps"] == 20
    assert 0 < cold["first_chunk_seconds"] < cold["process_seconds"]
    # the warm run loads the train step compiled by the cold one
    assert warm["first_chunk_seconds"] < cold["first_chunk_seconds"]
    md = out.with_suffix(".md").read_text()
    assert "| A |" in md and "skipped" in md and "overhead" in md and "warm" in md
    assert res["meta"]["versions"]["jax"]


def test_cli_rejects_bad_keys_and_names():
    from experiments.bench import parse

    assert parse(["bench.configs=[a,C]", "impls=[lmjax]"]).configs == ["A", "C"]
    with pytest.raises(ConfigError, match="unknown bench config"):
        parse(["bench.configs=[E]"])
    with pytest.raises(ConfigError, match="unknown bench impl"):
        parse(["bench.impls=[mxnet]"])
    with pytest.raises(ConfigError):
        parse(["bench.nope=1"])


def test_data_parallel_impl_needs_devices_and_matches_the_single_device_step():
    with pytest.raises(impls.PeerMissing, match="one device only"):
        impls.LmjaxDataParallelImpl(TINY, 1e-2, 0)  # this test process has one CPU device
    code = """
import jax, numpy as np
from lmjax.cli import setup_jax
setup_jax()
from lmjax.bench import impls
from lmjax.bench.shapes import Shape
tiny = Shape("A", 57, 0, 8, 1, 12, 16, True, "tiny")
one, dp = impls.LmjaxImpl(tiny, 1e-2, 0), impls.LmjaxDataParallelImpl(tiny, 1e-2, 0)
assert dp.devices == 2 and len(jax.devices()) == 2
for impl in (one, dp):
    impl.set_per_call(4)
    assert impl.run(8) == 8
a, b = jax.tree.leaves(one.state.params), jax.tree.leaves(dp.state.params)
print(max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a, b)))
"""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LMJAX_CPU_DEVICES": "2"}
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 0 <= float(r.stdout.strip().splitlines()[-1]) < 1e-5  # same updates, to rounding


def test_profile_splits_the_step_into_output_layer_and_rest():
    from lmjax.bench.profile import profile

    r = profile(Shape("C", 300, 16, 16, 2, 6, 4, False, "tiny C"), reps=3)
    assert r["step_s"] > 0 and r["output_layer_s"] > 0 and r["optimizer_s"] > 0
    assert r["rest_s"] == pytest.approx(r["step_s"] - r["output_layer_s"] - r["optimizer_s"])
    assert r["params"] == 300 * 16 + 2 * (16 * 64 * 2 + 64) + 16 * 300 + 300


def test_cpu_devices_env_sets_the_xla_device_count(monkeypatch):
    import os

    from lmjax.cli import cpu_devices_flag
    from lmjax.errors import LmjaxError

    # setenv first, so that teardown restores XLA_FLAGS (cpu_devices_flag writes os.environ)
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("LMJAX_CPU_DEVICES", "auto")
    cpu_devices_flag()
    assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count={os.cpu_count()}"
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    monkeypatch.setenv("LMJAX_CPU_DEVICES", "2")
    cpu_devices_flag()  # a count the user put in XLA_FLAGS wins
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4"
    monkeypatch.delenv("XLA_FLAGS")
    for bad in ("0", "two"):
        monkeypatch.setenv("LMJAX_CPU_DEVICES", bad)
        with pytest.raises(LmjaxError, match="positive number or auto"):
            cpu_devices_flag()
