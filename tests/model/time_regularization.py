"""Step time of each regularization key on a small word-level config, side by side.

    python -m tests.model.time_regularization [--rounds 7] [--steps 10] [--vocab 5000]

Trains the very jitted steps of ``experiments.run`` (``lmjax.train.loop.make_steps``, sequence
framing, Adam) on random token ids, one variant after another in each round so that load on a
shared machine falls on all of them alike, and prints per step the median and the fastest wall
time and the median CPU time of this process (all threads; less sensitive than wall time to
other processes on a shared machine), each also as a ratio to the variant without
regularization (docs/regularization.md records the results).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import Config, FramingConfig, ModelConfig, OptimConfig
from lmjax.train.loop import build_model, dropout_key, make_steps
from lmjax.train.step import init_state

VARIANTS = {
    "none": {},
    "dropout=0.3": dict(dropout=0.3),
    "locked_dropout=0.3": dict(locked_dropout=0.3),
    "embed_dropout=0.3": dict(embed_dropout=0.3),
    "embed_word_dropout=0.1": dict(embed_word_dropout=0.1),
    "weight_drop=0.3": dict(weight_drop=0.3),
    "all four new": dict(locked_dropout=0.3, embed_dropout=0.3, embed_word_dropout=0.1,
                         weight_drop=0.3),
}


def _variant(model: dict, a: argparse.Namespace):
    cfg = Config(framing=FramingConfig(name="sequence", seq_len=a.seq_len),
                 model=ModelConfig(embed_size=a.hidden, hidden_size=a.hidden, num_layers=2,
                                   **model),
                 optim=OptimConfig(name="adam", lr=1e-3))
    graphdef, params = build_model(cfg, a.vocab)
    steps = make_steps(cfg, graphdef)
    state = init_state(params, steps.tx, dropout_key(cfg))
    rng = np.random.default_rng(0)
    x = rng.integers(2, a.vocab, size=(a.batch * a.steps, a.seq_len + 1), dtype=np.int32)
    data = {"inputs": jnp.asarray(x[:, :-1]), "targets": jnp.asarray(x[:, 1:]),
            "weights": jnp.ones((len(x), a.seq_len), jnp.float32)}
    idx = jnp.arange(a.batch * a.steps, dtype=jnp.int32).reshape(a.steps, a.batch)
    return steps, state, data, idx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=10, help="train steps per timed call")
    p.add_argument("--vocab", type=int, default=5000)
    p.add_argument("--hidden", type=int, default=128, help="embedding and LSTM width")
    p.add_argument("--seq-len", type=int, default=35)
    p.add_argument("--batch", type=int, default=20)
    a = p.parse_args()
    runs = {}
    for name, model in VARIANTS.items():
        steps, state, data, idx = _variant(model, a)
        state, sums, _ = steps.train_chunk(state, data, idx)  # compile
        jax.block_until_ready(sums)
        runs[name] = [steps, state, data, idx, [], []]
    for _ in range(a.rounds):
        for run in runs.values():
            steps, state, data, idx, wall, cpu = run
            t0, c0 = time.perf_counter(), time.process_time()
            state, sums, _ = steps.train_chunk(state, data, idx)
            jax.block_until_ready(sums)
            wall.append((time.perf_counter() - t0) / a.steps)
            cpu.append((time.process_time() - c0) / a.steps)
            run[1] = state
    stats = {name: (statistics.median(r[4]), min(r[4]), statistics.median(r[5]))
             for name, r in runs.items()}
    base = stats["none"]
    print(f"2 x LSTM {a.hidden}, embedding {a.hidden}, vocab {a.vocab}, batch {a.batch}, "
          f"bptt {a.seq_len}; {a.rounds} rounds of {a.steps} steps; ms per step (x none)")
    print("| variant | median wall | fastest wall | median CPU |\n|---|---|---|---|")
    for name, s in stats.items():
        cells = " | ".join(f"{v * 1e3:.1f} ({v / b:.3f})" for v, b in zip(s, base))
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
