import numpy as np
import pytest

from lmjax.data.vocab import Vocab
from lmjax.infer.keyboard import _accept, simulate_chars, simulate_words
from tests.infer.test_complete import hand_model


def test_accept_takes_the_first_prefix_where_the_word_is_in_the_top_n():
    assert _accept([4, 2, 0], (1, 3, 5)) == {5: 0, 3: 1, 1: 2}
    assert _accept([None, 3], (1, 3, 5)) == {5: 1}


def test_word_keystroke_savings_hand_checked():
    # a fixed next-word distribution: the > then > they > a (> unk, pad)
    vocab = Vocab("word", ("<pad>", "<unk>", "the", "then", "they", "a"))
    logp = np.log(np.array([0.01, 0.02, 0.4, 0.3, 0.2, 0.07]))

    def predict(x):
        return np.tile(logp, (len(x), 1))

    r = simulate_words(predict, vocab, "then the they zebra", 2, (1, 3), progress=False)
    # then: rank 1 at every prefix -> n=3 accepts at j=0 (saves 3), n=1 never
    # the: rank 0 at j=0 -> saves 2 for both; they: rank 2 -> n=3 saves 3; zebra: unknown
    assert r["keystrokes_without_help"] == 4 + 3 + 4 + 5 + 3
    assert r["keystrokes_saved"] == {"1": 2, "3": 8}
    assert r["keystroke_savings"]["1"] == pytest.approx(2 / 19)
    assert r["keystroke_savings"]["3"] == pytest.approx(8 / 19)
    assert r["hit_rate"] == {"1": 0.25, "3": 0.75}
    assert r["next_word_hit_rate"] == {"1": 0.25, "3": 0.75}


def test_char_keystroke_savings_hand_checked():
    vocab, model = hand_model()
    # after ' ' the beam suggests ab (.288), b (.2), a (.18), ...; words "ab", "b", "ab", "ba"
    # "ab" is top-1 at j=0: accepted, saves 1. "b" has one letter: nothing to save.
    # "ba": at j=0 (after ' ') it ranks below ab, b, a, bb, ...; at j=1 is not offered
    r = simulate_chars(model, vocab, "ab b ab ba", 4, (1, 3), history=" ", progress=False)
    assert r["words"] == 4 and r["keystrokes_without_help"] == 10
    assert r["keystrokes_saved"] == {"1": 2, "3": 2}
    assert r["keystroke_savings"]["1"] == pytest.approx(0.2)
    assert r["hit_rate"]["3"] == pytest.approx(0.5)
    # max_words limits the text typed
    r = simulate_chars(model, vocab, "ab b ab ba", 4, (1,), max_words=1, history=" ",
                       progress=False)
    assert r["keystrokes_without_help"] == 2 and r["keystrokes_saved"] == {"1": 1}
