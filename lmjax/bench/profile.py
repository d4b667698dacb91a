"""Where lmjax's train step spends its time: the whole step against the output layer alone.

    python -m lmjax.bench.profile C D

For each bench config: the median time of one whole train step (one step per jitted call:
embedding, LSTM layers forward and backward, output layer, loss, clipping, Adam), of the
output layer alone on the same shapes (dense H -> V and softmax cross-entropy over the batch's
tokens, forward and backward) and of the optimizer alone (clipping by global norm + Adam over
the model's parameters; with PyTorch installed, also ``torch.optim.Adam`` +
``clip_grad_norm_`` on tensors of the same shapes); the rest is the embedding and the
recurrence.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable

import numpy as np

from lmjax.bench.shapes import SHAPES, Shape


def _median_s(f: Callable[[], object], reps: int) -> float:
    f()  # compile / warm up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def profile(shape: Shape, reps: int = 15, seed: int = 0) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from lmjax.bench.impls import LmjaxImpl

    impl = LmjaxImpl(shape, 1e-3, seed)
    impl.set_per_call(1)
    step = _median_s(lambda: impl.run(1), reps)
    n = shape.batch * shape.seq_len if not shape.last_only else shape.batch
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.standard_normal((n, shape.hidden)), jnp.float32)
    y = jnp.asarray(rng.integers(0, shape.vocab, n), jnp.int32)
    wb = (jnp.zeros((shape.hidden, shape.vocab)), jnp.zeros((shape.vocab,)))

    def head(wb, h):
        return optax.softmax_cross_entropy_with_integer_labels(h @ wb[0] + wb[1], y).mean()

    grad = jax.jit(jax.value_and_grad(head))
    out = _median_s(lambda: jax.block_until_ready(grad(wb, h)), reps)
    # the optimizer alone: clipping by global norm + Adam over the model's parameters
    tx = impl.steps.tx
    params = impl.state.params
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    upd = jax.jit(update)
    opt = _median_s(lambda: jax.block_until_ready(upd(params, impl.state.opt_state, grads)), reps)
    n_params = sum(int(x.size) for x in jax.tree.leaves(params))
    return {"config": shape.name, "step_s": step, "output_layer_s": out,
            "output_layer_share": out / step, "optimizer_s": opt, "params": n_params,
            "rest_s": step - out - opt, "torch_optimizer_s": _torch_adam_s(params, reps)}


def _torch_adam_s(params, reps: int) -> float | None:
    """PyTorch's Adam (its default multi-tensor path) + clip_grad_norm_ on the same shapes."""
    try:
        import torch
    except ImportError:
        return None
    import jax

    ps = [torch.nn.Parameter(torch.zeros(tuple(x.shape))) for x in jax.tree.leaves(params)]
    for p in ps:
        p.grad = torch.full_like(p, 1e-3)
    opt = torch.optim.Adam(ps, lr=1e-3)

    def step() -> None:
        torch.nn.utils.clip_grad_norm_(ps, 5.0)
        opt.step()

    return _median_s(step, reps)


def main(argv: list[str]) -> None:
    from lmjax.cli import setup_jax

    setup_jax()
    for name in argv or list(SHAPES):
        r = profile(SHAPES[name.upper()])
        torch_opt = ("" if r["torch_optimizer_s"] is None else
                     f" (PyTorch's Adam + clipping on the same tensors: "
                     f"{1e3 * r['torch_optimizer_s']:.1f} ms)")
        print(f"{r['config']}: whole step {1e3 * r['step_s']:.1f} ms; output layer fwd+bwd "
              f"{1e3 * r['output_layer_s']:.1f} ms ({100 * r['output_layer_share']:.0f}%); "
              f"clipping + Adam over {r['params']:,} parameters "
              f"{1e3 * r['optimizer_s']:.1f} ms{torch_opt}; "
              f"the rest (embedding, LSTM layers fwd+bwd, loss) {1e3 * r['rest_s']:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
