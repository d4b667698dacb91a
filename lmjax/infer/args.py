"""``key=value`` arguments for the inference commands (suggest, generate, score, keyboard_eval).

These commands only read a run dir, so they use this small parser instead of a Hydra main: no
output dir, no log files, nothing written anywhere (except keyboard_eval's two result files).
``--help`` prints the command's docstring and its keys.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from lmjax.errors import ConfigError


@dataclass(frozen=True)
class Arg:
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    required: bool = False


def ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.replace(" ", "").strip("[]()").split(",") if x)


def boolean(s: str) -> bool:
    if s.lower() in ("true", "1", "yes", "on"):
        return True
    if s.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(s)


def count(s: str) -> int:
    """A whole number >= 0 (the error names the type: "is not a valid count")."""
    n = int(s)
    if n < 0:
        raise ValueError(s)
    return n


# the keyboard commands' min_suffix (default: lmjax.infer.complete.MIN_SUFFIX; a test checks)
MIN_SUFFIX_ARG = Arg("min_suffix", count, 2, "suggest only completions that leave at least this "
                     "many characters to type (beam method, word models; 0: also the word as "
                     "typed)")


def usage(prog: str, doc: str, spec: Sequence[Arg]) -> str:
    lines = [doc.strip(), "", f"usage: python -m {prog} key=value ...", ""]
    for a in spec:
        default = "required" if a.required else f"default {a.default!r}"
        lines.append(f"  {a.name:<12} {a.help} ({default})")
    return "\n".join(lines)


def parse(prog: str, doc: str, spec: Sequence[Arg], argv: Sequence[str] | None = None) -> dict:
    """``key=value`` words -> {name: typed value}; ``--help`` prints the usage and exits 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage(prog, doc, spec))
        sys.exit(0)
    by_name = {a.name: a for a in spec}
    out = {a.name: a.default for a in spec}
    for word in argv:
        key, eq, value = word.partition("=")
        if not eq:
            raise ConfigError(f"expected key=value, got {word!r}; see python -m {prog} --help")
        if key not in by_name:
            raise ConfigError(f"unknown key {key!r}; {prog} takes {', '.join(by_name)}")
        try:
            out[key] = by_name[key].type(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a valid "
                              f"{getattr(by_name[key].type, '__name__', 'value')}") from None
    missing = [a.name for a in spec if a.required and out[a.name] in (None, "")]
    if missing:
        raise ConfigError(f"missing {', '.join(k + '=...' for k in missing)}; "
                          f"see python -m {prog} --help")
    return out


def setup() -> None:
    """JAX set-up shared with training, quiet logs, and warnings as one ``lmjax: warning:`` line."""
    from lmjax.cli import setup_jax

    setup_jax()
    for name in ("absl", "orbax"):
        logging.getLogger(name).setLevel(logging.ERROR)

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"lmjax: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
