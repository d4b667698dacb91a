import math

import numpy as np
import pytest

from lmjax.data.vocab import PAD_ID, UNK_ID
from lmjax.errors import DataError
from lmjax.infer.score import score_lines, score_text, token_logprobs
from tests.infer.toy import Bigram, char_vocab, random_bigram


def test_score_is_the_sum_of_per_step_logprobs():
    vocab = char_vocab()
    model = random_bigram(len(vocab), seed=1)
    text = "ab a.b ba"
    ids = vocab.encode(list(text))
    s = score_text(model, vocab, text, width=4, batch_size=3)
    expected = sum(float(model.logp[ids[i - 1], ids[i]]) for i in range(1, len(ids)))
    assert s["tokens"] == len(text) - 1
    assert s["log_prob"] == pytest.approx(expected, rel=1e-6)
    assert s["bits_per_char"] == pytest.approx(-expected / (len(text) - 1) / math.log(2), rel=1e-6)
    # every call had the same shape (one compile) and the padded rows were dropped
    assert {c.shape for c in model.calls} == {(3, 4)}


def test_context_windows_are_left_padded_and_limited():
    seen = []

    def predict(x):
        seen.append(x.copy())
        return np.log(np.full((len(x), 5), 0.2, np.float32))

    ids = np.array([2, 3, 4, 2, 3], np.int32)
    lp, ok = token_logprobs(predict, ids, width=4, context=2, batch_size=8)
    rows = np.concatenate(seen)[:4]
    assert rows.tolist() == [[PAD_ID, PAD_ID, PAD_ID, 2], [PAD_ID, PAD_ID, 2, 3],
                             [PAD_ID, PAD_ID, 3, 4], [PAD_ID, PAD_ID, 4, 2]]
    assert np.allclose(lp, np.log(0.2)) and ok.all()  # ties count as right


def test_history_scores_the_first_token_and_unknowns_count_as_unk():
    vocab = char_vocab()
    model = random_bigram(len(vocab), seed=2)
    s = score_text(model, vocab, "ab", width=4, history="b")
    assert s["tokens"] == 2
    assert s["log_prob"] == pytest.approx(float(model.logp[vocab.id("b"), vocab.id("a")]
                                                + model.logp[vocab.id("a"), vocab.id("b")]))
    s = score_text(model, vocab, "aXb", width=4)  # X is not in the vocabulary: <unk>
    assert s["unknown"] == 1 and s["tokens"] == 2 and s["oov_rate"] == 0.5
    assert s["log_prob"] == pytest.approx(float(model.logp[vocab.id("a"), UNK_ID]
                                                + model.logp[UNK_ID, vocab.id("b")]))
    assert s["bits_per_char_in_vocab"] == pytest.approx(
        -float(model.logp[UNK_ID, vocab.id("b")]) / np.log(2))


def test_accuracy_and_lines():
    vocab = char_vocab()
    p = np.full((6, 6), 0.1)
    p[:, vocab.id("a")] = 1.0  # always predicts 'a'
    model = Bigram(p)
    s = score_text(model, vocab, "baab", width=2)
    assert s["next_token_accuracy"] == pytest.approx(2 / 3)
    lines = score_lines(model, vocab, "ba\n\nab\n", width=2)
    assert [x["line"] for x in lines] == ["ba", "ab"] and [x["tokens"] for x in lines] == [1, 1]
    with pytest.raises(DataError):
        token_logprobs(model, np.array([2, 3]), width=2, context=0)


def test_stream_scoring_sees_all_the_text_before():
    """context=stream: chunked, state-carrying scoring equals one pass over the whole text."""
    from types import SimpleNamespace

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from lmjax.config import ModelConfig
    from lmjax.infer.score import stream_logprobs
    from lmjax.model.lm import LanguageModel
    from lmjax.train.step import Steps

    model = LanguageModel(11, ModelConfig(embed_size=6, hidden_size=12, num_layers=2),
                          rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(model)
    steps = Steps(graphdef, optax.sgd(0.1), last_only=False, dropout=False)
    loaded = SimpleNamespace(model=model, steps=steps, params=params)
    ids = np.asarray(jax.random.randint(jax.random.PRNGKey(3), (50,), 2, 11), np.int32)
    lp, ok = stream_logprobs(loaded, ids, start=5, chunk=8)  # 7 chunks, the last one padded
    logp = jax.nn.log_softmax(model(jnp.asarray(ids[None, :-1]))[:, 0], -1)  # (49, V)
    want = np.asarray(logp)[np.arange(49), ids[1:]][4:]
    assert lp.shape == (45,) and ok.shape == (45,)
    np.testing.assert_allclose(lp, want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(ok, want >= np.asarray(logp)[4:].max(axis=1) - 1e-6)


def test_stream_with_history_scores_every_char_of_the_text():
    """heldout_next_token(context=stream, history): the state runs through the history first;
    every char of the text is then scored from all the chars before it."""
    from types import SimpleNamespace

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from lmjax.config import ModelConfig
    from lmjax.data.vocab import Vocab
    from lmjax.infer.score import heldout_next_token
    from lmjax.model.lm import LanguageModel
    from lmjax.train.step import Steps

    vocab = Vocab.build([list("abcdefgh ")], "char")
    model = LanguageModel(len(vocab), ModelConfig(embed_size=6, hidden_size=12),
                          rngs=nnx.Rngs(params=1))
    graphdef, params = nnx.split(model)
    steps = Steps(graphdef, optax.sgd(0.1), last_only=False, dropout=False)
    loaded = SimpleNamespace(model=model, steps=steps, params=params, vocab=vocab, seq_len=4)
    history, text = "abc def gh" * 30, "bad cafe, fed"  # ',' is not in the vocabulary
    r = heldout_next_token(loaded, text, "stream", history)
    ids = vocab.encode(list(history + text))
    logp = np.asarray(jax.nn.log_softmax(model(jnp.asarray(ids[None, :-1]))[:, 0], -1))
    targets = np.arange(len(history), len(ids))  # every char of text, from all before it
    lp = logp[targets - 1, ids[targets]]
    known = ids[targets] != 1
    assert r["tokens"] == len(text) and r["unknown"] == 1  # ',' scored as <unk>
    assert r["log_prob"] == pytest.approx(float(lp.sum()), rel=1e-5)
    assert r["bits_per_char_in_vocab"] == pytest.approx(
        -float(lp[known].mean()) / np.log(2), rel=1e-5)
