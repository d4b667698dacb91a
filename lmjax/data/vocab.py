"""Tokenisation and vocabularies (word or char), saved as JSON.

Ids: 0 is padding, 1 the unknown token, real tokens from 2. Word tokens follow Keras'
``Tokenizer`` (punctuation stripped, split on whitespace, ids by descending frequency, ties in
order of first appearance); char vocabularies are sorted, as in the keyboard tutorial.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lmjax.errors import CheckpointError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
# Keras' Tokenizer default filters: these characters become word separators.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_FILTER_TABLE = str.maketrans({c: " " for c in KERAS_FILTERS})


def word_tokens(line: str) -> list[str]:
    """Keras-style words of one line: punctuation removed, split on whitespace."""
    return line.translate(_FILTER_TABLE).split()


def tokenize_lines(text: str, level: str) -> list[list[str]]:
    """Text -> lines of tokens. Word level drops empty lines; char level keeps each '\\n'."""
    if level == "word":
        lines = (word_tokens(line) for line in text.split("\n"))
        return [ws for ws in lines if ws]
    return [list(line) for line in text.splitlines(keepends=True)]


def token_counts(lines: Iterable[Sequence[str]]) -> dict[str, int]:
    """Token -> count, in order of first appearance."""
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(line)
    return dict(counts)


def merge_counts(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The counts of consecutive pieces of one text -> the counts of the whole text, in its
    order of first appearance (so a vocabulary built from shards equals the whole text's)."""
    out: dict[str, int] = {}
    for part in parts:
        for t, n in part.items():
            out[t] = out.get(t, 0) + n
    return out


@dataclass(frozen=True)
class Vocab:
    level: str  # "word" | "char"
    tokens: tuple[str, ...]  # id -> token; tokens[0] == PAD, tokens[1] == UNK

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, lines: Iterable[Sequence[str]], level: str) -> "Vocab":
        return cls.from_counts(token_counts(lines), level)

    @classmethod
    def from_counts(cls, counts: dict[str, int], level: str) -> "Vocab":
        """From token counts in order of first appearance (:func:`token_counts`,
        :func:`merge_counts`)."""
        if level == "char":
            ordered = sorted(counts)
        else:  # Counter keeps first-appearance order; sorted() is stable, so ties keep it too
            ordered = [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])]
        return cls(level, (PAD, UNK, *[t for t in ordered if t not in (PAD, UNK)]))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def num_types(self) -> int:
        """Real token types (padding and unknown excluded)."""
        return len(self.tokens) - 2

    def id(self, token: str) -> int:
        return self._index.get(token, UNK_ID)  # type: ignore[attr-defined]

    def __contains__(self, token: str) -> bool:
        return token in self._index  # type: ignore[attr-defined]

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        index = self._index  # type: ignore[attr-defined]
        return np.fromiter((index.get(t, UNK_ID) for t in tokens), dtype=np.int32,
                           count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def join(self, tokens: Sequence[str]) -> str:
        return ("" if self.level == "char" else " ").join(tokens)

    def tokenize(self, text: str) -> list[str]:
        """A prompt or a line typed by a user -> tokens at this vocabulary's level."""
        if self.level == "word":
            return word_tokens(text)
        return list(text)

    # --- persistence (JSON only) -------------------------------------------------------------
    def sha256(self) -> str:
        """A fingerprint of level and tokens (checkpoints record it to detect edited files)."""
        return hashlib.sha256(json.dumps([self.level, *self.tokens]).encode()).hexdigest()

    def to_json(self) -> dict:
        return {"format": "lmjax-vocab-1", "level": self.level, "tokens": list(self.tokens)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            ok = (d.get("format") == "lmjax-vocab-1" and d.get("level") in ("word", "char")
                  and d["tokens"][:2] == [PAD, UNK] and len(set(d["tokens"])) == len(d["tokens"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"cannot read vocabulary {path}: {e}") from None
        if not ok:
            raise CheckpointError(f"{path} is not a valid lmjax vocabulary file")
        return cls(d["level"], tuple(d["tokens"]))
