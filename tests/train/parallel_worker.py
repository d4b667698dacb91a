"""Subprocess worker for the data-parallel tests (not collected by pytest: no test_ prefix).

usage: python -m tests.train.parallel_worker DEVICES OUT.npz
Trains 20 steps of a small word model with the real jitted steps on ``DEVICES`` devices (the
whole job's devices when launched as several processes) and saves per-step losses and the final
parameters. XLA_FLAGS / LMJAX_COORDINATOR... come from the environment.
"""

import sys

import jax
import numpy as np

jax.config.update("jax_cpu_collectives_implementation", "gloo")

from lmjax.config import Config, DataConfig, FramingConfig, ModelConfig, TrainConfig  # noqa: E402
from lmjax.data import batches  # noqa: E402
from lmjax.train.checkpoint import flatten  # noqa: E402
from lmjax.train.loop import build_model, make_steps, prepare_data  # noqa: E402
from lmjax.train.parallel import Placement, init_distributed, select_devices  # noqa: E402
from lmjax.train.step import init_state  # noqa: E402

TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog met on the mat\n" * 20


def main(spec: str, out: str) -> None:
    init_distributed()
    corpus = out + ".txt"
    with open(corpus, "w") as f:
        f.write(TEXT)
    cfg = Config(data=DataConfig(name="file", path=corpus, split="none"),
                 framing=FramingConfig(name="sequence", level="word", seq_len=8),
                 model=ModelConfig(embed_size=16, hidden_size=32, num_layers=2),
                 train=TrainConfig(batch_size=16))
    data = prepare_data(cfg)
    graphdef, params = build_model(cfg, len(data.vocab))
    steps = make_steps(cfg, graphdef)
    place = Placement(select_devices(spec))
    place.check_batch(cfg.train.batch_size)
    state = place.replicate(init_state(params, steps.tx, jax.random.PRNGKey(1)))
    dataset = place.replicate({k: np.asarray(v) for k, v in batches.to_device(data.train).items()})
    n = len(data.train)
    order = np.concatenate([batches.epoch_order(n, 16, 0, e) for e in range(20)])[:20]
    state, _, losses = steps.train_chunk(state, dataset, place.rows(order))
    flat = {k: np.asarray(v) for k, v in flatten(state.params).items()}
    if jax.process_index() == 0:
        np.savez(out, losses=np.asarray(losses), devices=place.size,
                 processes=jax.process_count(), **{"p_" + k: v for k, v in flat.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
