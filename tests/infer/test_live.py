"""The live keyboard: the stack of LSTM states gives the completions of reading from scratch."""

import numpy as np
import pytest

from lmjax.infer.complete import beam_words, complete, tutorial_words
from lmjax.infer.live import START, LiveKeyboard, StreamScorer, StreamSteps
from lmjax.infer.score import stream_logprobs

QUOTE = "that which does not kill us makes us stronger."


_STEPS = {}


def _steps(loaded):
    return _STEPS.setdefault(id(loaded), StreamSteps(loaded))


def fresh(loaded, text, method="beam", n=5):
    """Reference: the whole text read in one stream call from the zero state, then the
    completion search stepping each beam with the run's stream function."""
    v = loaded.vocab
    ids = [int(i) for i in v.encode(list(START + text))]
    state = loaded.model.zero_state(1)
    for i in ids:  # one shape: one compilation
        logp, state, _ = loaded.steps.stream(loaded.params, state, np.asarray([[i]], np.int32))
    scorer = StreamScorer(_steps(loaded), np.asarray(state), np.asarray(logp)[-1, 0])
    from lmjax.infer.complete import partial_word
    fn = beam_words if method == "beam" else tutorial_words
    return [c.word for c in fn(scorer, v, partial_word(text), n)]


def words(s):
    return [c.word for c in s.completions]


@pytest.mark.parametrize("method", ["beam", "tutorial"])
def test_typing_editing_and_jumping_equal_reading_from_scratch(tiny_loaded, method):
    kb = LiveKeyboard(tiny_loaded, method=method)
    edits = [QUOTE[:k] for k in range(0, 18)]  # typed one key at a time
    edits += [QUOTE[:15], QUOTE[:12] + "x", "jack and ji", QUOTE[:40], ""]  # backspace, jumps
    for text in edits:
        got = kb.suggest(text)
        assert kb.text == text and len(kb._stacks[-1].states) == len(text) + 1
        assert words(got) == fresh(tiny_loaded, text, method), text
    assert all(w.startswith("ji") for w in words(kb.suggest("jack and ji")))
    assert len(kb._stacks) <= 32


def test_each_user_continues_their_own_stack(tiny_loaded):
    kb = LiveKeyboard(tiny_loaded, stacks=3)
    texts = ["jack and jill", "that which does", "to fetch a pail"]
    for k in range(1, 16):  # three users typing in turns
        for t in texts:
            assert words(kb.suggest(t[:k])) == fresh(tiny_loaded, t[:k]), t[:k]
    assert sorted(st.text for st in kb._stacks) == sorted(texts)
    reads = []
    kb.steps.read = lambda *a, _r=kb.steps.read: reads.append(len(a[1])) or _r(*a)
    kb.suggest(texts[0] + " w")  # continues user 0's stack: reads two characters only
    assert reads == [2] and len(kb._stacks) == 3


def test_stream_state_gives_the_scorers_log_probabilities(tiny_loaded):
    kb = LiveKeyboard(tiny_loaded)
    kb.suggest(QUOTE)
    ids = tiny_loaded.vocab.encode(list(START + QUOTE))
    lp, _ = stream_logprobs(tiny_loaded, ids)  # log p(ids[i] | ids[:i]), i >= 1
    mine = np.array([kb._stacks[-1].logps[i][ids[i + 1]] for i in range(len(QUOTE))])
    np.testing.assert_allclose(mine, lp, atol=1e-5)


def test_window_context_is_the_batch_commands_completion(tiny_loaded):
    kb = LiveKeyboard(tiny_loaded, context=0, n=3)
    for text in ("jack and ji", QUOTE[:30], ""):
        ref = complete(tiny_loaded.predict, tiny_loaded.vocab, text, 3, tiny_loaded.seq_len,
                       warn=False)
        assert words(kb.suggest(text)) == [c.word for c in ref]


def test_empty_text_offers_whole_first_words(tiny_loaded):
    s = LiveKeyboard(tiny_loaded).suggest("")
    assert s.kind == "next_word" and s.partial == "" and len(s.completions) == 5
    assert all(c.suffix == c.word and c.word for c in s.completions)
    assert all(c.word.isalpha() for c in s.completions)
    ps = [np.exp(c.log_prob) for c in s.completions]
    assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1


def test_live_keystroke_savings(tiny_loaded):
    from lmjax.infer.keyboard import simulate_chars, simulate_live

    text, hist = "jack and jill went up the hill to fetch a pail", "jack fell down. "
    window = LiveKeyboard(tiny_loaded, n=3, context=0)
    got = simulate_live(window, text, (1, 3), history=hist, progress=False)
    assert got == simulate_chars(tiny_loaded.predict, tiny_loaded.vocab, text,
                                 tiny_loaded.seq_len, (1, 3), history=hist, progress=False)
    stream = simulate_live(LiveKeyboard(tiny_loaded, n=3), text, (1, 3), history=hist,
                           progress=False)
    assert stream["words"] == got["words"] == 11
    assert 0 < stream["keystroke_savings"]["1"] <= stream["keystroke_savings"]["3"] < 1


def test_keyboard_eval_stream_simulates_the_live_keyboard(tiny_loaded):
    from lmjax.infer.keyboard import keyboard_eval, simulate_live, split_texts

    r = keyboard_eval(tiny_loaded, "test", (1, 3), max_words=15, context="stream",
                      progress=False, write=False)
    text = split_texts(tiny_loaded.cfg)[0]["test"]
    ref = simulate_live(LiveKeyboard(tiny_loaded, n=3), text, (1, 3), 15, progress=False)
    assert r["context"] == "stream" and r["words"] == 15
    assert r["keystroke_savings"] == ref["keystroke_savings"] and r["hit_rate"] == ref["hit_rate"]
