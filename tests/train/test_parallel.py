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
