"""How many keystrokes a predictive keyboard saves: a simulated user typing held-out text.

**The user.** The held-out text is typed from left to right. Before each keystroke inside a
word, the keyboard shows its top ``n`` completions of the word being typed
(:func:`lmjax.infer.complete.complete`, given all the text before); as soon as the intended word
is among them, the user accepts it with **one** keystroke, which inserts the rest of the word
(not the space or punctuation after it: those are typed as usual). The user accepts only when
that saves something, i.e. while at least two characters of the word remain to be typed. A word
is therefore offered at prefixes ``j = 0 .. len(word) - 2``; accepted at prefix ``j`` it costs
``j + 1`` keystrokes instead of ``len(word)``, saving ``len(word) - j - 1``. The keyboard
(beam method, word models) shows only completions that leave at least ``min_suffix`` (2)
characters to type, so no slot goes to one the user would never accept.

**Words and keystrokes.** Char models: a word is a maximal run of word characters (letters,
digits, apostrophes); the evaluated text runs from the first character of the first word to the
last character of word ``max_words``, and *keystrokes without help* = its length in characters
(words, spaces, punctuation and line breaks, one keystroke each). Word models: the words are
the vocabulary's tokens of the text (punctuation removed), typed separated by single spaces, so
keystrokes without help = sum of word lengths + (words - 1); a word outside the vocabulary is
never suggested.

**Reported**, for each ``n``: ``keystroke_savings`` = keystrokes saved / keystrokes without
help; ``hit_rate`` = words accepted from a suggestion / words; ``next_word_hit_rate`` = words
accepted before any of their characters was typed / words. The suggestions at a prefix do not
depend on ``n`` (the first ``n`` of the top ``max(ns)``), so one pass serves every ``n``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from lmjax.data.vocab import PAD_ID, UNK_ID, Vocab, tokenize_lines
from lmjax.errors import ConfigError
from lmjax.infer.complete import MIN_SUFFIX, complete, format_completions, prompt_completions
from lmjax.infer.generate import PredictFn, fit_context
from lmjax.infer.score import STREAM, heldout_next_token

_WORD = re.compile(r"(?:[^\W_]|')+")

# The predictive-keyboard tutorial's five quotes (its demo uses their first 40 characters).
TUTORIAL_QUOTES = (
    "It is not a lack of love, but a lack of friendship that makes unhappy marriages.",
    "That which does not kill us makes us stronger.",
    "I'm not upset that you lied to me, I'm upset that from now on I can't believe you.",
    "And those who were seen dancing were thought to be insane by those who could not hear the "
    "music.",
    "It is hard enough to remember my opinions, without also remembering my reasons for them!",
)


def _progress(total: int, enabled: bool, what: str = "keystrokes", unit: str = "words"):
    if not (enabled and sys.stderr.isatty()):
        return None
    return Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), refresh_per_second=4)


def _tally(words: Sequence[str], accepted: list[dict[int, int]], ns: Sequence[int],
           keystrokes: int) -> dict:
    """accepted[w][n] = the prefix length at which word w was accepted with top-n suggestions."""
    out: dict = {"words": len(words), "keystrokes_without_help": keystrokes,
                 "keystrokes_saved": {}, "keystroke_savings": {}, "hit_rate": {},
                 "next_word_hit_rate": {}}
    for n in ns:
        saved = sum(len(w) - acc[n] - 1 for w, acc in zip(words, accepted) if n in acc)
        hits = sum(n in acc for acc in accepted)
        first = sum(acc.get(n) == 0 for acc in accepted)
        out["keystrokes_saved"][str(n)] = int(saved)
        out["keystroke_savings"][str(n)] = saved / max(keystrokes, 1)
        out["hit_rate"][str(n)] = hits / max(len(words), 1)
        out["next_word_hit_rate"][str(n)] = first / max(len(words), 1)
    return out


def _accept(ranks: Iterable[int | None], ns: Sequence[int]) -> dict[int, int]:
    """ranks[j] = rank of the word among the suggestions at prefix j (None: not shown)."""
    acc: dict[int, int] = {}
    for j, r in enumerate(ranks):
        if r is None:
            continue
        for n in ns:
            if r < n and n not in acc:
                acc[n] = j
        if len(acc) == len(ns):
            break
    return acc


def simulate_chars(predict: PredictFn, vocab: Vocab, text: str, width: int,
                   ns: Sequence[int] = (1, 3, 5), method: str = "beam", max_words: int = 2000,
                   history: str = "", progress: bool = True, min_suffix: int = MIN_SUFFIX) -> dict:
    """Keystroke savings of a char model on ``text`` (see the module docstring).

    ``history`` (text before ``text``) only gives the first words their left context;
    ``min_suffix``: as in :func:`lmjax.infer.complete.complete`.
    """
    nmax = max(ns)

    def suggest(full: str, s: int, j: int) -> list[str]:  # the window before the cursor
        return [c.word for c in complete(predict, vocab, full[max(0, s - width):s + j], nmax,
                                         width, method=method, warn=False,
                                         min_suffix=min_suffix)]

    return _simulate(text, history[-width:], ns, max_words, progress, suggest)


def _simulate(text: str, hist: str, ns: Sequence[int], max_words: int, progress: bool,
              suggest: Callable[[str, int, int], list[str]]) -> dict:
    """Type each word of ``text`` (after ``hist``) and accept it once ``suggest(full, s, j)``
    (the suggestions with ``j`` letters of the word starting at ``full[s]`` typed) ranks it
    within n; the tally of :func:`_tally`."""
    matches = list(_WORD.finditer(text))[:max_words] if max_words else list(_WORD.finditer(text))
    if not matches:
        return _tally([], [], ns, 0)
    full, off = hist + text, len(hist)
    words, accepted = [], []
    bar = _progress(len(matches), progress)
    with bar or nullcontext():
        task = bar.add_task("k", total=len(matches)) if bar else None
        for m in matches:
            w, s = m.group(), m.start() + off

            def ranks():
                for j in range(len(w) - 1):
                    sugg = suggest(full, s, j)
                    yield sugg.index(w) if w in sugg else None

            words.append(w)
            accepted.append(_accept(ranks(), ns))
            if bar:
                bar.update(task, advance=1)
    keystrokes = matches[-1].end() - matches[0].start()
    return _tally(words, accepted, ns, keystrokes)


def simulate_live(kb, text: str, ns: Sequence[int] = (1, 3, 5), max_words: int = 2000,
                  history: str = "", progress: bool = True) -> dict:
    """:func:`simulate_chars` with a :class:`~lmjax.infer.live.LiveKeyboard` (``kb``, whose
    ``n`` must be at least ``max(ns)``): with ``context="stream"`` every suggestion sees all the
    text typed before it (after the last ``STREAM_WARMUP`` characters of ``history``), its
    LSTM state advanced one character at a time, exactly as the interactive keyboard."""
    from lmjax.infer.score import STREAM_WARMUP

    nmax = max(ns)
    if kb.n < nmax:
        raise ConfigError(f"the keyboard shows {kb.n} suggestions; need n >= {nmax}")

    def suggest(full: str, s: int, j: int) -> list[str]:  # the whole text before the cursor
        return [c.word for c in kb.suggest(full[:s + j]).completions[:nmax]]

    return _simulate(text, history[-STREAM_WARMUP:], ns, max_words, progress, suggest)


def simulate_words(predict: PredictFn, vocab: Vocab, text: str, width: int,
                   ns: Sequence[int] = (1, 3, 5), max_words: int = 2000, history: str = "",
                   batch_size: int = 256, progress: bool = True,
                   min_suffix: int = MIN_SUFFIX) -> dict:
    """Keystroke savings of a word model on ``text`` (see the module docstring). One prediction
    per word serves all its prefixes: the candidates are the vocabulary words with the prefix
    and at least ``min_suffix`` more characters, ranked by their probability after the words
    before (:func:`lmjax.infer.complete.rank_words`)."""
    hist = [t for line in tokenize_lines(history, "word") for t in line][-width:]
    words = [t for line in tokenize_lines(text, "word") for t in line]
    words = words[:max_words] if max_words else words
    if not words:
        return _tally([], [], ns, 0)
    ids = vocab.encode(hist + words)
    tokens = np.asarray(vocab.tokens, dtype=object)
    accepted = []
    bar = _progress(len(words), progress)
    with bar or nullcontext():
        task = bar.add_task("k", total=len(words)) if bar else None
        for b in range(0, len(words), batch_size):
            idx = range(len(hist) + b, len(hist) + min(b + batch_size, len(words)))
            x = np.stack([fit_context(ids[max(0, i - width):i], width) for i in idx])
            m = len(x)
            x = np.concatenate([x, np.full((batch_size - m, width), PAD_ID, np.int32)])
            logp = np.asarray(predict(x))[:m]
            for row, i in zip(logp, idx):
                t, w = int(ids[i]), words[i - len(hist)]
                if t == UNK_ID:
                    accepted.append({})
                    continue
                ahead = (row > row[t]) | ((row == row[t]) & (np.arange(len(row)) < t))
                ahead[[PAD_ID, UNK_ID]] = False
                better = tokens[ahead]
                accepted.append(_accept(
                    (sum(1 for u in better if u.startswith(w[:j]) and len(u) - j >= min_suffix)
                     for j in range(len(w) - 1)),
                    ns))
            if bar:
                bar.update(task, advance=m)
    keystrokes = sum(len(w) for w in words) + len(words) - 1
    return _tally(words, accepted, ns, keystrokes)


def split_texts(cfg) -> tuple[dict[str, str], dict[str, str]]:
    """The run's corpus cut as in training: {split: text}, {split: the text before it}."""
    from lmjax.data.corpus import load_splits

    sp = load_splits(cfg.data)  # data=files: the split files
    if cfg.data.split == "none" and cfg.data.name != "files":
        return {"train": sp.train, "valid": sp.valid, "test": sp.test}, {}
    return ({"train": sp.train, "valid": sp.valid, "test": sp.test},
            {"valid": sp.train, "test": sp.train + sp.valid})


def keyboard_eval(loaded, split: str = "test", ns: Sequence[int] = (1, 3, 5),
                  method: str = "beam", max_words: int = 2000, context: int | None = None,
                  progress: bool = True, write: bool = True, checkpoint: str = "latest",
                  min_suffix: int = MIN_SUFFIX) -> dict:
    """Held-out next-token metrics, keystroke savings and the tutorial's quote completions of a
    loaded run; writes ``keyboard_eval.json`` and ``completions.json`` in its run dir (for a
    ``checkpoint`` other than the latest: ``keyboard_eval_best.json``, ``..._step<N>.json``)."""
    texts, before = split_texts(loaded.cfg)
    if split not in texts:
        raise ConfigError(f"split must be one of train, valid, test; got {split!r}")
    if not ns or min(ns) < 1:
        raise ConfigError(f"n must list numbers >= 1, got {list(ns)}")
    text, history = texts[split], before.get(split, "")
    level = loaded.vocab.level
    t0 = time.perf_counter()
    bar = _progress(0, progress, "next token", "predictions")
    with bar or nullcontext():
        task = bar.add_task("n", total=None) if bar else None
        nt = heldout_next_token(loaded, text, context, history, progress=(
            (lambda done, total: bar.update(task, completed=done, total=total)) if bar else None))
    t1 = time.perf_counter()
    if level == "char" and context == STREAM:
        from lmjax.infer.live import LiveKeyboard

        kb = LiveKeyboard(loaded, n=max(ns), method=method, min_suffix=min_suffix)
        ks = simulate_live(kb, text, ns, max_words, history, progress)
    elif level == "char":
        ks = simulate_chars(loaded.predict, loaded.vocab, text, loaded.seq_len, ns, method,
                            max_words, history, progress, min_suffix)
    else:
        ks = simulate_words(loaded.predict, loaded.vocab, text, loaded.seq_len, ns, max_words,
                            history, progress=progress, min_suffix=min_suffix)
    t2 = time.perf_counter()
    prompts = list(loaded.cfg.sample.complete) or list(TUTORIAL_QUOTES)
    comps = prompt_completions(loaded.predict, loaded.vocab, prompts, loaded.seq_len,
                               lowercase=loaded.cfg.data.lowercase, min_suffix=min_suffix)
    metric = "bits_per_char" if level == "char" else "perplexity"
    result = {
        "split": split, "level": level, "context": context or loaded.seq_len,
        "checkpoint": checkpoint, "step": int(loaded.state.step),
        "next_token_accuracy": nt["next_token_accuracy"], metric: nt[metric],
        "tokens": nt["tokens"], "unknown_tokens": nt["unknown"],
        "oov_rate": nt["oov_rate"], f"{metric}_in_vocab": nt[f"{metric}_in_vocab"],
        "method": method if level == "char" else "words", "max_words": max_words,
        "min_suffix": min_suffix,
        **ks,
        "seconds": {"next_token": t1 - t0, "keystrokes": t2 - t1},
        "completions": comps,
    }
    if write:
        tag = output_tag(checkpoint, result["step"], context, min_suffix)
        _write(Path(loaded.run_dir) / f"keyboard_eval{tag}.json", result)
        _write(Path(loaded.run_dir) / f"completions{tag}.json", comps)
    return result


def output_tag(checkpoint: str, step: int, context: int | str | None = None,
               min_suffix: int = MIN_SUFFIX) -> str:
    """File-name suffix of keyboard_eval's outputs: none for the latest checkpoint, the
    trained context and the default ``min_suffix``; ``_best`` / ``_step<N>``, then ``_ctx<N>``
    / ``_stream``, then ``_min<N>``, otherwise."""
    tag = "" if checkpoint == "latest" else "_best" if checkpoint == "best" else f"_step{step}"
    if context:
        tag += "_stream" if context == "stream" else f"_ctx{context}"
    if min_suffix != MIN_SUFFIX:
        tag += f"_min{min_suffix}"
    return tag


def _write(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def format_report(r: dict) -> str:
    from lmjax.fmt import num

    metric = "bits_per_char" if "bits_per_char" in r else "perplexity"
    ns = list(r["keystroke_savings"])
    lines = [f"{r['split']}: next-token accuracy {num(r['next_token_accuracy'])}, {metric} "
             f"{num(r[metric])} ({r['tokens']} tokens, {r['seconds']['next_token']:.1f}s)",
             f"keystrokes ({r['words']} words, {r['keystrokes_without_help']} keystrokes without "
             f"help, {r['method']}, min_suffix {r.get('min_suffix', 0)}, "
             f"{r['seconds']['keystrokes']:.1f}s):"]
    lines += [f"  n={n}: savings {num(r['keystroke_savings'][n])}  hit rate "
              f"{num(r['hit_rate'][n])}  next-word hit rate {num(r['next_word_hit_rate'][n])}"
              for n in ns]
    return "\n".join(lines + format_completions(r["completions"]))
