"""Suggestions as the user types: the LSTM state of the typed text, advanced one key at a time.

:class:`LiveKeyboard` serves the interactive ``suggest``, ``serve`` and ``suggest text=`` alike,
so all of them give the same completions for the same text. With ``context="stream"`` (the
default for char models) the whole typed text is the context: the keyboard keeps a *stack of
LSTM states*, one after each typed character, and :meth:`LiveKeyboard.suggest` compares the new
text with the one it holds, pops the states past their common prefix (backspace, a cursor moved
back, a history line recalled) and reads only the new characters. A keystroke therefore costs
one LSTM step plus the completion search, which starts from the state on top of the stack and
advances every live beam by one character per call (:class:`StreamScorer`), so nothing is
ever re-read. The stack holds ``2 x layers x hidden`` floats per character (2 KB for the 1 x 256
``keyboard_fast``), so 10,000 characters hold 20 MB.

Before the typed text the stream reads one line break (:data:`START`; a space, or the padding
token, when the vocabulary lacks it), so an empty text is "the start of a line" and is offered
the most likely first words, not word endings.

``context=N`` (``0``: the trained window, 40 characters for the keyboard) and word models use
the batch commands' window instead: each keystroke re-reads the last N tokens
(:func:`lmjax.infer.complete.complete`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmjax.data.vocab import PAD_ID, UNK_ID
from lmjax.errors import ConfigError
from lmjax.infer.complete import (METHODS, MIN_SUFFIX, Completion, beam_words, complete,
                                  partial_word, tutorial_words)
from lmjax.infer.score import STREAM

START = "\n"
READ_BUCKETS = (1, 16, 256)  # characters read per jitted call (padded up to one of these)
STEP_BUCKETS = (1, 4, 16, 64)  # states stepped together (live beams), padded up to one of these


def _bucket(n: int, buckets: tuple[int, ...]) -> int:
    return next(b for b in buckets if b >= n)


@dataclass(frozen=True)
class Suggestions:
    text: str  # the text as the model reads it (lowercased for a lowercased model)
    partial: str  # the partly typed word ("" right after a space or punctuation)
    completions: list[Completion]
    seconds: float  # time this call took

    @property
    def kind(self) -> str:
        """``completion`` of the partial word, or ``next_word`` when none is typed."""
        return "completion" if self.partial else "next_word"


class StreamSteps:
    """Jitted one-character LSTM steps of a loaded run, state in and state out.

    ``read``: a (T,) id sequence from one state -> the state and next-token log-probabilities
    after every one of them (T padded up to :data:`READ_BUCKETS`, the padded steps dropped);
    ``step``: B states advanced by one id each (B padded up to :data:`STEP_BUCKETS`), through
    the run's own ``steps.stream``.
    """

    def __init__(self, loaded):
        self.loaded = loaded
        graphdef = loaded.steps.graphdef

        def read(params, state, ids):  # (L, 2, 1, H), (T,) -> (T, L, 2, 1, H), (T, V)
            model = nnx.merge(graphdef, params)

            def body(st, i):
                logits, st = model.run(i[None, None], st)
                return st, (st, jax.nn.log_softmax(logits[0, 0].astype(jnp.float32)))

            _, out = jax.lax.scan(body, state, ids)
            return out

        self._read = jax.jit(read)
        self.zero = np.asarray(loaded.model.zero_state(1))

    def read(self, state: np.ndarray, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """States (T, L, 2, 1, H) and log-probabilities (T, V) after each of ``ids``."""
        states, logps = [], []
        for a in range(0, len(ids), READ_BUCKETS[-1]):
            chunk = ids[a:a + READ_BUCKETS[-1]]
            x = np.full(_bucket(len(chunk), READ_BUCKETS), PAD_ID, np.int32)
            x[:len(chunk)] = chunk
            s, lp = self._read(self.loaded.params, state, x)
            states.append(np.asarray(s)[:len(chunk)])
            logps.append(np.asarray(lp)[:len(chunk)])
            state = states[-1][-1]
        return np.concatenate(states), np.concatenate(logps)

    def step(self, states: list[np.ndarray], ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """B states (each (L, 2, 1, H)) advanced by ``ids`` (B,) -> ((B, V), (B, L, 2, 1, H))."""
        b = len(ids)
        width = _bucket(b, STEP_BUCKETS) if b <= STEP_BUCKETS[-1] else 1 << (b - 1).bit_length()
        st = np.concatenate(states + [states[0]] * (width - b), axis=2)  # (L, 2, width, H)
        x = np.full((width, 1), PAD_ID, np.int32)
        x[:b, 0] = ids
        logp, final, _ = self.loaded.steps.stream(self.loaded.params, st, x)
        final = np.asarray(final)
        return (np.asarray(logp)[0, :b],
                [final[:, :, i:i + 1] for i in range(b)])


class StreamScorer:
    """``next_logp`` for :func:`~lmjax.infer.complete.beam_words` and ``tutorial_words`` from
    the state after the typed text: each continuation's state is cached, and the continuations
    asked for next (each one character longer than a cached one) are stepped in one call."""

    def __init__(self, steps: StreamSteps, state: np.ndarray, logp: np.ndarray):
        self.steps = steps
        self.cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {(): (state, logp)}

    def _fill(self, seqs: list[tuple[int, ...]]) -> None:
        todo = sorted({s for s in seqs if s not in self.cache}, key=len)
        while todo:
            parents = [s[:-1] for s in todo]
            self._fill([p for p in parents if p not in self.cache])
            logps, states = self.steps.step([self.cache[p][0] for p in parents],
                                            [s[-1] for s in todo])
            for s, st, lp in zip(todo, states, logps):
                self.cache[s] = (st, lp)
            todo = []

    def __call__(self, seqs: list[list[int]]) -> np.ndarray:
        keys = [tuple(s) for s in seqs]
        self._fill(keys)
        return np.stack([self.cache[k][1] for k in keys])


@dataclass
class _Stack:
    """The LSTM states (and next-token log-probabilities) after each prefix of ``text``:
    ``states[i]`` follows ``text[:i]``."""
    text: str
    states: list[np.ndarray]
    logps: list[np.ndarray]

    def common(self, text: str) -> int:
        """The length of the common prefix of ``self.text`` and ``text``."""
        if text.startswith(self.text):  # typing on at the end: the common case
            return len(self.text)
        return next((i for i, (a, b) in enumerate(zip(self.text, text)) if a != b),
                    min(len(self.text), len(text)))


class LiveKeyboard:
    """The ``n`` suggestions for a text that changes a keystroke at a time (module docstring).

    ``context``: ``"stream"`` (char models only; the default) or a number of tokens for the
    batch commands' window (``0``: the trained one). ``stacks``: how many texts' state stacks
    are kept (several users of one server each continue their own). ``min_suffix``: the
    fewest characters a completion leaves to type (lmjax.infer.complete). Thread-safe (one call at
    a time).
    """

    def __init__(self, loaded, n: int = 5, method: str = "beam", beams: int = 0,
                 context: int | str = STREAM, max_len: int = 20, stacks: int = 32,
                 min_suffix: int = MIN_SUFFIX):
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if min_suffix < 0:
            raise ConfigError(f"min_suffix must be >= 0, got {min_suffix}")
        self.loaded, self.n, self.method, self.beams, self.max_len = (loaded, n, method, beams,
                                                                      max_len)
        self.min_suffix = min_suffix
        self.vocab = loaded.vocab
        self.lowercase = loaded.cfg.data.lowercase
        self.stream = context == STREAM and self.vocab.level == "char"
        self.width = loaded.seq_len if context in (STREAM, 0, None) else int(context)
        self._lock = threading.Lock()
        self.stacks = max(1, stacks)
        self._stacks: list[_Stack] = []  # most recently used last
        if self.stream:
            self.steps = StreamSteps(loaded)
            start = next((c for c in (START, " ") if c in self.vocab), None)
            ids = [self.vocab.id(start)] if start else [PAD_ID]
            s, lp = self.steps.read(self.steps.zero, ids)
            self._stacks.append(_Stack("", [s[-1]], [lp[-1]]))

    @property
    def text(self) -> str:
        """The text of the stack used last."""
        return self._stacks[-1].text if self.stream else ""

    def unknown(self, text: str) -> list[str]:
        """The characters (or complete words) of ``text`` that the model does not know."""
        text = text.lower() if self.lowercase else text
        if self.vocab.level == "word":  # the word being typed is not a word yet
            text = text[:len(text) - len(partial_word(text))]
        return sorted({t for t in self.vocab.tokenize(text) if t not in self.vocab})

    def _advance(self, text: str) -> _Stack:
        """The stack holding ``text``: the one sharing the longest prefix with it, extended
        in place when ``text`` continues it; else a new stack (the common part shared, the
        least recently used one dropped past ``stacks``) so other users' stacks stay."""
        keep, best = max((st.common(text), i) for i, st in enumerate(self._stacks))
        st = self._stacks.pop(best)
        if keep < len(st.text):
            fork = _Stack(text[:keep], st.states[:keep + 1], st.logps[:keep + 1])
            self._stacks.append(st)
            st = fork
            if len(self._stacks) >= self.stacks:
                self._stacks.pop(0)
        if len(text) > keep:
            ids = [int(i) for i in self.vocab.encode(list(text[keep:]))]
            s, lp = self.steps.read(st.states[-1], ids)
            st.states.extend(s)
            st.logps.extend(lp)
        st.text = text
        self._stacks.append(st)
        return st

    def suggest(self, text: str, method: str | None = None) -> Suggestions:
        """The suggestions for the end of ``text`` (unknown tokens read as ``<unk>``), by
        ``method`` (default: the keyboard's)."""
        t0 = time.perf_counter()
        method = method or self.method
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        text = text.lower() if self.lowercase else text
        partial = partial_word(text)
        with self._lock:
            if not self.stream:
                comps = complete(self.loaded.predict, self.vocab, text, self.n, self.width,
                                 method=method, beams=self.beams, max_len=self.max_len,
                                 warn=False, min_suffix=self.min_suffix)
            else:
                st = self._advance(text)
                scorer = StreamScorer(self.steps, st.states[-1], st.logps[-1])
                if method == "tutorial":
                    comps = tutorial_words(scorer, self.vocab, partial, self.n, self.max_len)
                else:
                    comps = beam_words(scorer, self.vocab, partial, self.n, self.beams,
                                       self.max_len, self.min_suffix)
        return Suggestions(text, partial, comps, time.perf_counter() - t0)

    def warm_up(self) -> None:
        """Compile every jitted shape a request can meet, so the first one is not slow."""
        if not self.stream:
            self.suggest("")
            return
        for t in READ_BUCKETS:
            self.steps.read(self.steps.zero, [UNK_ID] * t)
        beams = max(self.beams or max(2 * self.n, 8), self.n)
        for b in STEP_BUCKETS[:1 + sum(x < beams for x in STEP_BUCKETS)]:
            self.steps.step([self.steps.zero] * b, [UNK_ID] * b)
        self.suggest("")
