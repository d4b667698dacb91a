"""The language model: embedding -> stacked scan-LSTM layers -> (dropout) -> dense to the vocab.

Everything runs time-major, (T, B, ...), because that is the layout ``lax.scan`` walks; the
tokens are transposed once on the way in, so no (B, T, H) activation is ever transposed.
Initialisers follow Keras' defaults (the tutorials' models): glorot-uniform input kernels,
orthogonal recurrent kernels, zero biases with the forget gate at 1, embeddings U(-0.05, 0.05).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lmjax.config import ModelConfig
from lmjax.model.lstm_kernel import lstm_recurrence

_glorot = jax.nn.initializers.glorot_uniform()
_orthogonal = jax.nn.initializers.orthogonal()


def _dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """(..., D) @ (D, N) as one 2-D matmul: XLA's CPU backend runs a (T, B, D) x (D, N) product
    and its weight gradient (a contraction over T and B) far slower than the same product on
    (T * B, D) rows (measured: the 10k-way output layer of bench config C, forward and
    backward, 78 ms 3-D against 57 ms 2-D)."""
    lead = x.shape[:-1]
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*lead, w.shape[-1])


class LSTMLayer(nnx.Module):
    """One LSTM layer; the four gates (i, f, g, o) share one fused weight matrix."""

    def __init__(self, in_size: int, hidden: int, *, rngs: nnx.Rngs, table_input: bool = False):
        self.hidden = hidden
        # table_input: the layer input is a token id (one-hot); w_ih is then a (V, 4H) lookup table.
        self.table_input = table_input
        self.w_ih = nnx.Param(_glorot(rngs.params(), (in_size, 4 * hidden)))
        self.w_hh = nnx.Param(_orthogonal(rngs.params(), (hidden, 4 * hidden)))
        self.b = nnx.Param(jnp.zeros((4 * hidden,)).at[hidden:2 * hidden].set(1.0))

    def project(self, x: jax.Array) -> jax.Array:
        """Input projection for every step at once, outside the recurrence.

        x: (T, B) int token ids if table_input else (T, B, D) -> (T, B, 4H).
        """
        if self.table_input:
            return self.w_ih[...][x] + self.b[...]
        return _dense(x, self.w_ih[...]) + self.b[...]

    def __call__(self, x: jax.Array, state: tuple[jax.Array, jax.Array] | None = None):
        """x: (T, B) ids or (T, B, D) -> (hidden states (T, B, H), final (h, c), each (B, H)).

        ``state``: the initial (h, c) (zeros if None)."""
        xp = self.project(x)
        if state is None:
            zeros = jnp.zeros((xp.shape[1], self.hidden), xp.dtype)
            state = (zeros, zeros)
        return lstm_recurrence(xp, self.w_hh[...], *state)


class LanguageModel(nnx.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.vocab_size = vocab_size
        self.dropout = cfg.dropout
        self.tied = cfg.tie_embeddings
        one_hot = cfg.embed_size == 0  # the keyboard tutorial feeds one-hot vectors
        if one_hot:
            self.embed = None
        else:
            init = jax.nn.initializers.uniform(0.1)
            self.embed = nnx.Param(init(rngs.params(), (vocab_size, cfg.embed_size)) - 0.05)
        layers = []
        in_size = vocab_size if one_hot else cfg.embed_size
        for i in range(cfg.num_layers):
            layers.append(LSTMLayer(in_size, cfg.hidden_size, rngs=rngs,
                                    table_input=one_hot and i == 0))
            in_size = cfg.hidden_size
        self.layers = nnx.List(layers)
        if not self.tied:
            self.w_out = nnx.Param(_glorot(rngs.params(), (cfg.hidden_size, vocab_size)))
        self.b_out = nnx.Param(jnp.zeros((vocab_size,)))

    def _drop(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        if key is None or self.dropout == 0.0:
            return x
        keep = jax.random.bernoulli(key, 1.0 - self.dropout, x.shape)
        return jnp.where(keep, x / (1.0 - self.dropout), 0.0)

    def hidden_states(self, tokens: jax.Array, dropout_key: jax.Array | None = None,
                      state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """tokens: (B, T) int -> (top-layer states (T, B, H), final state (L, 2, B, H)), dropout
        applied if a key is given. ``state``: the initial (h, c) of every layer, (L, 2, B, H),
        as returned by a previous call (zeros if None)."""
        x = tokens.T  # (T, B)
        if self.embed is not None:
            x = self.embed[...][x]  # (T, B, E)
        keys = (jax.random.split(dropout_key, len(self.layers))
                if dropout_key is not None else [None] * len(self.layers))
        finals = []
        for i, (layer, k) in enumerate(zip(self.layers, keys)):
            hs, (h, c) = layer(x, None if state is None else (state[i, 0], state[i, 1]))
            finals.append(jnp.stack([h, c]))
            x = self._drop(hs, k)
        return x, jnp.stack(finals)

    def zero_state(self, batch: int) -> jax.Array:
        """The initial state of :meth:`hidden_states`, (L, 2, B, H) zeros."""
        return jnp.zeros((len(self.layers), 2, batch, self.layers[0].hidden), jnp.float32)

    def logits(self, h: jax.Array) -> jax.Array:
        """(..., H) -> (..., V)."""
        w = self.embed[...].T if self.tied else self.w_out[...]
        return _dense(h, w) + self.b_out[...]

    def __call__(self, tokens: jax.Array, *, last_only: bool = False,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        """tokens: (B, T) -> logits (B, V) if last_only else (T, B, V) (time-major)."""
        h, _ = self.hidden_states(tokens, dropout_key)
        return self.logits(h[-1] if last_only else h)

    def run(self, tokens: jax.Array, state: jax.Array,
            dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Stateful: tokens (B, T) from ``state`` (L, 2, B, H) -> (logits (T, B, V), the state
        after the last token), so the next call can continue the same streams."""
        h, final = self.hidden_states(tokens, dropout_key, state)
        return self.logits(h), final


def count_params(model: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
