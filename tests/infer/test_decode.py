import itertools

import numpy as np
import pytest

from lmjax.data.vocab import PAD_ID
from lmjax.errors import ConfigError
from lmjax.infer.decode import beam_search, decode, generate_text
from lmjax.infer.generate import fit_context, greedy
from tests.infer.toy import Bigram, char_vocab, random_bigram


def brute_force(model, prompt, length, v):
    seqs = []
    for seq in itertools.product(range(1, v), repeat=length):  # padding is never generated
        ctx, lp = list(prompt), 0.0
        for t in seq:
            lp += float(model(fit_context(ctx, 3)[None])[0, t])
            ctx.append(t)
        seqs.append((lp, seq))
    return sorted(seqs, key=lambda x: -x[0])


def test_exhaustive_beam_returns_the_exact_top_sequences():
    v = 5
    model = random_bigram(v, seed=3)
    exact = brute_force(model, [2], 3, v)
    got = beam_search(model, [2], 3, width=3, beams=len(exact))
    assert np.allclose([b.log_prob for b in got], [lp for lp, _ in exact], atol=1e-5)
    # a bigram gives equal products to some reorderings: compare up to float ties
    key = lambda lp, ids: (round(-lp, 4), ids)  # noqa: E731
    assert sorted(key(b.log_prob, b.ids) for b in got) == sorted(key(*e) for e in exact)
    assert len({b.ids for b in got}) == len(exact)
    # a beam of width k keeps the k best prefixes at every step; on this bigram the best
    # 4 of length 3 come out exactly
    top = beam_search(model, [2], 3, 3, beams=16)[:4]
    assert [b.log_prob for b in top] == pytest.approx([lp for lp, _ in exact[:4]], abs=1e-5)
    # each step is one predict call with all live beams batched
    model.calls.clear()
    beam_search(model, [2], 3, 3, beams=4)
    assert [len(c) for c in model.calls] == [1, 4, 4]


def test_beam_beats_greedy_on_a_hand_built_model():
    # ids: 0 pad, 1 unk, 2 'a', 3 'b', 4 'c'. From the start: a .6, b .4; after a: b/c .5 each;
    # after b: c .9. Greedy: a then b (.30); beam 2: b then c (.36).
    p = np.full((5, 5), 1e-9)
    p[0, 2], p[0, 3] = 0.6, 0.4
    p[2, 3], p[2, 4] = 0.5, 0.5
    p[3, 4], p[3, 2] = 0.9, 0.1
    p[4, 2] = 1.0
    model = Bigram(p)
    assert greedy(model, np.array([], np.int32), 2, 2) == [2, 3]
    best = beam_search(model, [], 2, 2, beams=2)
    assert best[0].ids == (3, 4) and best[0].log_prob == pytest.approx(np.log(0.36), abs=1e-5)
    assert best[1].ids in ((2, 3), (2, 4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_equals_beam_width_one(seed):
    model = random_bigram(6, seed=seed, zero_pad=False)
    for prompt in ([2], [3, 4, 5], []):
        g = decode(model, prompt, 7, 4, strategy="greedy")
        b = decode(model, prompt, 7, 4, strategy="beam", beams=1)
        assert g == b and PAD_ID not in g


def test_sampling_is_seeded_and_filtered():
    model = random_bigram(8, seed=4, zero_pad=False)
    a = decode(model, [2], 30, 3, strategy="sample", seed=5)
    assert a == decode(model, [2], 30, 3, strategy="sample", seed=5)
    assert a != decode(model, [2], 30, 3, strategy="sample", seed=6)
    assert PAD_ID not in a
    g = decode(model, [2], 10, 3, strategy="greedy")
    assert decode(model, [2], 10, 3, strategy="top_k", k=1, seed=1) == g
    assert decode(model, [2], 10, 3, strategy="top_p", p=1e-6, seed=1) == g
    # top_k=2: every token is one of the two most probable after the previous one
    out = decode(model, [2], 40, 3, strategy="top_k", k=2, seed=2)
    prev = 2
    for t in out:
        row = model.logp[prev].copy()
        row[PAD_ID] = -np.inf
        assert t in np.argsort(-row)[:2]
        prev = t
    with pytest.raises(ConfigError):
        decode(model, [2], 3, 3, strategy="nope")
    with pytest.raises(ConfigError):
        decode(model, [2], 3, 3, strategy="sample", temperature=0)


def test_unknown_prompt_tokens_warn_and_map_to_unk():
    vocab = char_vocab()
    model = random_bigram(len(vocab), seed=0)
    with pytest.warns(UserWarning, match="'z'"):
        out = generate_text(model, vocab, "az", 3, 4, strategy="beam", beams=2)
    assert out.startswith("az") and len(out) == 5
    assert model.calls[0][0].tolist() == [PAD_ID, PAD_ID, vocab.id("a"), 1]  # 1 = <unk>
    # longer prompts are truncated on the left to the trained window
    assert fit_context([2, 3, 4, 5, 2], 3).tolist() == [4, 5, 2]
