"""Pure, jitted training and evaluation steps.

The NNX model is split once into a graph definition and a parameter State; the jitted functions
take and return plain pytrees (:class:`TrainState`), so they can be donated, vmapped over seeds
and sharded. One jit boundary covers a *chunk* of steps: a ``lax.while_loop`` over up to K
batch-index rows that gathers each batch from the device-resident dataset, so the host only
dispatches once per chunk and never waits for a step to finish. Trailing rows of -1 are padding
the loop stops before, so one compiled K serves any shorter chunk (an epoch's last one, a
resumed one) and the loop body, hence every step's arithmetic, is the same whatever the chunk
length: how training is cut into chunks does not change what it computes.
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
    # framing.carry_state: the LSTM state (L, 2, B, H) the last step ended in, which the next
    # step starts from (zero at every epoch start); None otherwise
    lstm: Any = None


class Steps:
    """The jitted functions for one model architecture, optimizer and framing."""

    def __init__(self, graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *,
                 last_only: bool, dropout: bool, take: Any = None, carry_state: bool = False):
        self.graphdef = graphdef
        # framing.carry_state: row b of step s + 1 continues row b of step s, so each train
        # step starts from the LSTM state the previous one ended in (TrainState.lstm, carried
        # across chunks; zero at epoch starts, see reset_lstm)
        self.carry_state = carry_state
        # (dataset, row ids (B,)) -> batch; datasets.sharded_take for per-device shards
        self.take = take or (lambda data, ix: {k: v[ix] for k, v in data.items()})
        self.tx = tx
        self.last_only = last_only
        self.dropout = dropout
        self.train_chunk = jax.jit(self._train_chunk, donate_argnums=0)
        self.reset_lstm = jax.jit(self._reset_lstm, donate_argnums=0)
        self.eval_chunk = jax.jit(self._eval_chunk)
        self.predict = jax.jit(self._predict)
        self.stream = jax.jit(self._stream)
        self.eval_carried = jax.jit(self._eval_carried)

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
        """(mean loss, metric sums); ``ranks=False`` (training): loss and weight sums only,
        through the fused output layer (``LanguageModel.loss_sums``)."""
        targets, weights = self._select(batch)
        if ranks:
            sums = weighted_sums(self.apply(params, batch["inputs"], key), targets, weights)
        else:
            model = nnx.merge(self.graphdef, params)
            h, _ = model.hidden_states(batch["inputs"], key)
            sums = model.loss_sums(h[-1] if self.last_only else h, targets, weights)
        return sums["loss_sum"] / jnp.maximum(sums["weight"], 1.0), sums

    def stateful_loss(self, params: Any, batch: Batch, key: jax.Array | None,
                      lstm_state: jax.Array):
        """:meth:`loss` from the LSTM state ``lstm_state`` (L, 2, B, H); the aux output also
        holds the final state (no gradient flows into the next step through it)."""
        model = nnx.merge(self.graphdef, params)
        h, final = model.hidden_states(batch["inputs"], key, lstm_state)
        targets, weights = self._select(batch)
        sums = model.loss_sums(h, targets, weights)
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
        sums = dict(sums, step_loss=loss)
        new = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
        if lstm_state is None:
            return new, sums
        return new, sums, jax.lax.stop_gradient(final)

    def _train_chunk(self, state: TrainState, data: Batch, idx: jax.Array):
        """data: dataset arrays (N + 1, T), row N all-zero weights; idx: (K, B) row ids, whose
        trailing rows may be -1 (padding: not run).

        Returns the new state, per-step metric sums {"loss_sum", "weight"}: (K,) each, and the
        per-step losses (K,) (zero for padding rows). Per-step values (not chunk totals) let
        the host add them up in step order, so running sums do not depend on where chunks end.
        With carry_state each step starts from ``state.lstm`` and leaves its final state there.
        """
        k = idx.shape[0]
        n = jnp.sum(jnp.min(idx, axis=1) >= 0)  # rows to run (padding is trailing)
        if self.carry_state and state.lstm is None:  # a state made without one: start at zero
            state = state.replace(lstm=zero_lstm(self.graphdef, state.params, idx.shape[1]))
        out0 = {name: jnp.zeros((k,), jnp.float32) for name in ("loss_sum", "weight", "loss")}

        def body(c):
            i, st, out = c
            batch = self.take(data, idx[i])
            if self.carry_state:
                new, sums, h = self.train_step(st, batch, st.lstm)
                new = new.replace(lstm=h)
            else:
                new, sums = self.train_step(st, batch)
            vals = {"loss_sum": sums["loss_sum"], "weight": sums["weight"],
                    "loss": sums["step_loss"]}
            return i + 1, new, {name: out[name].at[i].set(vals[name]) for name in out}

        _, state, out = jax.lax.while_loop(lambda c: c[0] < n, body,
                                           (jnp.zeros((), jnp.int32), state, out0))
        losses = out.pop("loss")
        return state, out, losses

    def _reset_lstm(self, state: TrainState) -> TrainState:
        """The carried LSTM state set to zero (an epoch's lanes start from new offsets)."""
        return state if state.lstm is None else state.replace(lstm=jnp.zeros_like(state.lstm))

    def _eval_chunk(self, params: Any, data: Batch, idx: jax.Array) -> dict:
        """Metric sums of ``params`` over the rows idx (E, B) of data (no dropout)."""
        def body(acc, ix):
            _, sums = self.loss(params, self.take(data, ix))
            return {k: acc[k] + sums[k] for k in acc}, None

        zero = {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct", "top5", "weight")}
        out, _ = jax.lax.scan(body, zero, idx)
        return out

    def _eval_carried(self, params: Any, data: Batch, idx: jax.Array,
                      lstm_state: jax.Array) -> dict:
        """Metric sums over the rows idx (E, B) of data with the LSTM state carried from row
        ``idx[e, b]`` to row ``idx[e + 1, b]`` (column b: one lane of consecutive blocks),
        starting from ``lstm_state`` (L, 2, B, H); no dropout."""
        model = nnx.merge(self.graphdef, params)

        def body(carry, ix):
            acc, h = carry
            batch = self.take(data, ix)
            logits, h = model.run(batch["inputs"], h)
            sums = weighted_sums(logits, batch["targets"].T, batch["weights"].T)
            return ({k: acc[k] + sums[k] for k in acc}, h), None

        zero = {k: jnp.zeros((), jnp.float32) for k in ("loss_sum", "correct", "top5", "weight")}
        (out, _), _ = jax.lax.scan(body, (zero, lstm_state), idx)
        return out

    def _predict(self, params: Any, inputs: jax.Array) -> jax.Array:
        """Log-probabilities of the token after each row: inputs (B, T) -> (B, V)."""
        model = nnx.merge(self.graphdef, params)
        return jax.nn.log_softmax(model(inputs, last_only=True).astype(jnp.float32), axis=-1)


    def _stream(self, params: Any, lstm_state: jax.Array, inputs: jax.Array):
        """Stateful scoring: inputs (B, T) continuing from ``lstm_state`` (L, 2, B, H) ->
        (log-probabilities (T, B, V) of the token after each position, the final state, the
        top-layer outputs (T, B, H) that the continuous cache keeps)."""
        model = nnx.merge(self.graphdef, params)
        h, final = model.hidden_states(inputs, None, lstm_state)
        return jax.nn.log_softmax(model.logits(h).astype(jnp.float32), axis=-1), final, h


def init_state(params: Any, tx: optax.GradientTransformation, key: jax.Array,
               lstm: jax.Array | None = None) -> TrainState:
    """``lstm``: the zero LSTM state (L, 2, B, H) of a carry_state run (``zero_lstm``)."""
    return TrainState(params=params, opt_state=tx.init(params),
                      step=jnp.zeros((), jnp.int32), key=key, lstm=lstm)


def zero_lstm(graphdef: nnx.GraphDef, params: Any, batch: int) -> jax.Array:
    """(L, 2, B, H) zeros: the LSTM state a carry_state run starts each epoch from."""
    return nnx.merge(graphdef, params).zero_state(batch)
