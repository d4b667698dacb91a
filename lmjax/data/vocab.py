"""Tokenisation and vocabularies (word or char), saved as JSON.

Ids: 0 is padding, 1 the unknown token, real tokens from 2. Word tokens come from one of two
tokenizers: ``keras`` follows Keras' ``Tokenizer`` (punctuation stripped, split on whitespace);
``whitespace`` splits on whitespace only (case and punctuation kept; an ``<unk>`` in the text is
the unknown token, id 1, like every word outside the vocabulary), optionally with an end-of-line
token ``<eos>`` after every line (``eos``). Word ids go by descending frequency, ties in order of
first appearance; char vocabularies are sorted, as in the keyboard tutorial.
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

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
PAD_ID, UNK_ID = 0, 1
TOKENIZERS = ("keras", "whitespace")
# Keras' Tokenizer default filters: these characters become word separators.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_FILTER_TABLE = str.maketrans({c: " " for c in KERAS_FILTERS})


def word_tokens(line: str) -> list[str]:
    """Keras-style words of one line: punctuation removed, split on whitespace."""
    return line.translate(_FILTER_TABLE).split()


def _lines(text: str) -> list[str]:
    """The lines of a text as a file reader sees them: split at '\\n', the last one counted
    only when it is not empty (a text ending in '\\n' has no extra empty line)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def tokenize_lines(text: str, level: str, tokenizer: str = "keras",
                   eos: bool = False) -> list[list[str]]:
    """Text -> lines of tokens. Char level keeps each '\\n'. Word level: ``keras`` or
    ``whitespace`` tokens per line; without ``eos`` empty lines are dropped, with it every line
    (an empty one too) ends in ``<eos>``."""
    if level != "word":
        return [list(line) for line in text.splitlines(keepends=True)]
    split = word_tokens if tokenizer == "keras" else str.split
    if eos:
        return [split(line) + [EOS] for line in _lines(text)]
    lines = (split(line) for line in text.split("\n"))
    return [ws for ws in lines if ws]


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
    tokenizer: str = "keras"  # word level: keras | whitespace
    eos: bool = False  # word level: "<eos>" ends every line

    @classmethod
    def build(cls, lines: Iterable[Sequence[str]], level: str, tokenizer: str = "keras",
              eos: bool = False) -> "Vocab":
        return cls.from_counts(token_counts(lines), level, tokenizer, eos)

    @classmethod
    def from_counts(cls, counts: dict[str, int], level: str, tokenizer: str = "keras",
                    eos: bool = False) -> "Vocab":
        """From token counts in order of first appearance (:func:`token_counts`,
        :func:`merge_counts`). A ``<pad>`` or ``<unk>`` in the text is not a new type (both
        are read as the unknown token)."""
        if level == "char":
            ordered = sorted(counts)
        else:  # Counter keeps first-appearance order; sorted() is stable, so ties keep it too
            ordered = [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])]
        tokens = (PAD, UNK, *[t for t in ordered if t not in (PAD, UNK)])
        if level != "word":
            return cls(level, tokens)
        return cls(level, tokens, tokenizer, eos)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def num_types(self) -> int:
        """Real token types (padding and unknown excluded)."""
        return len(self.tokens) - 2

    def __post_init__(self) -> None:
        index = {t: i for i, t in enumerate(self.tokens)}
        index[PAD] = UNK_ID  # a "<pad>" written in a text is an unknown word, never padding
        object.__setattr__(self, "_index", index)

    def id(self, token: str) -> int:
        return self._index.get(token, UNK_ID)  # type: ignore[attr-defined]

    def __contains__(self, token: str) -> bool:
        return token in self._index  # type: ignore[attr-defined]

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Tokens -> ids; a token outside the vocabulary (or ``<unk>`` itself) is UNK_ID."""
        index = self._index  # type: ignore[attr-defined]
        return np.fromiter((index.get(t, UNK_ID) for t in tokens), dtype=np.int32,
                           count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def join(self, tokens: Sequence[str]) -> str:
        return ("" if self.level == "char" else " ").join(tokens)

    def tokenize(self, text: str) -> list[str]:
        """A prompt or a line typed by a user -> tokens at this vocabulary's level. With
        ``eos``, each line break is ``<eos>`` (a prompt that does not end in one does not end
        in ``<eos>``: it is continued)."""
        if self.level != "word":
            return list(text)
        split = word_tokens if self.tokenizer == "keras" else str.split
        if not self.eos:
            return split(text)
        *done, last = text.split("\n")
        return [t for line in done for t in split(line) + [EOS]] + split(last)

    def tokenize_text(self, text: str) -> list[str]:
        """A text to score (a file, a split) -> one stream of tokens, exactly as training read
        it: with ``eos``, every line ends in ``<eos>``, the last one too."""
        if self.level != "word":
            return list(text)
        return [t for line in tokenize_lines(text, "word", self.tokenizer, self.eos)
                for t in line]

    def tokenize_lines(self, text: str) -> list[list[str]]:
        """:func:`tokenize_lines` with this vocabulary's level, tokenizer and ``eos``."""
        return tokenize_lines(text, self.level, self.tokenizer, self.eos)

    # --- persistence (JSON only) -------------------------------------------------------------
    def sha256(self) -> str:
        """A fingerprint of level, tokens and tokenizer (checkpoints record it to detect edited
        files; a keras vocabulary without ``eos`` keeps the fingerprint it always had)."""
        key = [self.level, *self.tokens]
        if (self.tokenizer, self.eos) != ("keras", False):
            key = [{"tokenizer": self.tokenizer, "eos": self.eos}, *key]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()

    def to_json(self) -> dict:
        d = {"format": "lmjax-vocab-1", "level": self.level, "tokens": list(self.tokens)}
        if self.level == "word":
            d.update(tokenizer=self.tokenizer, eos=self.eos)
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            ok = (d.get("format") == "lmjax-vocab-1" and d.get("level") in ("word", "char")
                  and d["tokens"][:2] == [PAD, UNK] and len(set(d["tokens"])) == len(d["tokens"])
                  and d.get("tokenizer", "keras") in TOKENIZERS
                  and d.get("eos", False) in (True, False))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"cannot read vocabulary {path}: {e}") from None
        if not ok:
            raise CheckpointError(f"{path} is not a valid lmjax vocabulary file")
        # files written before tokenizers existed have neither key: keras, no <eos>
        return cls(d["level"], tuple(d["tokens"]), d.get("tokenizer", "keras"),
                   bool(d.get("eos", False)))
