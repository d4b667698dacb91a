"""The language model: embedding -> stacked scan-LSTM layers -> (dropout) -> dense to the vocab.

Regularization (docs/regularization.md), all off by default and all only when a dropout key is
given (training; evaluation and inference pass none and are deterministic):
``dropout`` (a fresh mask at every position) or ``locked_dropout`` (one mask per sequence, shared
over time steps) on every LSTM layer's output; ``embed_dropout`` (locked) on the embedded inputs;
``embed_word_dropout`` (whole words of the embedding table); ``input_dropout`` (a fresh mask at
every position, on the embedded inputs: PyTorch's ``word_language_model``); ``weight_drop``
(DropConnect on every layer's recurrent weights, one mask per forward pass).

Everything runs time-major, (T, B, ...), because that is the layout ``lax.scan`` walks; the
tokens are transposed once on the way in, so no (B, T, H) activation is ever transposed.
Initialisers (``model.init``): ``keras``, Keras' defaults (the tutorials' models):
glorot-uniform input kernels, orthogonal recurrent kernels, zero biases with the forget gate at
1, embeddings U(-0.05, 0.05); ``torch``, PyTorch's ``word_language_model``: embedding and output
weights U(-0.1, 0.1), output bias 0, every LSTM weight U(-k, k) with k = 1/sqrt(H), and the bias
the sum of two such draws (``nn.LSTM`` has b_ih and b_hh).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lmjax.config import ModelConfig
from lmjax.model.lstm_kernel import lstm_recurrence
from lmjax.model.softmax_xent import xent_sum

_glorot = jax.nn.initializers.glorot_uniform()
_orthogonal = jax.nn.initializers.orthogonal()


def _uniform(key: jax.Array, shape: tuple[int, ...], k: float) -> jax.Array:
    """U(-k, k)."""
    return jax.random.uniform(key, shape, jnp.float32, -k, k)


def _dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """(..., D) @ (D, N) as one 2-D matmul: XLA's CPU backend runs a (T, B, D) x (D, N) product
    and its weight gradient (a contraction over T and B) far slower than the same product on
    (T * B, D) rows (measured: the 10k-way output layer of bench config C, forward and
    backward, 78 ms 3-D against 57 ms 2-D)."""
    lead = x.shape[:-1]
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*lead, w.shape[-1])


def dropout(x: jax.Array, rate: float, key: jax.Array | None,
            mask_shape: tuple[int, ...] | None = None) -> jax.Array:
    """Inverted dropout: each entry of a mask of ``mask_shape`` (x.shape if None; it broadcasts
    against x) keeps with probability 1 - rate; kept entries are scaled by 1 / (1 - rate).
    No key or rate 0: x unchanged."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape if mask_shape is None else mask_shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def locked_dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Variational dropout (Gal & Ghahramani 2016): x (T, B, D) with ONE (B, D) mask per
    sequence, the same at every time step."""
    return dropout(x, rate, key, x.shape[1:])


def word_dropout(embedded: jax.Array, tokens: jax.Array, vocab_size: int, rate: float,
                 key: jax.Array | None) -> jax.Array:
    """Embedding dropout (Merity et al. 2018): whole rows of the embedding table are dropped
    (one (V,) mask per forward pass), the rest scaled by 1 / (1 - rate). Applied to the looked-up
    rows, embedded (T, B, E) of tokens (T, B), which equals looking up in the masked table."""
    if key is None or rate == 0.0:
        return embedded
    keep = jax.random.bernoulli(key, 1.0 - rate, (vocab_size,))[tokens]  # (T, B)
    return jnp.where(keep[..., None], embedded / (1.0 - rate), 0.0)


class LSTMLayer(nnx.Module):
    """One LSTM layer; the four gates (i, f, g, o) share one fused weight matrix.

    ``weight_drop``: DropConnect (Wan et al. 2013) on w_hh, as AWD-LSTM: one (H, 4H) mask per
    forward pass, applied before the recurrence (the kernel gets the masked weights, autodiff
    carries the gradient back through the mask)."""

    def __init__(self, in_size: int, hidden: int, *, rngs: nnx.Rngs, table_input: bool = False,
                 weight_drop: float = 0.0, init: str = "keras"):
        self.hidden = hidden
        self.weight_drop = weight_drop
        # table_input: the layer input is a token id (one-hot); w_ih is then a (V, 4H) lookup table.
        self.table_input = table_input
        if init == "torch":
            k = hidden ** -0.5
            self.w_ih = nnx.Param(_uniform(rngs.params(), (in_size, 4 * hidden), k))
            self.w_hh = nnx.Param(_uniform(rngs.params(), (hidden, 4 * hidden), k))
            self.b = nnx.Param(_uniform(rngs.params(), (4 * hidden,), k)
                               + _uniform(rngs.params(), (4 * hidden,), k))
        else:
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

    def __call__(self, x: jax.Array, state: tuple[jax.Array, jax.Array] | None = None,
                 weight_key: jax.Array | None = None):
        """x: (T, B) ids or (T, B, D) -> (hidden states (T, B, H), final (h, c), each (B, H)).

        ``state``: the initial (h, c) (zeros if None). ``weight_key``: the weight-drop mask's
        key (None: no weight drop)."""
        xp = self.project(x)
        if state is None:
            zeros = jnp.zeros((xp.shape[1], self.hidden), xp.dtype)
            state = (zeros, zeros)
        w_hh = dropout(self.w_hh[...], self.weight_drop, weight_key)
        return lstm_recurrence(xp, w_hh, *state)


# fold_in(dropout key, _REG_KEYS) seeds the masks added after the per-layer dropout keys
# (split(dropout key, L)), so those keys, and runs using model.dropout, stay as they were. With
# threefry, split(key, n)[i] can equal fold_in(key, i): the constant stays clear of any layer i.
_REG_KEYS = 1 << 20


class LanguageModel(nnx.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.vocab_size = vocab_size
        self.dropout = cfg.dropout
        self.locked = cfg.locked_dropout
        self.embed_dropout = cfg.embed_dropout
        self.embed_word_dropout = cfg.embed_word_dropout
        self.input_dropout = cfg.input_dropout
        self.tied = cfg.tie_embeddings
        one_hot = cfg.embed_size == 0  # the keyboard tutorial feeds one-hot vectors
        if one_hot:
            self.embed = None
        else:
            shape = (vocab_size, cfg.embed_size)
            if cfg.init == "torch":
                self.embed = nnx.Param(_uniform(rngs.params(), shape, 0.1))
            else:  # Keras' U(-0.05, 0.05), drawn as it always was
                self.embed = nnx.Param(jax.nn.initializers.uniform(0.1)(rngs.params(), shape)
                                       - 0.05)
        layers = []
        in_size = vocab_size if one_hot else cfg.embed_size
        for i in range(cfg.num_layers):
            layers.append(LSTMLayer(in_size, cfg.hidden_size, rngs=rngs,
                                    table_input=one_hot and i == 0, weight_drop=cfg.weight_drop,
                                    init=cfg.init))
            in_size = cfg.hidden_size
        self.layers = nnx.List(layers)
        if not self.tied:
            shape = (cfg.hidden_size, vocab_size)
            self.w_out = nnx.Param(_uniform(rngs.params(), shape, 0.1) if cfg.init == "torch"
                                   else _glorot(rngs.params(), shape))
        self.b_out = nnx.Param(jnp.zeros((vocab_size,)))

    def _drop(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        """A layer's output (T, B, H): model.dropout or model.locked_dropout (at most one set)."""
        if self.locked:
            return locked_dropout(x, self.locked, key)
        return dropout(x, self.dropout, key)

    def inputs(self, x: jax.Array, keys: tuple[jax.Array | None, jax.Array | None]) -> jax.Array:
        """The first layer's input: ids x (T, B) embedded to (T, B, E) with word and locked
        embedding dropout (keys: theirs), or the ids themselves for one-hot inputs."""
        if self.embed is None:
            return x
        e = word_dropout(self.embed[...][x], x, self.vocab_size, self.embed_word_dropout, keys[0])
        if self.input_dropout:  # config: at most one of input_dropout and embed_dropout
            return dropout(e, self.input_dropout, keys[1])
        return locked_dropout(e, self.embed_dropout, keys[1])

    def hidden_states(self, tokens: jax.Array, dropout_key: jax.Array | None = None,
                      state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """tokens: (B, T) int -> (top-layer states (T, B, H), final state (L, 2, B, H)), dropout
        applied if a key is given. ``state``: the initial (h, c) of every layer, (L, 2, B, H),
        as returned by a previous call (zeros if None)."""
        n = len(self.layers)
        if dropout_key is None:
            keys, extra = [None] * n, [None] * (2 + n)
        else:
            keys = jax.random.split(dropout_key, n)
            extra = jax.random.split(jax.random.fold_in(dropout_key, _REG_KEYS), 2 + n)
        x = self.inputs(tokens.T, (extra[0], extra[1]))
        finals = []
        for i, (layer, k) in enumerate(zip(self.layers, keys)):
            hs, (h, c) = layer(x, None if state is None else (state[i, 0], state[i, 1]),
                               extra[2 + i])
            finals.append(jnp.stack([h, c]))
            x = self._drop(hs, k)
        return x, jnp.stack(finals)

    def zero_state(self, batch: int) -> jax.Array:
        """The initial state of :meth:`hidden_states`, (L, 2, B, H) zeros."""
        return jnp.zeros((len(self.layers), 2, batch, self.layers[0].hidden), jnp.float32)

    def output_layer(self) -> tuple[jax.Array, jax.Array]:
        """The output layer's weights (H, V) and bias (V,)."""
        return (self.embed[...].T if self.tied else self.w_out[...]), self.b_out[...]

    def logits(self, h: jax.Array) -> jax.Array:
        """(..., H) -> (..., V)."""
        w, b = self.output_layer()
        return _dense(h, w) + b

    def loss_sums(self, h: jax.Array, targets: jax.Array, weights: jax.Array
                  ) -> dict[str, jax.Array]:
        """The training loss without the logits: top-layer states h (..., H), targets and
        weights (...) -> {"loss_sum", "weight"}, as ``weighted_sums(self.logits(h), ...,
        ranks=False)`` computes them (the output layer and softmax fused:
        :mod:`lmjax.model.softmax_xent`)."""
        w, b = self.output_layer()
        flat = h.reshape(-1, h.shape[-1])
        weights = weights.reshape(-1).astype(jnp.float32)
        return {"loss_sum": xent_sum(flat, w, b, targets.reshape(-1), weights),
                "weight": jnp.sum(weights)}

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
