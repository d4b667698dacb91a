"""The interactive terminal keyboard: a prompt_toolkit line editor with live suggestions.

Every change of the text before the cursor (a key typed, backspace, a cursor move, a history
line recalled) asks the :class:`~lmjax.infer.live.LiveKeyboard` for its suggestions, shown as a
menu under the cursor, numbered, with their probabilities: completions of the word being typed,
or the next words after a space or punctuation (and at the start of an empty line).

Keys: Tab accepts the first suggestion, 1-9 the one with that number (Ctrl-Q then a digit types
the digit), Up/Down walk the history of entered lines (not the menu), Left/Right/Home/End and the
usual Emacs keys edit, Enter enters the line, Ctrl-D (on an empty line) or Ctrl-C leaves.
prompt_toolkit does the terminal work: key decoding, redrawing, history.
"""

from __future__ import annotations

import math
from typing import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.filters import emacs_insert_mode, vi_insert_mode
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.key_binding.bindings.named_commands import get_by_name

from lmjax.infer.live import LiveKeyboard, Suggestions


class LiveCompleter(Completer):
    """prompt_toolkit's view of the keyboard; keeps the last suggestions (for Tab and digits)
    and calls ``on_suggest(suggestions)`` after each (the tests watch it)."""

    def __init__(self, kb: LiveKeyboard, on_suggest: Callable[[Suggestions], None] | None = None):
        self.kb = kb
        self.on_suggest = on_suggest
        self.last: Suggestions | None = None
        self._raw = None

    def suggestions(self, text: str) -> Suggestions:
        if self.last is None or self._raw != text:
            self.last, self._raw = self.kb.suggest(text), text
            if self.on_suggest:
                self.on_suggest(self.last)
        return self.last

    def get_completions(self, document, complete_event):
        s = self.suggestions(document.text_before_cursor)
        for i, c in enumerate(s.completions):
            yield Completion(c.suffix, 0, display=f"{i + 1} {c.word}",
                             display_meta=f"{100 * math.exp(c.log_prob):.1f}%")


class Tally:
    """Keystrokes typed and saved in this session (an accepted word costs one keystroke)."""

    def __init__(self):
        self.typed = 0
        self.saved = 0

    def line(self) -> str:
        total = self.typed + self.saved
        share = f" ({100 * self.saved / total:.0f}% of {total})" if total else ""
        return f"keystrokes typed {self.typed}, saved {self.saved}{share}"


self_insert = get_by_name("self-insert")


def _bindings(completer: LiveCompleter, n: int, tally: Tally) -> KeyBindings:
    kb = KeyBindings()

    def accept(event, k: int) -> None:
        buf = event.current_buffer
        comps = completer.suggestions(buf.document.text_before_cursor).completions
        if k < len(comps):
            suffix = comps[k].suffix
            buf.insert_text(suffix)
            tally.typed += 1
            tally.saved += len(suffix) - 1

    @kb.add("tab")
    def _(event):
        accept(event, 0)

    for k in range(1, min(n, 9) + 1):
        kb.add(str(k))(lambda event, k=k: accept(event, k - 1))

    @kb.add("up")
    def _(event):
        event.current_buffer.history_backward()

    @kb.add("down")
    def _(event):
        event.current_buffer.history_forward()

    @kb.add("<any>", filter=emacs_insert_mode | vi_insert_mode)
    def _(event):  # a typed character: count it, then insert it as usual
        tally.typed += 1
        self_insert.call(event)

    return kb


def make_session(kb: LiveKeyboard, tally: Tally, input=None, output=None,
                 on_suggest=None) -> PromptSession:
    """A prompt session whose menu shows ``kb``'s suggestions, refreshed on every change."""
    completer = LiveCompleter(kb, on_suggest)
    session = PromptSession(completer=completer, complete_while_typing=True,
                            history=InMemoryHistory(), key_bindings=_bindings(completer, kb.n,
                                                                               tally),
                            input=input, output=output)
    buf = session.default_buffer

    def refresh(_):
        buf.start_completion(select_first=False)

    buf.on_text_changed += refresh
    buf.on_cursor_position_changed += refresh
    return session


async def interact(kb: LiveKeyboard, input=None, output=None, on_suggest=None,
                   on_line: Callable[[str], None] | None = None) -> Tally:
    """Read lines with live suggestions until Ctrl-D or Ctrl-C; returns the keystroke tally.
    ``on_line`` gets each entered line."""
    tally = Tally()
    session = make_session(kb, tally, input, output, on_suggest)
    while True:
        try:
            line = await session.prompt_async(
                "> ", pre_run=lambda: session.default_buffer.start_completion(
                    select_first=False))
        except (EOFError, KeyboardInterrupt):
            return tally
        if on_line:
            on_line(line)
