import itertools

import numpy as np
import pytest

from lmjax.data.vocab import Vocab
from lmjax.errors import ConfigError
from lmjax.infer.complete import complete, partial_word, rank_words
from tests.infer.toy import Bigram, char_vocab, random_bigram


def hand_model():
    """chars ' ', 'a', 'b' (ids 2, 3, 4). After ' ': a .6, b .25, ' ' .15; after 'a': b .6,
    ' ' .3, a .1; after 'b': ' ' .8, a .1, b .1."""
    vocab = char_vocab(" ab")
    p = np.full((5, 5), 1e-12)
    p[2, 3], p[2, 4], p[2, 2] = 0.6, 0.25, 0.15
    p[3, 4], p[3, 2], p[3, 3] = 0.6, 0.3, 0.1
    p[4, 2], p[4, 3], p[4, 4] = 0.8, 0.1, 0.1
    p[:2] = p[2]
    return vocab, Bigram(p)


def test_tutorial_method_hand_checked():
    vocab, model = hand_model()
    # after a space: first chars a, b (separators are not offered), each continued greedily
    got = complete(model, vocab, "ab ", 3, 4, method="tutorial")
    assert [c.word for c in got] == ["ab", "b"]
    assert got[0].log_prob == pytest.approx(np.log(0.6 * 0.6 * 0.8), abs=1e-5)
    # inside a word: a separator first means the word is done as typed
    got = complete(model, vocab, "b a", 2, 4, method="tutorial")
    assert [(c.word, c.suffix) for c in got] == [("ab", "b"), ("a", "")]


def test_beam_completions_hand_checked():
    vocab, model = hand_model()
    got = complete(model, vocab, "ab ", 3, 4, method="beam", min_suffix=1)
    # P(ab) = .6*.6*.8 = .288, P(b) = .25*.8 = .2, P(a) = .6*.3 = .18
    assert [c.word for c in got] == ["ab", "b", "a"]
    assert np.exp([c.log_prob for c in got]) == pytest.approx([0.288, 0.2, 0.18], abs=1e-5)
    # by default one-letter words save no keystroke (accepting one is a keystroke): the next
    # words take their slots: P(abb) = .6*.6*.1*.8 = P(aab) = .6*.1*.6*.8 = .0288, then
    # P(bb) = .25*.1*.8 = .02
    got = complete(model, vocab, "ab ", 4, 4, method="beam")
    assert got[0].word == "ab" and {c.word for c in got[1:3]} == {"abb", "aab"}
    assert got[3].word == "bb"
    assert np.exp([c.log_prob for c in got]) == pytest.approx([0.288, 0.0288, 0.0288, 0.02],
                                                              abs=1e-5)


def test_beam_completions_are_the_exact_top_words():
    vocab = char_vocab(" .abc")  # word chars a b c; separators ' ' and '.'
    model = random_bigram(len(vocab), seed=7)
    lp = model.logp.astype(np.float64)
    sep = [vocab.id(" "), vocab.id(".")]
    words = []
    for k in range(1, 5):
        for w in itertools.product("abc", repeat=k):
            prev, total = vocab.id("b"), 0.0  # typed text ends with the partial word "b"
            for c in w:
                total += lp[prev, vocab.id(c)]
                prev = vocab.id(c)
            words.append((total + np.logaddexp.reduce(lp[prev, sep]), "b" + "".join(w)))
    words.append((np.logaddexp.reduce(lp[vocab.id("b"), sep]), "b"))
    words.sort(key=lambda x: -x[0])
    for min_suffix in (0, 1, 2):  # (3: two words of exactly equal probability in the top 6)
        top = [(x, w) for x, w in words if len(w) - 1 >= min_suffix][:6]
        got = complete(model, vocab, "a. b", 6, 8, method="beam", beams=500, max_len=4,
                       min_suffix=min_suffix)
        assert [c.word for c in got] == [w for _, w in top]
        assert [c.log_prob for c in got] == pytest.approx([x for x, _ in top], abs=1e-4)
        assert all(len(c.suffix) >= min_suffix for c in got)


def test_word_completions_rank_vocabulary_words_by_probability():
    vocab = Vocab("word", ("<pad>", "<unk>", "the", "then", "they", "a", "jack"))
    logp = np.log(np.array([0.01, 0.3, 0.1, 0.2, 0.05, 0.3, 0.04]))

    def predict(x):
        return np.tile(logp, (len(x), 1))

    with pytest.warns(UserWarning, match="'and'"):
        top = complete(predict, vocab, "jack and ", 3, 2, min_suffix=0)
    assert [c.word for c in top] == ["a", "then", "the"]
    got = complete(predict, vocab, "jack a th", 5, 2, min_suffix=0)
    assert [(c.word, c.suffix) for c in got] == [("then", "en"), ("the", "e"), ("they", "ey")]
    assert rank_words(logp, vocab, "x", 3) == []
    # by default only words leaving >= 2 letters to type: not "a", not "the" after "th"
    assert [c.word for c in complete(predict, vocab, "jack the ", 3, 2)] == ["then", "the",
                                                                           "they"]
    assert [c.word for c in complete(predict, vocab, "jack a th", 5, 2)] == ["then", "they"]
    assert [c.word for c in rank_words(logp, vocab, "the", 5, 1)] == ["then", "they"]


def test_partial_word_and_errors():
    assert partial_word("it's a do") == "do" and partial_word("hello, ") == ""
    assert partial_word("don't") == "don't"
    vocab, model = hand_model()
    with pytest.warns(UserWarning, match="'z'"):
        complete(model, vocab, "z a", 2, 4)
    with pytest.raises(ConfigError):
        complete(model, vocab, "a", 2, 4, method="nope")


def test_the_commands_default_min_suffix_is_the_keyboards():
    from lmjax.infer.args import MIN_SUFFIX_ARG
    from lmjax.infer.complete import MIN_SUFFIX

    assert MIN_SUFFIX_ARG.default == MIN_SUFFIX == 2
