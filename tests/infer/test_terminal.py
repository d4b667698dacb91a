"""The interactive suggest: prompt_toolkit's pipe input (in process) and a real pseudo-terminal."""

import asyncio
import math
import os
import re
import sys
import time

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from lmjax.infer.live import LiveKeyboard
from lmjax.infer.terminal import interact
from tests.conftest import REPO

QUOTE = "that which does not kill us makes us stronger."


def drive(kb, keys_and_waits):
    """Run :func:`interact` on a pipe; each item is keys to send, then wait until the menu
    shows (anew) the suggestions for ``expect`` (the text before the cursor), or None."""
    shown, lines = [], []

    async def main():
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            task = asyncio.create_task(interact(kb, on_suggest=shown.append,
                                                on_line=lines.append))
            for keys, expect in keys_and_waits:
                before = len(shown)
                inp.send_text(keys)
                t0 = time.monotonic()
                while expect is not None and not any(s.text == expect for s in shown[before:]):
                    assert time.monotonic() - t0 < 10, f"no suggestions shown for {expect!r}"
                    await asyncio.sleep(0.01)
            return await asyncio.wait_for(task, 10)

    tally = asyncio.run(main())
    return shown, lines, tally


def test_every_keystroke_shows_the_suggestions_of_the_text_so_far(tiny_loaded):
    kb = LiveKeyboard(tiny_loaded, n=3)
    typed = QUOTE[:12]  # "that which do"
    steps = [("", "")] + [(c, typed[:i + 1]) for i, c in enumerate(typed)]
    steps += [("\x7f", typed[:-1]), ("\x1b[D", typed[:-2])]  # backspace, cursor left
    steps += [("\x1b[C", typed[:-1]), ("\t", None), ("\r", None), ("\x04", None)]
    shown, lines, tally = drive(kb, steps)
    ref = LiveKeyboard(tiny_loaded, n=3)
    by_text = {s.text: [c.word for c in s.completions] for s in shown}
    for _, text in steps:
        if text is not None:
            assert by_text[text] == [c.word for c in ref.suggest(text).completions], text
    assert shown[0].kind == "next_word" and all(c.suffix == c.word for c in shown[0].completions)
    top = by_text[typed[:-1]][0]  # Tab accepted the first next word after "that which "
    assert lines == [typed[:-1] + top]
    assert (tally.typed, tally.saved) == (len(typed) + 1, len(top) - 1)  # Tab: 1 keystroke


def test_number_keys_accept_and_up_recalls_history(tiny_loaded):
    kb = LiveKeyboard(tiny_loaded, n=3)
    ref = [c.word for c in LiveKeyboard(tiny_loaded, n=3).suggest("jack and j").completions]
    shown, lines, _ = drive(kb, [("jack and j", "jack and j"), ("2", None), ("\r", ""),
                                 ("\x1b[A", "jack and " + ref[1]), ("\r", ""), ("\x03", None)])
    assert lines == ["jack and " + ref[1]] * 2  # Up brought the line back; Ctrl-C leaves



@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # pexpect execs at once
def test_suggest_in_a_pseudo_terminal(tiny_run, tiny_loaded):
    """The command itself on a pseudo-terminal: the numbered menu, Tab, Ctrl-D (exit 0)."""
    pexpect = pytest.importorskip("pexpect")
    ref = LiveKeyboard(tiny_loaded, n=3).suggest("jack and ji").completions
    child = pexpect.spawn(sys.executable, ["-m", "experiments.suggest", f"run={tiny_run}", "n=3"],
                          cwd=str(REPO), encoding="utf-8", timeout=90, dimensions=(24, 100),
                          env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"})
    try:
        child.expect("Ctrl-D leaves")
        child.send("jack and ji")
        for i, c in enumerate(ref):  # the menu under the cursor, numbered, with probabilities
            child.expect(f"{i + 1} {c.word} ")
            child.expect(re.escape(f"{100 * math.exp(c.log_prob):.1f}%"))
        child.send("\t")
        child.send("\r")
        child.sendcontrol("d")
        child.expect(f"keystrokes typed 12, saved {len(ref[0].suffix) - 1}")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
