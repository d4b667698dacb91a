"""Subprocess worker for test_parallel (no test_ prefix): run with 2 forced CPU devices.

Checks that ShardedData's batch plans and the shard_map gather hand each device exactly the rows
of its own shard: for every step and device, the gathered rows equal local[k] at the planned
ids, padding rows carry weight 0, each epoch covers each shard once, and carry_state lanes walk
consecutive rows. Exits non-zero (AssertionError) on any mismatch.
"""

import jax
import numpy as np

from lmjax.data.framings import Framed
from lmjax.train.datasets import ShardedData, sharded_take
from lmjax.train.parallel import Placement, select_devices


def framed(n: int, tag: int) -> Framed:
    rows = np.arange(n, dtype=np.int32)[:, None] * 10 + tag * 1000 + np.arange(3)[None, :]
    return Framed(rows, rows + 1, np.ones((n, 3), np.float32))


def gathered(data: ShardedData, plan: np.ndarray) -> list[dict]:
    take = jax.jit(sharded_take(data.place))
    return [{k: np.asarray(v) for k, v in take(data.array, data.place.rows(plan)[s]).items()}
            for s in range(len(plan))]


def check(data: ShardedData, plan: np.ndarray, b: int) -> None:
    for s, got in enumerate(gathered(data, plan)):
        for k, shard in enumerate(data.local):
            ids = plan[s, k * b:(k + 1) * b]
            for j, i in enumerate(ids):
                row = got["inputs"][k * b + j]
                if i < len(shard):
                    assert np.array_equal(row, shard.inputs[i]), (s, k, i)
                    assert got["weights"][k * b + j].sum() == 3
                else:  # padding: zero weight
                    assert got["weights"][k * b + j].sum() == 0, (s, k, i)


def main() -> None:
    place = Placement(select_devices("auto"))
    assert place.size == 2, place.size
    local = [framed(7, 1), framed(5, 2)]
    data = ShardedData(place, local, [7, 5])
    bsz, b = 4, 2
    plan = data.epoch_order(bsz, seed=0, epoch=1)
    assert plan.shape == (4, 4)  # ceil(7 / 2) steps; shard 1 padded after its 5 rows
    for k, n in enumerate([7, 5]):
        ids = plan[:, k * b:(k + 1) * b].reshape(-1)
        assert sorted(ids[ids < n].tolist()) == list(range(n))
    check(data, plan, b)
    check(data, data.sequential(bsz), b)
    carry = ShardedData(place, local, [7, 5], carry=True)
    lanes = carry.epoch_order(bsz, seed=0, epoch=0)
    assert lanes.shape == (2, 4)  # min(7, 5) // 2 steps
    assert np.all(np.diff(lanes, axis=0) == 1)
    check(carry, lanes, b)
    big = ShardedData(place, [framed(700, 1), framed(690, 2)], [700, 690], carry=True)
    seq = big.sequential(512)  # evaluation covers every row even with carry_state
    assert seq.shape == (3, 512)
    print("ok")


if __name__ == "__main__":
    main()
