"""Pure, jitted training and evaluation steps.

The NNX model is split once into a graph definition and a parameter State; the jitted functions
take and return plain pytrees (:class:`TrainState`), so they can be donated, vmapped over seeds
and sharded. One jit boundary covers a *chunk* of steps: a ``lax.scan`` over K batch-index rows
that gathers each batch from the device-resident dataset, so the host only dispatches once per
K steps and never waits for a step to finish.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from lmjax.train.metrics import weighted_sums

Batch = dict[str, jax.Array]  # inputs/targets: (B, T) int32, weights: (B, T) float32


@struct.dataclass
class TrainState:
    params: Any  # nnx.State of the model's Params
    opt_state: Any
    step: jax.Array  # () int32: optimizer steps taken
    key: jax.Array  # (2,) uint32: dropout base key; step s uses fold_in(key, s)


class Steps:
    """The jitted functions for one model architecture, optimizer and framing."""

    def __init__(self, graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *,
                 last_only: bool, dropout: bool, take: Any = None, carry_state: bool = False):
        self.graphdef = graphdef
        # framing.carry_state: row b of step s + 1 continues row b of step s, so each train
        # step starts from the LSTM state the previous one ended in (reset at chunk starts)
        self.carry_state = carry_state
        # (dataset, row ids (B,)) -> batch; datasets.sharded_take for per-device shards
        self.take = take or (lambda data, ix: {k: v[ix] for k, v in data.items()})
        self.tx = tx
        self.last_only = last_only
        self.dropout = dropout
        self.train_chunk = jax.jit(self._train_chunk, donate_argnums=0)
        self.eval_chunk = jax.jit(self._eval_chunk)
        self.predict = jax.jit(self._predict)
        self.stream = jax.jit(self._stream)

    # --- pure functions ----------------------------------------------------------------------
    def apply(self, params: Any, inputs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """inputs (B, T) -> logits (B, V) if last_only else (T, B, V)."""
        model = nnx.merge(self.graphdef, params)
        return model(inputs, last_only=self.last_only, dropout_key=key)

    def _select(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """Targets and weights laid out like the logits: (B,) or (T, B)."""
        if self.last_only:
            return batch["targets"][:, -1], batch["weights"][:, -1]
        return batch["targets"].T, batch["weights"].T

    def loss(self, params: Any, batch: Batch, key: jax.Array | None = None,
             ranks: bool = True):
        """(mean loss, metric sums); ``ranks=False`` (training): loss and weight sums only."""
        logits = self.apply(params, batch["inputs"], key)
        targets, weights = self._select(batch)
        sums = weighted_sums(logits, targets, weights, ranks=ranks)
        return sums["loss_sum"] / jnp.maximum(sums["weight"], 1.0), sums

    def stateful_loss(self, params: Any, batch: Batch, key: jax.Array | None,
                      lstm_state: jax.Array):
        """:meth:`loss` from the LSTM state ``lstm_state`` (L, 2, B, H); the aux output also
        holds the final state (no gradient flows into the next step through it)."""
        model = nnx.merge(self.graphdef, params)
        logits, final = model.run(batch["inputs"], lstm_state, key)
        targets, weights = self._select(batch)
        sums = weighted_sums(logits, targets, weights, ranks=False)
        return sums["loss_sum"] / jnp.maximum(sums["weight"], 1.0), (sums, final)

    def train_step(self, state: TrainState, batch: Batch,
                   lstm_state: jax.Array | None = None):
        """One optimizer step. With ``lstm_state`` (carry_state) it also returns the state the
        batch's rows end in."""
        key = jax.random.fold_in(state.key, state.step) if self.dropout else None
        if lstm_state is None:
            (loss, sums), grads = jax.value_and_grad(self.loss, has_aux=True)(
                state.params, batch, key, False)
        else:
            (loss, (sums, final)), grads = jax.value_and_grad(self.stateful_loss, has_aux=True)(
                state.params, batch, key, lstm_state)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        sums = dict(sums, grad_norm=optax.global_norm(grads), step_loss=loss)
        new = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
        if lstm_state is None:
            return new, sums
        return new, sums, jax.lax.stop_gradient(final)

    def _train_chunk(self, state: TrainState, data: Batch, idx: jax.Array):
        """data: dataset arrays (N + 1, T), row N all-zero weights; idx: (K, B) row ids.

        Returns the new state, metric sums over the K steps and the per-step losses (K,).
        With carry_state the LSTM state starts at zero and runs through the K steps.
        """
        if self.carry_state:
            model = nnx.merge(self.graphdef, state.params)

            def body_carry(c, ix):
                st, h = c
                st, sums, h = self.train_step(st, self.take(data, ix), h)
                return (st, h), sums

            (state, _), per_step = jax.lax.scan(body_carry, (state, model.zero_state(
                idx.shape[1])), idx)
        else:
            def body(st, ix):
                return self.train_step(st, self.take(data, ix))

            state, per_step = jax.lax.scan(body, state, idx)
        losses = per_step.pop("step_loss")
        per_step.pop("grad_norm")
        return state, {k: v.sum(0) for k, v in per_step.items()}, losses

    def _eval_chunk(self, params: Any, data: Batch, idx: jax.Array) -> dict:
        """Metric sums of ``params`` over the rows idx (E, B) of data (no dropout)."""
        def body(acc, ix):
            _, sums = self.loss(params, self.take(data, ix))
            return {k: acc[k] + sums[k] for k in acc}, None

        zero = {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct", "top5", "weight")}
        out, _ = jax.lax.scan(body, zero, idx)
        return out

    def _predict(self, params: Any, inputs: jax.Array) -> jax.Array:
        """Log-probabilities of the token after each row: inputs (B, T) -> (B, V)."""
        model = nnx.merge(self.graphdef, params)
        return jax.nn.log_softmax(model(inputs, last_only=True).astype(jnp.float32), axis=-1)


    def _stream(self, params: Any, lstm_state: jax.Array, inputs: jax.Array):
        """Stateful scoring: inputs (B, T) continuing from ``lstm_state`` (L, 2, B, H) ->
        (log-probabilities (T, B, V) of the token after each position, the final state)."""
        model = nnx.merge(self.graphdef, params)
        logits, final = model.run(inputs, lstm_state)
        return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), final


def init_state(params: Any, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    return TrainState(params=params, opt_state=tx.init(params),
                      step=jnp.zeros((), jnp.int32), key=key)
