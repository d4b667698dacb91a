"""Search spaces in Hydra's sweep syntax, turned into Optuna distributions.

==============================================  ==========================================
override                                        Optuna distribution
==============================================  ==========================================
``key=choice(a,b,c)`` or ``key=a,b,c``          categorical over the values
``key=range(1,9)`` / ``range(1,9,2)``           int 1..8 (Hydra's stop is exclusive), step
``key=interval(0.1,0.9)``                       float in [0.1, 0.9]
``key=tag(log,interval(1e-4,1e-2))``            float on a log scale
``key=tag(int,interval(16,512))``               int (``tag(int,log,interval(...))``: log int)
==============================================  ==========================================

Any other override (``train.epochs=3``) is passed to every trial unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from lmjax.errors import ConfigError


class SearchSpaceError(ConfigError):
    """A search-space override cannot be turned into an Optuna distribution."""


@dataclass(frozen=True)
class SearchSpace:
    """The searched keys (``distributions``, Optuna's) and the overrides every trial gets."""

    distributions: dict[str, Any] = field(default_factory=dict)  # key -> BaseDistribution
    fixed: tuple[str, ...] = ()
    prefixes: dict[str, str] = field(default_factory=dict)  # key -> "+" for keys added with +

    def describe(self) -> dict[str, str]:
        """A readable, stable form (kept in the study to notice a changed space on resume)."""
        return {k: _describe(d) for k, d in sorted(self.distributions.items())}

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """One trial's job overrides: the fixed ones, then ``key=value`` for each param."""
        return [*self.fixed, *(f"{self.prefixes.get(k, '')}{k}={_value(v)}"
                               for k, v in params.items())]

    def grid(self) -> dict[str, list[Any]]:
        """The values of every key, for Optuna's GridSampler (categorical and int keys only)."""
        import optuna.distributions as od

        out: dict[str, list[Any]] = {}
        for k, d in self.distributions.items():
            if isinstance(d, od.CategoricalDistribution):
                out[k] = list(d.choices)
            elif isinstance(d, od.IntDistribution) and not d.log:
                out[k] = list(range(d.low, d.high + 1, d.step))
            else:
                raise SearchSpaceError(
                    f"hydra.sweeper.sampler=grid needs a finite set of values, but {k} is "
                    f"{_describe(d)}: use choice(...) or range(...) for it, or sampler=tpe")
        return out


def parse_space(arguments: Iterable[str], params: Mapping[str, Any] | None = None) -> SearchSpace:
    """The search space of ``hydra.sweeper.params`` (a named search) and the command line's
    overrides (which win for the same key). Raises :class:`SearchSpaceError` with one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    parser = OverridesParser.create()
    dists: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for line in lines:
        try:
            (o,) = parser.parse_overrides([line])
        except OverrideParseException as e:
            raise SearchSpaceError(f"cannot read the override {line!r}: "
                                   f"{_first_line(e)}") from None
        key = o.key_or_group if o.package is None else o.get_key_element().lstrip("+~")
        for d in (dists, fixed, prefixes):
            d.pop(key, None)
        if not o.is_sweep_override():
            fixed[key] = line
            continue
        if o.is_add():
            prefixes[key] = "+"
        dists[key] = _distribution(key, o.value(), line)
    if not dists:
        raise SearchSpaceError(
            "nothing to search: give at least one key a range, e.g. "
            "'optim.lr=tag(log,interval(1e-4,1e-2))' or model.hidden_size=choice(64,128)")
    return SearchSpace(dists, tuple(fixed.values()), prefixes)


def _distribution(key: str, sweep: Any, line: str) -> Any:
    import optuna.distributions as od
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    if not isinstance(sweep, (ChoiceSweep, IntervalSweep, RangeSweep)):
        raise SearchSpaceError(f"{line}: {type(sweep).__name__.lower()}(...) cannot be "
                               f"searched; use choice(...), range(...) or interval(...)")
    tags = set(sweep.tags)
    unknown = tags - {"log", "int"}
    if unknown:
        raise SearchSpaceError(f"{line}: unknown tag {sorted(unknown)[0]!r}; the tags are "
                               f"log (a log scale) and int (whole numbers)")
    try:
        if isinstance(sweep, ChoiceSweep):
            if tags:
                raise SearchSpaceError(f"{line}: tag(log/int, ...) goes with interval(...), "
                                       f"not with a list of choices")
            choices = [_hashable(key, v, line) for v in sweep.list]
            if len(set(map(repr, choices))) != len(choices):
                raise SearchSpaceError(f"{line}: a value is listed twice")
            return od.CategoricalDistribution(choices)
        if isinstance(sweep, RangeSweep):
            start, stop, step = sweep.start, sweep.stop, sweep.step
            if not all(isinstance(x, int) for x in (start, stop, step)):
                raise SearchSpaceError(f"{line}: range(...) takes whole numbers; for floats use "
                                       f"interval(low,high)")
            if step <= 0 or stop <= start:
                raise SearchSpaceError(f"{line}: range(start,stop[,step]) needs start < stop "
                                       f"and step > 0 (stop is left out, as in Python)")
            high = start + (stop - 1 - start) // step * step
            return od.IntDistribution(start, high, step=step, log="log" in tags)
        if isinstance(sweep, IntervalSweep):
            low, high = sweep.start, sweep.end
            if low is None or high is None or not low < high:
                raise SearchSpaceError(f"{line}: interval(low,high) needs low < high")
            if "log" in tags and low <= 0:
                raise SearchSpaceError(f"{line}: a log scale needs low > 0")
            if "int" in tags:
                if low != int(low) or high != int(high):
                    raise SearchSpaceError(f"{line}: tag(int, ...) needs whole-number bounds")
                return od.IntDistribution(int(low), int(high), log="log" in tags)
            return od.FloatDistribution(float(low), float(high), log="log" in tags)
    except SearchSpaceError:
        raise
    except ValueError as e:  # Optuna's own checks
        raise SearchSpaceError(f"{line}: {_first_line(e)}") from None
    raise AssertionError(sweep)  # unreachable: every sweep type is handled above


def _hashable(key: str, v: Any, line: str) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise SearchSpaceError(f"{line}: choices must be single values (numbers, words, null), "
                           f"got {v!r}")


_PLAIN = re.compile(r"^[A-Za-z0-9_./:@-]+$")


def _value(v: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in ("null", "true", "false", "nan", "inf"):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _describe(d: Any) -> str:
    import optuna.distributions as od

    if isinstance(d, od.CategoricalDistribution):
        return "choice(" + ",".join(_value(c) for c in d.choices) + ")"
    kind = "int" if isinstance(d, od.IntDistribution) else "float"
    step = f" step {d.step}" if getattr(d, "step", None) not in (None, 1) else ""
    return f"{kind} [{d.low}, {d.high}]{' log' if d.log else ''}{step}"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def check_overrides(argv: list[str]) -> None:
    """Command-line overrides that Hydra's grammar cannot read (``'optim.lr=interval(1e-4'``)
    raise :class:`SearchSpaceError` with one line, before Hydra reports them over several."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as e:
            raise SearchSpaceError(f"cannot read the override {arg!r}: {_first_line(e)} (the "
                                   f"syntax: docs/search.md, 'Search spaces')") from None
