"""Corpus -> vocabulary -> framed train/valid samples, whole (one reader) or sharded per device.

:func:`prepare_data` reads the whole corpus (every process, when there are several, reads it
all). :func:`prepare_sharded` (``data.shard=devices``) has each process read only its devices'
shards of the text (:mod:`lmjax.data.shards`) and agree with the others, through small
all-gathers, on the vocabulary (merged token counts: the same vocabulary the whole training text
gives), the framing width and each shard's sample count.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import jax

from lmjax.config import Config
from lmjax.data.corpus import load_text, split_text
from lmjax.data.framings import Framed, fit_width, frame
from lmjax.data.shards import ShardTexts, read_shards
from lmjax.data.vocab import Vocab, merge_counts, token_counts, tokenize_lines
from lmjax.errors import ConfigError, LmjaxError
from lmjax.train.parallel import Placement, agreed, allgather_json


@dataclass
class Prepared:
    vocab: Vocab
    train: Framed  # sharded: this process's shards, concatenated (shapes, samples)
    valid: Framed
    test_text: str
    corpus_types: int
    text_sha256: str = ""  # of the normalised corpus text (checkpoints record it)
    heldout_text: str = ""  # the valid split (the whole text with data.split=none)
    # data.shard=devices only: this process's shards, in mesh order, and every shard's size
    shards: ShardTexts | None = None
    train_parts: list[Framed] = field(default_factory=list)
    valid_parts: list[Framed] = field(default_factory=list)
    train_counts: list[int] = field(default_factory=list)
    valid_counts: list[int] = field(default_factory=list)

    @property
    def num_train(self) -> int:
        return sum(self.train_counts) if self.shards else len(self.train)

    @property
    def num_valid(self) -> int:
        return sum(self.valid_counts) if self.shards else len(self.valid)

    @property
    def heldout_texts(self) -> list[str]:
        """The held-out text in pieces that are scored separately and summed (one per local
        shard when sharded)."""
        if self.shards is None:
            return [self.heldout_text]
        return self.shards.train if self.valid_parts is self.train_parts else self.shards.valid


def prepare_data(cfg: Config) -> Prepared:
    """Corpus -> position split -> vocabulary (from the training text) -> framed train/valid."""
    level = cfg.framing.token_level
    text = load_text(cfg.data)
    splits = split_text(text, cfg.data)
    train_lines = tokenize_lines(splits.train, level)
    vocab = Vocab.build(train_lines, level)
    corpus_types = len({t for line in tokenize_lines(text, level) for t in line})
    train = frame([vocab.encode(x) for x in train_lines], cfg.framing, "training text")
    if cfg.data.split == "none":
        valid = train
    else:
        hint = " (raise data.valid_frac, or use data.split=none)"
        try:
            valid = frame([vocab.encode(x) for x in tokenize_lines(splits.valid, level)],
                          cfg.framing, "validation text", seq_len=train.seq_len)
        except LmjaxError as e:
            raise type(e)(str(e) + hint) from None
    return Prepared(vocab, train, valid, splits.test, corpus_types,
                    hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    splits.train if cfg.data.split == "none" else splits.valid)


def shard_mode(cfg: Config, place: Placement | None = None) -> bool:
    """True when this run reads the corpus per device shard (``data.shard``): ``auto`` picks it
    for a job of several processes whose mesh has devices of every process."""
    if cfg.data.shard == "auto":
        spans = place is not None and len({d.process_index for d in place.mesh.devices.flat}) \
            == jax.process_count()
        return jax.process_count() > 1 and cfg.train.parallel_seeds == 1 and spans
    return cfg.data.shard == "devices"


def prepare(cfg: Config, place: Placement) -> Prepared:
    return prepare_sharded(cfg, place) if shard_mode(cfg, place) else prepare_data(cfg)


def _read(cfg: Config, positions: list[int], num: int) -> ShardTexts:
    if not positions:
        raise ConfigError(f"data.shard=devices, but none of the {num} training device(s) "
                          f"belongs to process {jax.process_index()}; use train.devices=auto "
                          f"(or data.shard=none)")
    return read_shards(cfg.data, positions, num, jax.process_index() == 0)


def _gathered(local: list[Any], positions: list[int]) -> list[Any]:
    """Per-shard values of every process -> one list in shard (mesh) order."""
    pairs = [p for proc in allgather_json([[k, v] for k, v in zip(positions, local)])
             for p in proc]
    return [v for _, v in sorted(pairs, key=lambda kv: kv[0])]


def prepare_sharded(cfg: Config, place: Placement) -> Prepared:
    """This process's shards, framed, with a vocabulary and sizes agreed across processes."""
    if cfg.train.parallel_seeds > 1:
        raise ConfigError("train.parallel_seeds needs the whole corpus in one process: "
                          "set data.shard=none")
    positions, num = place.local_positions(), place.size
    level = cfg.framing.token_level
    texts = agreed(_read, cfg, positions, num)
    train_lines = [tokenize_lines(t, level) for t in texts.train]
    valid_lines = train_lines if cfg.data.split == "none" else [
        tokenize_lines(t, level) for t in texts.valid]
    counts = merge_counts(_gathered([token_counts(lines) for lines in train_lines], positions))
    vocab = Vocab.from_counts(counts, level)
    valid_types = _gathered([sorted({t for line in lines for t in line})
                             for lines in valid_lines], positions)
    corpus_types = len(set(counts).union(*map(set, valid_types)))
    fix = " (use fewer devices, a longer corpus, or data.shard=none)"

    def frame_all(lines_per_shard: list, what: str, width: int | None = None) -> list[Framed]:
        out = []
        for k, lines in zip(positions, lines_per_shard):
            try:
                out.append(frame([vocab.encode(x) for x in lines], cfg.framing,
                                 f"{what} of data shard {k} of {num}", seq_len=width))
            except LmjaxError as e:
                raise type(e)(str(e) + fix) from None
        return out

    train = agreed(frame_all, train_lines, "training text")
    width = max(_gathered([f.seq_len for f in train], positions))  # line_by_line: widest line
    train = [fit_width(f, width) if f.seq_len != width else f for f in train]
    valid = train if cfg.data.split == "none" else agreed(
        frame_all, valid_lines, "validation text", width)
    sha = _gathered(texts.sha256, positions)
    text_sha = hashlib.sha256(json.dumps(["lmjax-shards-1", num, sha]).encode()).hexdigest()

    def cat(parts: list[Framed]) -> Framed:
        import numpy as np
        return Framed(*(np.concatenate([getattr(f, a) for f in parts])
                        for a in ("inputs", "targets", "weights")))

    train_all = cat(train)
    return Prepared(vocab, train_all, train_all if valid is train else cat(valid), "",
                    corpus_types, text_sha, "", shards=texts, train_parts=train,
                    valid_parts=valid, train_counts=_gathered([len(f) for f in train], positions),
                    valid_counts=_gathered([len(f) for f in valid], positions))
