"""One adapter per implementation: the same shapes, data, optimizer and loss for each.

Every adapter trains on random token ids (the speed of an LSTM does not depend on the text) with
Adam behind gradient clipping by global norm 5 and a softmax cross-entropy over the vocabulary,
either on the last position (configs with ``last_only``) or on every position. ``run(n)`` does
at least ``n`` optimizer steps, waits for them to finish and returns how many it did.

* ``lmjax``: the very :class:`lmjax.train.step.Steps` that ``experiments.run`` trains with
  (built by ``lmjax.train.loop.make_steps``), its jitted ``train_chunk`` fusing as many steps per
  call as the training loop would (``auto_steps_per_call``), or fewer where one such call would
  outlast a timed round (config D: 143 fused steps take about a minute on 2 cores).
* ``lmjax_dp``: the same step with each batch split over all local devices, as
  ``train.devices=auto`` trains; on a CPU, one device per core (``LMJAX_CPU_DEVICES``).
* ``torch``: ``nn.LSTM`` (oneDNN's fused CPU kernel) + ``nn.Linear``, one step per Python call;
  one-hot inputs are made once up front, as the keyboard tutorial does.
* ``flax``: ``nnx.RNN(nnx.OptimizedLSTMCell)`` layers + ``nnx.Linear``, one jitted step per call.
* ``keras``: Keras 3 on the JAX backend, ``LSTM`` layers + ``Dense``, ``train_on_batch``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from lmjax.bench.shapes import Shape


class PeerMissing(Exception):
    """The implementation's package is not installed (or unusable); the bench skips it."""


POOL = 16  # distinct random batches each adapter cycles through


def _tokens(shape: Shape, seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and next-token targets, (rows, T) int32; ids from 2 (0 pad, 1 unknown)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(2, shape.vocab, size=(rows, shape.seq_len + 1), dtype=np.int32)
    return x[:, :-1].copy(), x[:, 1:].copy()


def versions() -> dict[str, str]:
    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "keras"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            pass
    return out


class LmjaxImpl:
    name = "lmjax"

    def __init__(self, shape: Shape, lr: float, seed: int):
        import jax
        import jax.numpy as jnp

        from lmjax.config import Config, FramingConfig, ModelConfig, OptimConfig
        from lmjax.train.loop import auto_steps_per_call, build_model, dropout_key, make_steps
        from lmjax.train.step import init_state

        framing = (FramingConfig(name="char", level="char", seq_len=shape.seq_len)
                   if shape.last_only else
                   FramingConfig(name="sequence", level="char", seq_len=shape.seq_len))
        self.cfg = cfg = Config(
            seed=seed, framing=framing,
            model=ModelConfig(embed_size=shape.embed, hidden_size=shape.hidden,
                              num_layers=shape.layers),
            optim=OptimConfig(name="adam", lr=lr, clip_norm=5.0))
        graphdef, params = build_model(cfg, shape.vocab)
        self.steps = make_steps(cfg, graphdef)
        self.state = init_state(params, self.steps.tx, dropout_key(cfg))
        # enough rows that the loop's automatic fusion applies as it would in a real epoch
        per_call = auto_steps_per_call(10**9, shape.tokens_per_step)
        rows = shape.batch * max(POOL, per_call)
        x, y = _tokens(shape, seed, rows)
        w = np.ones_like(x, np.float32)
        if shape.last_only:
            w[:, :-1] = 0.0
        self.data = {"inputs": jnp.asarray(x), "targets": jnp.asarray(y), "weights": jnp.asarray(w)}
        self.batch, self._jnp, self._jax = shape.batch, jnp, jax
        self.auto_per_call = per_call  # what the training loop fuses for this shape
        self.set_per_call(1)  # the runner times a few single steps, then sets the fusion

    def set_per_call(self, k: int) -> None:
        """Fuse k steps per jitted call (a new k compiles once more)."""
        self.per_call = k
        self.idx = self._jnp.asarray(np.arange(k * self.batch).reshape(k, self.batch))

    def run(self, n: int) -> int:
        calls = max(1, math.ceil(n / self.per_call))
        for _ in range(calls):
            self.state, sums, _ = self.steps.train_chunk(self.state, self.data, self.idx)
        self._jax.block_until_ready((self.state, sums))
        return calls * self.per_call


class LmjaxDataParallelImpl(LmjaxImpl):
    """lmjax's step with each batch split over every local device (``train.devices=auto``):
    on a CPU, the devices ``LMJAX_CPU_DEVICES`` makes (experiments.bench sets one per core
    unless told otherwise), so that each core runs its share of the batch."""

    name = "lmjax_dp"

    def __init__(self, shape: Shape, lr: float, seed: int):
        import jax

        from lmjax.train.parallel import Placement

        devices = jax.local_devices()
        if len(devices) < 2:
            raise PeerMissing("one device only (on a CPU: LMJAX_CPU_DEVICES=auto)")
        if shape.batch % len(devices):
            raise PeerMissing(f"batch {shape.batch} does not split over {len(devices)} devices")
        self.place = Placement(devices)
        super().__init__(shape, lr, seed)
        self.state = self.place.replicate(self.state)
        self.data = self.place.replicate(self.data)
        self.devices = len(devices)

    def set_per_call(self, k: int) -> None:
        self.per_call = k
        self.idx = self.place.rows(np.arange(k * self.batch).reshape(k, self.batch))


class TorchImpl:
    name = "torch"

    def __init__(self, shape: Shape, lr: float, seed: int):
        try:
            import torch
            from torch import nn
        except Exception as e:  # ImportError, or a broken install
            raise PeerMissing(f"torch not importable ({type(e).__name__}: {e}); "
                              f"pip install -e '.[bench]'") from None
        torch.manual_seed(seed)
        self.torch, self.shape = torch, shape
        V, H = shape.vocab, shape.hidden
        self.embed = nn.Embedding(V, shape.embed) if shape.embed else None
        self.lstm = nn.LSTM(shape.embed or V, H, num_layers=shape.layers)  # time-major
        self.out = nn.Linear(H, V)
        mods = [m for m in (self.embed, self.lstm, self.out) if m is not None]
        self.params = [p for m in mods for p in m.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr)
        x, y = _tokens(shape, seed, shape.batch * POOL)
        xt = torch.from_numpy(x.T.copy()).long()  # (T, rows)
        if not shape.embed:  # one-hot vectors made once, as the keyboard tutorial does
            xt = torch.nn.functional.one_hot(xt, V).float()
        yt = torch.from_numpy(y.T.copy()).long()
        B = shape.batch
        self.batches = [(xt[:, i * B:(i + 1) * B].contiguous(), yt[:, i * B:(i + 1) * B].contiguous())
                        for i in range(POOL)]
        self.k = 0

    def _step(self, x, y) -> None:
        torch, F = self.torch, self.torch.nn.functional
        self.opt.zero_grad(set_to_none=True)
        h = self.embed(x) if self.embed is not None else x
        hs, _ = self.lstm(h)  # (T, B, H)
        if self.shape.last_only:
            loss = F.cross_entropy(self.out(hs[-1]), y[-1])
        else:
            loss = F.cross_entropy(self.out(hs).reshape(-1, self.shape.vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()

    def run(self, n: int) -> int:
        for _ in range(n):
            self._step(*self.batches[self.k % POOL])
            self.k += 1
        return n


class FlaxImpl:
    name = "flax"

    def __init__(self, shape: Shape, lr: float, seed: int):
        import jax
        import jax.numpy as jnp
        import optax
        from flax import nnx

        V, H = shape.vocab, shape.hidden
        rngs = nnx.Rngs(seed)

        class Model(nnx.Module):
            def __init__(self):
                self.embed = nnx.Embed(V, shape.embed, rngs=rngs) if shape.embed else None
                sizes = [shape.embed or V] + [H] * shape.layers
                self.rnns = nnx.List([nnx.RNN(nnx.OptimizedLSTMCell(a, H, rngs=rngs), rngs=rngs)
                                      for a in sizes[:-1]])
                self.out = nnx.Linear(H, V, rngs=rngs)

            def __call__(self, x):  # (B, T) ids -> logits (B, V) or (B, T, V)
                h = self.embed(x) if self.embed is not None else jax.nn.one_hot(x, V)
                zero = jnp.zeros((x.shape[0], H), h.dtype)
                for rnn in self.rnns:
                    h = rnn(h, initial_carry=(zero, zero))
                return self.out(h[:, -1] if shape.last_only else h)

        graphdef, params, rest = nnx.split(Model(), nnx.Param, ...)
        tx = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(lr))

        def loss_fn(p, x, y):
            logits = nnx.merge(graphdef, p, rest)(x)
            tgt = y[:, -1] if shape.last_only else y
            return optax.softmax_cross_entropy_with_integer_labels(logits, tgt).mean()

        def step(p, o, x, y):
            grads = jax.grad(loss_fn)(p, x, y)
            updates, o = tx.update(grads, o, p)
            return optax.apply_updates(p, updates), o

        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.p, self.o = params, tx.init(params)
        x, y = _tokens(shape, seed, shape.batch * POOL)
        B = shape.batch
        self.batches = [(jnp.asarray(x[i * B:(i + 1) * B]), jnp.asarray(y[i * B:(i + 1) * B]))
                        for i in range(POOL)]
        self.k, self._jax = 0, jax

    def run(self, n: int) -> int:
        for _ in range(n):
            self.p, self.o = self.step(self.p, self.o, *self.batches[self.k % POOL])
            self.k += 1
        self._jax.block_until_ready((self.p, self.o))
        return n


class KerasImpl:
    name = "keras"

    def __init__(self, shape: Shape, lr: float, seed: int):
        os.environ.setdefault("KERAS_BACKEND", "jax")
        try:
            import keras
        except Exception as e:
            raise PeerMissing(f"keras not importable ({type(e).__name__}: {e}); "
                              f"pip install -e '.[bench]'") from None
        if keras.backend.backend() != "jax":
            raise PeerMissing(f"keras runs on the {keras.backend.backend()!r} backend; "
                              f"set KERAS_BACKEND=jax before anything imports keras")
        keras.utils.set_random_seed(seed)
        V, H = shape.vocab, shape.hidden
        layers: list[Any] = [keras.Input((shape.seq_len,), dtype="int32") if shape.embed
                             else keras.Input((shape.seq_len, V))]
        if shape.embed:
            layers.append(keras.layers.Embedding(V, shape.embed))
        for i in range(shape.layers):
            last = i == shape.layers - 1
            layers.append(keras.layers.LSTM(H, return_sequences=not (last and shape.last_only)))
        layers.append(keras.layers.Dense(V))
        self.model = keras.Sequential(layers)
        self.model.compile(optimizer=keras.optimizers.Adam(lr, global_clipnorm=5.0),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           jit_compile=True)
        x, y = _tokens(shape, seed, shape.batch * POOL)
        if not shape.embed:
            x = np.eye(V, dtype=np.float32)[x]  # one-hot once, as the tutorial's vectorisation
        y = y[:, -1] if shape.last_only else y
        B = shape.batch
        self.batches = [(x[i * B:(i + 1) * B], y[i * B:(i + 1) * B]) for i in range(POOL)]
        self.k = 0

    def run(self, n: int) -> int:
        for _ in range(n):
            self.model.train_on_batch(*self.batches[self.k % POOL])  # returns host floats: synced
            self.k += 1
        return n


ADAPTERS = {"lmjax": LmjaxImpl, "lmjax_dp": LmjaxDataParallelImpl, "torch": TorchImpl,
            "flax": FlaxImpl, "keras": KerasImpl}
