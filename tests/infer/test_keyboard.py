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

    r = simulate_words(predict, vocab, "then the they zebra", 2, (1, 3), progress=False,
                       min_suffix=0)
    # then: rank 1 at every prefix -> n=3 accepts at j=0 (saves 3), n=1 never
    # the: rank 0 at j=0 -> saves 2 for both; they: rank 2 -> n=3 saves 3; zebra: unknown
    assert r["keystrokes_without_help"] == 4 + 3 + 4 + 5 + 3
    assert r["keystrokes_saved"] == {"1": 2, "3": 8}
    assert r["keystroke_savings"]["1"] == pytest.approx(2 / 19)
    assert r["keystroke_savings"]["3"] == pytest.approx(8 / 19)
    assert r["hit_rate"] == {"1": 0.25, "3": 0.75}
    assert r["next_word_hit_rate"] == {"1": 0.25, "3": 0.75}
    # the default (min_suffix=2) does not offer "the" after "th" (nothing left to save), so
    # "then" is top-1 there: n=1 accepts it at j=2 and saves 1 more
    r = simulate_words(predict, vocab, "then the they zebra", 2, (1, 3), progress=False)
    assert r["keystrokes_saved"] == {"1": 3, "3": 8}
    assert r["hit_rate"] == {"1": 0.5, "3": 0.75}


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


def test_slots_for_completions_that_save_nothing_only_lose_keystrokes():
    """A completion leaving < 2 characters to type is never accepted (the user accepts only
    while >= 2 remain), so giving its slot to the next word (min_suffix=2, the default) can
    only move the intended word up: savings and hit rates never fall, for every n."""
    from lmjax.infer.complete import complete
    from tests.infer.toy import char_vocab, random_bigram

    vocab = char_vocab(" .abc")
    model = random_bigram(len(vocab), seed=3)
    rng = np.random.default_rng(0)
    text = " ".join("".join(rng.choice(list("abc"), rng.integers(1, 5))) for _ in range(60))
    runs = {m: simulate_chars(model, vocab, text, 4, (1, 2, 3), history=" ", progress=False,
                              min_suffix=m) for m in (0, 1, 2)}
    for n in ("1", "2", "3"):
        assert runs[0]["keystrokes_saved"][n] <= runs[1]["keystrokes_saved"][n] \
            <= runs[2]["keystrokes_saved"][n]
        assert runs[0]["hit_rate"][n] <= runs[2]["hit_rate"][n]
    assert runs[2]["keystrokes_saved"]["1"] > runs[0]["keystrokes_saved"]["1"]  # it matters
    # and what the simulation counts is what the keyboard shows: no completion under 2
    assert all(len(c.suffix) >= 2 for c in complete(model, vocab, "ab a", 5, 4))


def test_word_simulation_ranks_as_the_keyboard_shows():
    """simulate_words' rank of a word at each prefix = its place in rank_words (what the word
    keyboard shows), for min_suffix 0 and 2."""
    from lmjax.infer.complete import rank_words

    vocab = Vocab("word", ("<pad>", "<unk>", "a", "an", "and", "ant", "the", "then", "they"))
    rng = np.random.default_rng(1)
    logp = np.log(rng.dirichlet(np.ones(len(vocab))))

    def predict(x):
        return np.tile(logp, (len(x), 1))

    text = "and then the ant they an"
    for m in (0, 2):
        r = simulate_words(predict, vocab, text, 2, (1, 2), progress=False, min_suffix=m)
        saved = {1: 0, 2: 0}
        for w in text.split():
            for n in (1, 2):
                j = next((j for j in range(len(w) - 1)
                          if w in [c.word for c in rank_words(logp, vocab, w[:j], n, m)]), None)
                saved[n] += 0 if j is None else len(w) - j - 1
        assert r["keystrokes_saved"] == {"1": saved[1], "2": saved[2]}
