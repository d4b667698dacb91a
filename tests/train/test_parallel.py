"""Data parallel training: 4 forced CPU devices and 2 processes agree with one device."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from lmjax.errors import ConfigError
from lmjax.train.parallel import Placement, select_devices

from ..conftest import REPO


def _worker(devices, out, env_extra=None, processes=1):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    if processes == 1:
        subprocess.run([sys.executable, "-m", "tests.train.parallel_worker", devices, str(out)],
                       cwd=REPO, env=env, check=True, timeout=180, capture_output=True)
        return np.load(out)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for i in range(processes):
        e = dict(env, LMJAX_COORDINATOR=f"127.0.0.1:{port}",
                 LMJAX_NUM_PROCESSES=str(processes), LMJAX_PROCESS_ID=str(i))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.train.parallel_worker", devices, str(out)],
            cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()[-2000:]
    return np.load(out)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _worker("1", tmp_path_factory.mktemp("p1") / "one.npz")


def _assert_same(a, b):
    la, lb = a["losses"], b["losses"]
    assert la.shape == (20,) and np.all(np.isfinite(la))
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    keys = [k for k in a.files if k.startswith("p_")]
    assert keys and sorted(keys) == sorted(k for k in b.files if k.startswith("p_"))
    for k in keys:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6)


def test_four_devices_match_one(single, tmp_path):
    four = _worker("auto", tmp_path / "four.npz",
                   {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert int(four["devices"]) == 4 and int(single["devices"]) == 1
    _assert_same(single, four)


def test_two_processes_match_one(single, tmp_path):
    two = _worker("auto", tmp_path / "two.npz", processes=2)
    assert int(two["processes"]) == 2 and int(two["devices"]) == 2
    _assert_same(single, two)


def test_batch_must_split_across_devices():
    import jax

    place = Placement(select_devices("1"))
    place.check_batch(7)  # one device takes any batch
    place.size = 4  # the check itself, without needing 4 devices in this process
    with pytest.raises(ConfigError, match="does not split across 4 devices; use a multiple of 4"):
        place.check_batch(30)
    with pytest.raises(ConfigError, match="device"):
        select_devices(str(len(jax.devices()) + 1))


def _run_cli(run_dir, corpus, *extra, processes=1, env_extra=None):
    """``python -m experiments.run`` on a tiny word corpus, as 1 process or N over loopback."""
    args = [sys.executable, "-m", "experiments.run", "data=file", f"data.path={corpus}",
            "data.split=position", "framing=sequence", "framing.level=word",
            "framing.seq_len=8", "model.embed_size=16", "model.hidden_size=32",
            "model.num_layers=2", "train.batch_size=16", "train.devices=auto", "logger=none",
            "train.progress=false", "sample.length=3", f"hydra.run.dir={run_dir}", *extra]
    env = dict(os.environ, LMJAX_JAX_CACHE="off", **(env_extra or {}))
    if processes == 1:
        p = subprocess.run(args, cwd=REPO, env=env, timeout=300, capture_output=True)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(env, LMJAX_COORDINATOR=f"127.0.0.1:{port}",
                                       LMJAX_NUM_PROCESSES=str(processes),
                                       LMJAX_PROCESS_ID=str(i)))
             for i in range(processes)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]


def _untimed(rows):
    """Metric rows without their timings (which differ between processes)."""
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def _metrics(run_dir):
    import json

    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_process_cli_run_matches_one_process(tmp_path):
    """The real entry point as a 2-process jax.distributed job reading the whole corpus in each
    process (data.shard=none), stopped after 2 epochs and resumed for a third: process 0 owns
    the run dir, process 1 keeps its own copy (no checkpoints; it resumes from process 0's), and
    the metrics equal a single-process run's. Slow (5 processes, ~65 s on 2 cores): the default
    suite runs the same job with sharded reading, the default, in the next test."""
    from tests.train.parallel_worker import TEXT

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    _run_cli(tmp_path / "one", corpus, "train.epochs=3")
    whole = "data.shard=none"  # every process reads the whole corpus (sharded: next test)
    _run_cli(tmp_path / "two", corpus, "train.epochs=2", whole, processes=2)
    assert len(_metrics(tmp_path / "two")) == 2
    _run_cli(tmp_path / "two", corpus, "train.epochs=3", "resume=true", whole, processes=2)
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for k in ("train_loss", "val_loss", "val_accuracy", "train_accuracy"):
            assert b[k] == pytest.approx(a[k], rel=1e-5), k
    copy = tmp_path / "two.process1"
    assert (copy / "summary.json").is_file() and not (copy / "checkpoints").exists()
    assert _untimed(_metrics(copy)) == _untimed(two)  # both processes computed the same metrics
    assert not list((tmp_path / "two").glob("process*"))


def test_two_processes_read_only_their_shards(tmp_path):
    """The default for a multi-process job: each process reads only its device's shard of the
    corpus (data.shard=auto -> devices); the job trains, stops and resumes exactly like one
    process holding both shards on 2 forced CPU devices."""
    import json

    from tests.train.parallel_worker import TEXT

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 40)
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    _run_cli(tmp_path / "one", corpus, "train.epochs=3", "data.shard=devices",
             env_extra=two_devices)
    _run_cli(tmp_path / "two", corpus, "train.epochs=2", processes=2)
    _run_cli(tmp_path / "two", corpus, "train.epochs=3", "resume=true", processes=2)
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for k in ("train_loss", "val_loss", "val_accuracy", "train_accuracy"):
            assert b[k] == pytest.approx(a[k], rel=1e-5), k
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s0 = json.loads((tmp_path / "two" / "summary.json").read_text())
    s_1 = json.loads((tmp_path / "two.process1" / "summary.json").read_text())
    assert s0["heldout_word_perplexity"] == pytest.approx(s1["heldout_word_perplexity"], rel=1e-5)
    assert s0["num_sequences"] == s1["num_sequences"] == s_1["num_sequences"]
    size = corpus.stat().st_size
    r0, r1 = s0["data_shards"], s_1["data_shards"]
    assert (r0["shards"], r1["shards"]) == ([0], [1]) and r0["num_shards"] == 2
    assert r0["train_ranges"][0][1] == r1["train_ranges"][0][0]  # adjacent, disjoint shards
    for r in (r0, r1):  # each read its half of train + valid and a few lookahead bytes
        assert r["bytes_read_total"] < 0.65 * size, r
    assert s1["data_shards"]["shards"] == [0, 1]
    copy = tmp_path / "two.process1"  # process 1's own copy: no checkpoints, same metrics
    assert not (copy / "checkpoints").exists() and not list((tmp_path / "two").glob("process*"))
    assert _untimed(_metrics(copy)) == _untimed(two)


def test_sharded_plans_gather_each_devices_own_rows():
    """ShardedData on 2 forced CPU devices: every planned id reaches its own device's shard
    (shard_map gather), padding has weight 0, carry_state lanes too (shard_take_worker.py)."""
    env = dict(os.environ, PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    p = subprocess.run([sys.executable, "-m", "tests.train.shard_take_worker"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]
