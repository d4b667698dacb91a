"""One-line messages for config mistakes on the command line.

Hydra and OmegaConf report a misspelled key or a wrong type in several lines (the override, the
schema class, ``full_key``, ``reference_type``, ...). :func:`hydra_error_line` turns those errors
into the one line lmjax prints (``lmjax: error: ...``), naming the closest key of the schema
(:func:`did_you_mean`, difflib over the dotted keys of :class:`lmjax.config.Config`) and the type
a key expects.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import typing
from typing import Any

HELP_HINT = "python -m experiments.run --help lists the keys"


@functools.cache
def schema_types() -> dict[str, Any]:
    """Every dotted key of the schema -> its annotated type (``"model.hidden_size": int``)."""
    from lmjax.config import Config, eval_type

    out: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            t = eval_type(f.type) if isinstance(f.type, str) else f.type
            if dataclasses.is_dataclass(t):
                walk(t, f"{prefix}{f.name}.")
            else:
                out[f"{prefix}{f.name}"] = t
    walk(Config, "")
    return out


def schema_keys() -> frozenset[str]:
    return frozenset(schema_types())


def did_you_mean(key: str) -> str | None:
    """The schema key closest to ``key`` (a misspelling, a missing or wrong section), or None.

    The same last part under another section wins (``hidden_size`` -> ``model.hidden_size``);
    otherwise difflib's closest match of the whole dotted key, if it is close enough."""
    keys = sorted(schema_keys())
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k != key]
    if len(same_leaf) == 1:
        return same_leaf[0]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    return close[0] if close else None


def unknown_key_message(key: str) -> str:
    match = did_you_mean(key)
    hint = f"did you mean {match}?" if match else HELP_HINT
    return f"unknown config key {key}; {hint}"


def expected(key: str) -> str | None:
    """What a key takes, in words (``an integer``), from its schema type; None if unknown."""
    t = schema_types().get(key)
    if t is None:
        return None
    if typing.get_origin(t) is typing.Union:  # Optional[X]
        inner = [a for a in typing.get_args(t) if a is not type(None)]
        what = _words(inner[0]) if len(inner) == 1 else None
        return f"{what} or null" if what else None
    return _words(t)


def _words(t: Any) -> str | None:
    if typing.get_origin(t) in (list, typing.List):
        return "a list such as [a,b]"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(t)


def _first(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__


def hydra_error_line(e: BaseException) -> str:
    """One line for an error Hydra or OmegaConf raised while composing the config."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    msg, cause = str(e), e.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        m = re.search(r"override '([^']+)'", msg)
        key = m.group(1) if m else str(getattr(cause, "full_key", "") or "")
        if key:
            return unknown_key_message(key.lstrip("+~"))
    if isinstance(cause, ValidationError):
        key = str(getattr(cause, "full_key", "") or "")
        m = re.search(r"override (\S+)", msg)
        shown = m.group(1).lstrip("+~") if m else key
        what = expected(key)
        return f"{shown}: expected {what}" if what else f"{shown}: {_first(cause)}"
    m = re.search(r"An item is already at '([^']+)'", msg)
    if m:
        return f"{m.group(1)} is already in the config: drop the + ({m.group(1)}=...)"
    if isinstance(e, OverrideParseException):
        return f"cannot parse an override: {_first(e)} (quote values with spaces or brackets)"
    if isinstance(e, MissingConfigException):
        options = re.findall(r"^\t(\S+)$", msg, re.M)
        return _first(e) + (f"; choose one of {', '.join(options)}" if options else "")
    line = _first(e)
    if cause is not None and str(cause).strip():
        line += f": {_first(cause)}"
    return line
