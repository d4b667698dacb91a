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
from lmjax.data.corpus import Splits, load_splits
from lmjax.data.framings import Framed, fit_width, frame
from lmjax.data.shards import ShardTexts, read_shards
from lmjax.data.vocab import UNK_ID, Vocab, merge_counts, token_counts, tokenize_lines
from lmjax.errors import ConfigError, LmjaxError
from lmjax.train.parallel import Placement, agreed, allgather_json


@dataclass
class Prepared:
    vocab: Vocab
    train: Framed  # sharded: this process's shards, concatenated (shapes, samples)
    valid: Framed
    test_text: str  # the test split ("" when there is none, or when sharded)
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
    def val_oov_rate(self) -> float:
        """The share of the validation samples' scored targets that are ``<unk>`` (this
        process's shards when sharded)."""
        w = self.valid.weights > 0
        return float((self.valid.targets[w] == UNK_ID).sum() / max(1, w.sum()))

    @property
    def heldout_texts(self) -> list[str]:
        """The held-out text in pieces that are scored separately and summed (one per local
        shard when sharded)."""
        if self.shards is None:
            return [self.heldout_text]
        return self.shards.train if self.valid_parts is self.train_parts else self.shards.valid


def tokenizer_of(cfg: Config) -> dict[str, Any]:
    """How this run splits text into tokens: level, tokenizer and eos (for tokenize_lines)."""
    level = cfg.framing.token_level
    if level != "word" and (cfg.data.eos or cfg.data.tokenizer != "keras"):
        raise ConfigError("data.tokenizer=whitespace and data.eos=true apply to word models "
                          "(data=files sets them); a char model keeps every character and line "
                          "break: add data.tokenizer=keras data.eos=false")
    return {"level": level, "tokenizer": cfg.data.tokenizer, "eos": cfg.data.eos}


def _text_sha256(cfg: Config, splits: Splits) -> str:
    """Of the normalised text training reads (data=files: train and valid files, else the
    corpus as before)."""
    if cfg.data.name == "files":
        text = json.dumps(["lmjax-files-1", splits.train, splits.valid])
    else:
        text = splits.train if cfg.data.split == "none" else splits.train + splits.valid + \
            splits.test
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepare_data(cfg: Config) -> Prepared:
    """Corpus -> splits (by position, or the split files) -> vocabulary (from the training
    text, or every split with ``data.vocab=all``) -> framed train/valid."""
    tok = tokenizer_of(cfg)
    splits = load_splits(cfg.data)
    lines = {k: tokenize_lines(getattr(splits, k), **tok) for k in ("train", "valid", "test")}
    if cfg.data.split == "none" and cfg.data.name != "files":
        lines["valid"] = lines["test"] = []  # all three are the whole text
    train_lines = lines["train"]
    vocab_lines = train_lines if cfg.data.vocab == "train" else [
        x for k in ("train", "valid", "test") for x in lines[k]]
    vocab = Vocab.build(vocab_lines, **tok)
    corpus_types = len({t for k in lines for line in lines[k] for t in line})
    train = frame([vocab.encode(x) for x in train_lines], cfg.framing, "training text")
    if cfg.data.valid_is_train:
        valid = train
    else:
        hint = ("" if cfg.data.name == "files"
                else " (raise data.valid_frac, or use data.split=none)")
        try:
            valid = frame([vocab.encode(x) for x in lines["valid"]],
                          cfg.framing, "validation text", seq_len=train.seq_len)
        except LmjaxError as e:
            raise type(e)(str(e) + hint) from None
    return Prepared(vocab, train, valid, splits.test, corpus_types, _text_sha256(cfg, splits),
                    splits.train if cfg.data.valid_is_train else splits.valid)


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
    if cfg.data.vocab == "all":
        raise ConfigError("data.vocab=all needs every split in one process: set "
                          "data.shard=none (or data.vocab=train)")
    positions, num = place.local_positions(), place.size
    tok = tokenizer_of(cfg)
    texts = agreed(_read, cfg, positions, num)
    train_lines = [tokenize_lines(t, **tok) for t in texts.train]
    valid_lines = train_lines if cfg.data.valid_is_train else [
        tokenize_lines(t, **tok) for t in texts.valid]
    counts = merge_counts(_gathered([token_counts(lines) for lines in train_lines], positions))
    vocab = Vocab.from_counts(counts, **tok)
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
    valid = train if cfg.data.valid_is_train else agreed(
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
