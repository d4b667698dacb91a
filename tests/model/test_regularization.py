"""Regularization of the language model (docs/regularization.md): locked / embedding / word
dropout and weight drop. Exact small-array checks of the masks, gradients through the
hand-written LSTM kernel against autodiff, deterministic evaluation, and the old model unchanged
while every new rate is 0."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lmjax.config import _NOT_TRAINING, Config, ModelConfig, _hash, from_dict, resume_relevant
from lmjax.errors import ConfigError
from lmjax.model import lm
from lmjax.model.lm import LanguageModel, dropout, locked_dropout, word_dropout
from lmjax.model.lstm_kernel import lstm_recurrence_reference
from lmjax.train.loop import make_steps
from lmjax.train.step import Steps

from ..conftest import REPO

V, T, B = 17, 6, 5
NEW_KEYS = ("locked_dropout", "embed_dropout", "embed_word_dropout", "weight_drop")
ALL_ON = dict(locked_dropout=0.3, embed_dropout=0.2, embed_word_dropout=0.25, weight_drop=0.4)


def _model(seed=0, **kw) -> LanguageModel:
    cfg = ModelConfig(**{**dict(embed_size=8, hidden_size=12, num_layers=2), **kw})
    return LanguageModel(V, cfg, rngs=nnx.Rngs(params=jax.random.PRNGKey(seed)))


def _tokens(seed=0, shape=(B, T)):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, shape), jnp.int32)


def test_locked_mask_same_at_every_step_and_differs_between_sequences():
    x = jnp.ones((T, B, 32))
    out = np.asarray(locked_dropout(x, 0.5, jax.random.PRNGKey(1)))
    assert set(np.unique(out)) == {0.0, 2.0}  # dropped or scaled by 1 / (1 - p)
    assert all(np.array_equal(out[t], out[0]) for t in range(T))
    assert not np.array_equal(out[0, 0], out[0, 1])  # sequences get their own masks
    plain = np.asarray(dropout(x, 0.5, jax.random.PRNGKey(1)))  # standard: new mask per step
    assert not np.array_equal(plain[0], plain[1])


def test_model_locked_dropout_between_layers_and_on_embeddings():
    model = _model(locked_dropout=0.5, embed_dropout=0.5)
    key = jax.random.PRNGKey(3)
    hs, _ = jax.jit(model.hidden_states)(_tokens(), key)
    zero = np.asarray(hs) == 0.0  # (T, B, H): LSTM outputs are never exactly 0 otherwise
    assert zero.any() and not zero.all()
    assert all(np.array_equal(zero[t], zero[0]) for t in range(T))
    assert not np.array_equal(zero[0, 0], zero[0, 1])
    emb = np.asarray(jax.jit(model.inputs)(_tokens().T, (None, jax.random.PRNGKey(4))))  # (T,B,E)
    ezero = emb == 0.0
    assert ezero.any() and all(np.array_equal(ezero[t], ezero[0]) for t in range(T))
    assert not np.array_equal(ezero[0, 0], ezero[0, 1])


def test_word_dropout_drops_whole_words():
    model = _model(embed_word_dropout=0.5)
    toks = _tokens(1, (T, 8))  # time-major ids, every word several times
    table = np.asarray(model.embed[...])
    out = np.asarray(word_dropout(jnp.asarray(table)[toks], toks, V, 0.5, jax.random.PRNGKey(2)))
    dropped, kept = set(), set()
    for t, b in np.ndindex(*toks.shape):
        w = int(toks[t, b])
        if not out[t, b].any():
            dropped.add(w)
        else:
            np.testing.assert_allclose(out[t, b], table[w] / 0.5, rtol=1e-7)
            kept.add(w)
    assert dropped and kept and not dropped & kept  # a word is dropped everywhere or nowhere


def test_weight_drop_mask_shape_scale_and_once_per_pass(monkeypatch):
    p = 0.3
    captured, real = [], lm.lstm_recurrence

    def spy(xp, w_hh, h0, c0):
        captured.append(w_hh)
        return real(xp, w_hh, h0, c0)
    monkeypatch.setattr(lm, "lstm_recurrence", spy)
    model = _model(hidden_size=16, weight_drop=p)

    def used(key):  # the recurrent weights the kernel gets in one forward pass
        del captured[:]
        model.hidden_states(_tokens(), key)
        return list(captured)
    passes = [jax.jit(used)(jax.random.PRNGKey(s)) for s in (5, 6)]
    seen = passes[0] + passes[1] + jax.jit(lambda: used(None))()  # None: evaluation
    assert len(seen) == 6
    masks = []
    for i, w_eff in enumerate(seen[:4]):
        w = np.asarray(model.layers[i % 2].w_hh[...])
        w_eff = np.asarray(w_eff)
        assert w_eff.shape == w.shape == (16, 64)  # one (H, 4H) mask for all steps and rows
        keep = w_eff != 0.0
        np.testing.assert_allclose(w_eff[keep], w[keep] / (1 - p), rtol=1e-6)
        assert 0.6 < keep.mean() < 0.8
        masks.append(keep)
    assert not np.array_equal(masks[0], masks[1])  # layers get their own masks
    assert not np.array_equal(masks[0], masks[2])  # and every pass (batch) a new one
    for i, w_eff in enumerate(seen[4:]):
        np.testing.assert_array_equal(np.asarray(w_eff), np.asarray(model.layers[i].w_hh[...]))


def _old_model_forward(model, tokens, key, rate):
    """The model as it was before the regularization keys: embedding, per-layer standard
    dropout with the keys split(key, L), dense output."""
    x = model.embed[...][tokens.T]
    keys = jax.random.split(key, len(model.layers))
    for layer, k in zip(model.layers, keys):
        x, _ = layer(x)
        keep = jax.random.bernoulli(k, 1.0 - rate, x.shape)
        x = jnp.where(keep, x / (1.0 - rate), 0.0)
    return model.logits(x)


def test_zero_rates_equal_the_old_model_bit_for_bit():
    model = _model(dropout=0.2, **{k: 0.0 for k in NEW_KEYS})
    key = jax.random.PRNGKey(7)
    got = jax.jit(lambda t, k: model(t, dropout_key=k))(_tokens(), key)
    want = jax.jit(lambda t, k: _old_model_forward(model, t, k, 0.2))(_tokens(), key)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # the default config keeps the old dropout-key condition, hash and saved config
    assert not ModelConfig().stochastic and ModelConfig(dropout=0.1).stochastic
    cfg = Config(model=ModelConfig(dropout=0.1))
    old = cfg.to_dict()
    for k in NEW_KEYS:
        del old["model"][k]
    assert _hash(old, _NOT_TRAINING, ("logger.",)) == cfg.fingerprint()
    assert resume_relevant(old) == resume_relevant(cfg.to_dict())  # an old run dir resumes
    assert from_dict(old) == cfg  # a run dir's config.yaml written before these keys loads


@pytest.mark.parametrize("name", NEW_KEYS)
def test_every_rate_turns_the_training_key_on_and_the_hash_changes(name):
    cfg = Config(model=ModelConfig(embed_size=8, **{name: 0.2}))
    graphdef, _ = nnx.split(_model())
    assert make_steps(cfg, graphdef).dropout
    assert not make_steps(Config(model=ModelConfig(embed_size=8)), graphdef).dropout
    assert cfg.fingerprint() != Config(model=ModelConfig(embed_size=8)).fingerprint()


@pytest.mark.parametrize("kw,message", [
    (dict(dropout=0.2, locked_dropout=0.2), "set one of them to 0"),
    (dict(embed_size=0, embed_dropout=0.1), "need an embedding table"),
    (dict(embed_size=0, embed_word_dropout=0.1), "need an embedding table"),
    (dict(weight_drop=1.0), "model.weight_drop must be in [0, 1)"),
    (dict(locked_dropout=-0.1), "model.locked_dropout must be in [0, 1)"),
])
def test_bad_rates_are_rejected(kw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        ModelConfig(**kw)


def _batch(seed=0):
    x = _tokens(seed, (B, T + 1))
    return {"inputs": x[:, :-1], "targets": x[:, 1:], "weights": jnp.ones((B, T), jnp.float32)}


@pytest.mark.parametrize("kw,carry", [(dict(ALL_ON), False),
                                      (dict(ALL_ON, tie_embeddings=True, embed_size=12), True)])
def test_gradients_match_autodiff_reference(monkeypatch, kw, carry):
    """The whole model's gradients with weight drop and locked / embedding / word dropout on,
    through the hand-written kernel and through plain lax.scan + autodiff: same masks (same
    key), only the recurrence differs. carry: from a given LSTM state (framing.carry_state)."""
    graphdef, params = nnx.split(_model(**kw))
    steps = Steps(graphdef, optax.sgd(0.1), last_only=False, dropout=True)
    key, state = jax.random.PRNGKey(8), jnp.asarray(
        0.3 * np.random.default_rng(1).normal(size=(2, 2, B, 12)), jnp.float32)

    def loss(p, k):
        if carry:
            return steps.stateful_loss(p, _batch(1), k, state)[0]
        return steps.loss(p, _batch(), k, False)[0]

    v, g = jax.jit(jax.value_and_grad(loss))(params, key)
    monkeypatch.setattr(lm, "lstm_recurrence", lstm_recurrence_reference)
    v_r, g_r = jax.jit(jax.value_and_grad(loss))(params, key)
    np.testing.assert_allclose(float(v), float(v_r), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_r), strict=True):
        scale = float(jnp.max(jnp.abs(b)))
        assert scale > 1e-6  # every parameter gets a gradient
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * scale)
    # the masks are really on: the loss with a key differs from the one without
    assert float(v) != float(jax.jit(loss)(params, None))


def test_evaluation_and_inference_are_deterministic():
    batch = _batch()
    graphdef, params = nnx.split(_model(**ALL_ON))
    plain_def, plain_params = nnx.split(_model())  # same seed: the same parameters, no dropout
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(plain_params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    steps = Steps(graphdef, optax.sgd(0.1), last_only=False, dropout=True)
    plain = Steps(plain_def, optax.sgd(0.1), last_only=False, dropout=False)
    data = {k: jnp.concatenate([v, v]) for k, v in batch.items()}
    idx = jnp.arange(2 * B, dtype=jnp.int32).reshape(2, B)
    ev = [steps.eval_chunk(params, data, idx) for _ in range(2)] + [
        plain.eval_chunk(params, data, idx)]
    for k in ev[0]:
        assert float(ev[0][k]) == float(ev[1][k]) == float(ev[2][k])
    pred = [s.predict(params, batch["inputs"]) for s in (steps, steps, plain)]
    zero = jnp.zeros((2, 2, B, 12))
    stream = [s.stream(params, zero, batch["inputs"])[0] for s in (steps, steps, plain)]
    for out in (pred, stream):
        np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(out[1]))
        np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(out[2]))


def test_cli_trains_with_every_regularizer_on(tmp_path):
    """A tiny word-level run on Jack and Jill with all the new keys on trains to a lower, finite
    loss (train_loss is measured without dropout, after each epoch)."""
    env = dict(os.environ, WANDB_MODE="disabled")
    args = ["framing=sequence", "framing.level=word", "framing.seq_len=6", "model.embed_size=16",
            "model.hidden_size=16", "model.num_layers=2", "model.locked_dropout=0.3",
            "model.embed_dropout=0.2", "model.embed_word_dropout=0.1", "model.weight_drop=0.3",
            "optim.lr=0.02", "train.epochs=30", "train.batch_size=8", "train.progress=false",
            "logger=none", "sample.length=0", f"hydra.run.dir={tmp_path}"]
    r = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [x["train_loss"] for x in records if "train_loss" in x]
    assert len(losses) >= 2 and all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses  # 3.13 -> 1.64 when written
    saved = (tmp_path / "config.yaml").read_text()
    assert "weight_drop: 0.3" in saved and "locked_dropout: 0.3" in saved
