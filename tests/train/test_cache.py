"""The continuous cache of stream scoring (lmjax/train/cache.py) against a direct computation
of its formula, one position at a time."""

import math

import numpy as np
import pytest

from lmjax.train.cache import CacheSpec, ContinuousCache
from lmjax.train.stream import stream_logprobs, stream_logprobs_cached


def _direct(logp, h, y, spec):
    """p(y_t) = (1 - lam) p_lstm(y_t) + lam sum_{i in [t - window, t), y_i = y_t}
    softmax_i(theta h_t . h_i), the full distribution formed at every position."""
    n, v = logp.shape
    lps, oks = [], []
    for t in range(n):
        p = np.exp(logp[t].astype(np.float64))
        lo = max(0, t - spec.window)
        if t > lo:
            s = spec.theta * (h[lo:t] @ h[t])
            a = np.exp(s - s.max())
            a /= a.sum()
            cache = np.zeros(v)
            for i, w in zip(range(lo, t), a):
                cache[y[i]] += w
            p = (1 - spec.lam) * p + spec.lam * cache
        assert p.sum() == pytest.approx(1.0, abs=1e-6)  # still a distribution (float32 logp)
        lps.append(math.log(p[y[t]]))
        oks.append(p[y[t]] >= p.max())
    return np.array(lps), np.array(oks)


def _toy(n=40, v=7, hdim=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, v))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return logp.astype(np.float32), rng.normal(size=(n, hdim)), rng.integers(0, v, n)


@pytest.mark.parametrize("chunk, window", [(7, 10), (40, 10), (5, 3), (13, 100)])
def test_mix_matches_the_formula_across_chunks(chunk, window):
    logp, h, y = _toy()
    spec = CacheSpec(window=window, theta=0.8, lam=0.3)
    cache = ContinuousCache(spec)
    parts = [cache.mix(logp[a:a + chunk], h[a:a + chunk], y[a:a + chunk])
             for a in range(0, len(y), chunk)]
    lp = np.concatenate([p[0] for p in parts])
    ok = np.concatenate([p[1] for p in parts])
    want_lp, want_ok = _direct(logp, h, y, spec)
    np.testing.assert_allclose(lp, want_lp, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ok, want_ok)
    assert len(cache.keys) == min(window, len(y))  # no more than the window is kept


def test_lambda_zero_is_the_lstm_and_the_first_position_has_no_cache():
    logp, h, y = _toy()
    lp, _ = ContinuousCache(CacheSpec(10, 1.0, 0.0)).mix(logp, h, y)
    np.testing.assert_allclose(lp, logp[np.arange(len(y)), y], rtol=1e-6)
    lp1, _ = ContinuousCache(CacheSpec(10, 1.0, 1.0)).mix(logp, h, y)
    assert lp1[0] == pytest.approx(logp[0, y[0]], rel=1e-6)  # empty cache: the LSTM alone
    # lambda 1 after that: only the cache; a token not seen in the window gets probability 0
    unseen = [t for t in range(1, len(y)) if y[t] not in y[max(0, t - 10):t]]
    assert unseen and np.all(np.isneginf(lp1[unseen]))


def test_a_repeated_token_gains_from_the_cache():
    """A stream whose tokens repeat, and whose LSTM outputs repeat with them, is predicted
    better with the cache than without it."""
    v, period = 50, 5
    y = np.tile(np.arange(period), 8)
    h = np.eye(period)[y]  # the same output before the same next token
    logp = np.full((len(y), v), -math.log(v), np.float32)  # a uniform LSTM
    lp, ok = ContinuousCache(CacheSpec(20, 5.0, 0.5)).mix(logp, h, y)
    assert lp[period:].mean() > -math.log(v) + 2.5  # ~log(0.5) instead of log(1/50)
    assert ok[period:].all()


def test_stream_cached_agrees_with_the_plain_stream_and_any_chunk():
    """stream_logprobs_cached's first part is stream_logprobs; its cache part does not depend
    on how the stream is cut into chunks."""
    rng = np.random.default_rng(1)
    v, hdim = 11, 4
    w_in, w_out = rng.normal(size=(v, hdim)), rng.normal(size=(hdim, v))

    def stream(params, state, x):  # a toy "LSTM": the state is a running sum of embeddings
        e = w_in[np.asarray(x)[0]]
        hs = state + np.cumsum(e, axis=0)
        logits = hs @ w_out
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return logp[:, None, :], hs[-1], hs[:, None, :]

    ids = rng.integers(0, v, 60).astype(np.int32)
    ids[ids == 0] = 1  # 0 is the padding id of the padded last chunk
    spec = CacheSpec(window=15, theta=0.5, lam=0.25)
    zero = lambda b: np.zeros(hdim)  # noqa: E731
    plain = stream_logprobs(stream, None, zero, ids, start=3, chunk=8)
    runs = [stream_logprobs_cached(stream, None, zero, ids, spec, start=3, chunk=c)
            for c in (8, 64)]
    for (lp, ok), (clp, cok) in runs:
        np.testing.assert_allclose(lp, plain[0], rtol=1e-6)
        np.testing.assert_array_equal(ok, plain[1])
        assert len(clp) == len(ids) - 3
    np.testing.assert_allclose(runs[0][1][0], runs[1][1][0], rtol=1e-6)
    assert not np.allclose(runs[0][1][0], plain[0])


@pytest.mark.parametrize("key, value, needle", [
    ("cache_window", -1, "model.cache_window must be >= 0"),
    ("cache_theta", 0.0, "model.cache_theta must be > 0"),
    ("cache_lambda", 1.2, "model.cache_lambda must be in [0, 1]")])
def test_cache_config_is_checked(key, value, needle):
    from lmjax.config import ModelConfig
    from lmjax.errors import ConfigError

    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        ModelConfig(**{key: value})
    assert CacheSpec.from_model(ModelConfig()) is None  # off by default
    assert CacheSpec.from_model(ModelConfig(cache_window=5)) == CacheSpec(5, 0.6, 0.2)


def test_cache_keys_do_not_change_what_trains():
    """The cache is applied when a stream is scored: a run resumed with other cache_* keys
    continues (the fingerprints ignore them), unlike one with another dropout rate."""
    import dataclasses

    from lmjax.config import Config, ModelConfig

    a = Config(model=ModelConfig(embed_size=8, hidden_size=8))
    b = dataclasses.replace(a, model=dataclasses.replace(
        a.model, cache_window=100, cache_theta=0.3, cache_lambda=0.5))
    c = dataclasses.replace(a, model=dataclasses.replace(a.model, locked_dropout=0.1))
    assert a.fingerprint() == b.fingerprint() and a.resume_fingerprint() == b.resume_fingerprint()
    assert a.fingerprint() != c.fingerprint()
