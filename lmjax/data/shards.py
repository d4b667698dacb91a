"""Sharded reading: each data-parallel device's slice of the corpus, read by its own process.

With ``data.shard=devices`` (the default ``auto`` picks it for multi-process jobs) a corpus of S
bytes is cut into D contiguous shards, one per device of the job's mesh, and every process reads
only the byte ranges of its own devices (plus up to :data:`LOOKAHEAD` bytes after each nominal
cut, to find the next line start). Processes agree on what they cannot see alone through small
all-gathers (:func:`lmjax.train.parallel.allgather_json`): token counts for the vocabulary, the
number of framed rows per shard, and a fingerprint of the text.

Cuts (byte offsets, so no process has to decode the text before its own range):

* splits: train = [0, a), valid = [a, b), test = [b, S) with a near S * (1 - valid_frac -
  test_frac) and b near S * (1 - test_frac), each moved to just after the next newline (the
  rule :func:`lmjax.data.corpus.split_text` applies to character offsets; for an ASCII file
  with ``\\n`` line ends the two give the same splits). ``split=none``: train = valid = [0, S).
* shards: range [lo, hi) is cut at lo + (hi - lo) * k / D, k = 1 .. D - 1, moved the same way,
  so every shard starts at a line start. Windows do not cross shard boundaries (D - 1 seams
  lose at most one window width each).

Shard k's train and valid text are the k-th slices of the train and valid splits; the test split
is not read by training. With ``data=files`` the splits are files: train = [0, S_train) of the
training file and valid = [0, S_valid) of the validation file (the training file's range when
there is none), each cut into shards the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from lmjax.config import DataConfig
from lmjax.data import corpus
from lmjax.errors import DataError

LOOKAHEAD = 2000  # bytes read past a nominal cut to find the next newline (as split_text does)
_BOM = b"\xef\xbb\xbf"


class ByteSource:
    """A corpus as bytes that can be read by range: a file (seek + read) or a built-in text."""

    def __init__(self, cfg: DataConfig, verify: bool = True, path: Path | None = None):
        """``path``: read this file (a ``data=files`` split) instead of the corpus of ``cfg``."""
        self.read_log: list[tuple[int, int]] = []  # every [lo, hi) actually read
        if path is not None or cfg.name == "file":
            self.path: Path | None = path or Path(cfg.path).expanduser()
            if not self.path.is_file():
                raise DataError(f"corpus file not found: {self.path}" if not self.path.exists()
                                else f"corpus path is not a file: {self.path}")
            self.name, self._mem = str(self.path), None
        elif cfg.name in corpus.BUILTINS:
            self.path, self.name = None, cfg.name
            self._mem = corpus.BUILTINS[cfg.name].encode("utf-8")
        elif cfg.name in corpus.REGISTRY:
            self.path, self.name, self._mem = corpus.resolve_named(cfg.name, cfg, verify), cfg.name, None
        else:
            corpus.load_text(cfg)  # raises the unknown-corpus error
            raise AssertionError(cfg.name)
        self.size = len(self._mem) if self._mem is not None else self.path.stat().st_size
        self.start = len(_BOM) if self.read(0, len(_BOM), log=False) == _BOM else 0

    def read(self, lo: int, hi: int, log: bool = True) -> bytes:
        lo, hi = max(0, lo), min(self.size, hi)
        if hi <= lo:
            return b""
        if log:
            self.read_log.append((lo, hi))
        if self._mem is not None:
            return self._mem[lo:hi]
        try:
            with open(self.path, "rb") as f:
                f.seek(lo)
                return f.read(hi - lo)
        except OSError as e:
            raise DataError(f"cannot read corpus file {self.path}: {e.strerror or e}") from None

    def cut(self, pos: int, hi: int) -> int:
        """``pos`` moved to just after the next newline within LOOKAHEAD bytes (else to the
        next character boundary); at most ``hi``."""
        if pos >= hi:
            return hi
        ahead = self.read(pos, min(pos + LOOKAHEAD, hi))
        nl = ahead.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        i = 0
        while i < len(ahead) and (ahead[i] & 0xC0) == 0x80:  # a UTF-8 continuation byte
            i += 1
        return pos + i


@dataclass
class ShardTexts:
    """What one process read: the train and valid text of each of its shards, in order."""

    shards: list[int]  # global shard ids (mesh positions of this process's devices)
    num_shards: int
    train: list[str]
    valid: list[str]
    train_ranges: list[tuple[int, int]]
    valid_ranges: list[tuple[int, int]]
    file_bytes: int
    bytes_read: list[tuple[int, int]] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)  # per shard, of its train + valid bytes
    # data=files with a validation file: its size and the ranges read from it (the fields
    # above then describe the training file)
    valid_file_bytes: int | None = None
    valid_bytes_read: list[tuple[int, int]] = field(default_factory=list)

    def report(self) -> dict:
        """For summary.json: which shards this process read and which bytes it touched
        (``data=files`` with a validation file: ``valid_file_bytes`` and ``valid_bytes_read``
        of that file too; ``bytes_read_total`` counts both files)."""
        merged, valid = _merge(self.bytes_read), _merge(self.valid_bytes_read)
        out = {"num_shards": self.num_shards, "shards": self.shards,
               "file_bytes": self.file_bytes, "bytes_read": merged,
               "bytes_read_total": sum(hi - lo for lo, hi in merged + valid),
               "train_ranges": [list(r) for r in self.train_ranges],
               "valid_ranges": [list(r) for r in self.valid_ranges]}
        if self.valid_file_bytes is not None:
            out.update(valid_file_bytes=self.valid_file_bytes, valid_bytes_read=valid)
        return out


def _merge(ranges: list[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def split_ranges(src: ByteSource, cfg: DataConfig) -> tuple[tuple[int, int], tuple[int, int]]:
    """Byte ranges of the train and valid splits (see the module docstring)."""
    lo, size = src.start, src.size
    if cfg.split == "none":
        return (lo, size), (lo, size)
    n = size - lo
    a = src.cut(lo + int(n * (1 - cfg.valid_frac - cfg.test_frac)), size)
    b = src.cut(lo + int(n * (1 - cfg.test_frac)), size) if cfg.test_frac > 0 else size
    return (lo, a), (a, max(a, b))


def shard_bounds(src: ByteSource, rng: tuple[int, int], num: int, k: int) -> tuple[int, int]:
    """[start, end) of shard k of ``num`` over the byte range ``rng``."""
    lo, hi = rng

    def at(j: int) -> int:
        if j <= 0:
            return lo
        if j >= num:
            return hi
        return src.cut(lo + (hi - lo) * j // num, hi)

    start, end = at(k), at(k + 1)
    return start, max(start, end)


def _decode(raw: bytes, cfg: DataConfig, where: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where} is not valid UTF-8 ({e.reason}); convert the corpus, "
                        f"e.g. iconv -t UTF-8") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.lower() if cfg.lowercase else text


def read_shards(cfg: DataConfig, shards: list[int], num_shards: int,
                verify: bool = True) -> ShardTexts:
    """The train and valid text of ``shards`` (global ids out of ``num_shards``), reading only
    their byte ranges of the corpus. ``verify``: check a registry corpus's sha256 (a streaming
    pass over the whole file; in a multi-process job only process 0 does it)."""
    if cfg.name == "files":
        paths = corpus.split_files(cfg)  # exists, not empty, test is not the training text
        src = ByteSource(cfg, path=paths["train"])
        vsrc = ByteSource(cfg, path=paths["valid"]) if "valid" in paths else src
        train_rng, valid_rng = (src.start, src.size), (vsrc.start, vsrc.size)
    else:
        src = vsrc = ByteSource(cfg, verify)
        if src.size - src.start == 0:
            raise DataError(f"corpus {src.name} is empty")
        train_rng, valid_rng = split_ranges(src, cfg)
    out = ShardTexts(list(shards), num_shards, [], [], [], [], src.size)
    for k in shards:
        t = shard_bounds(src, train_rng, num_shards, k)
        v = shard_bounds(vsrc, valid_rng, num_shards, k)
        raw_t = src.read(*t)
        raw_v = raw_t if (v == t and vsrc is src) else vsrc.read(*v)
        where = f"shard {k} of {num_shards} of corpus {src.name} (bytes {t[0]}..{t[1]})"
        out.train.append(_decode(raw_t, cfg, where))
        out.valid.append(_decode(raw_v, cfg, where if vsrc is src else
                                 f"shard {k} of {num_shards} of {vsrc.name} "
                                 f"(bytes {v[0]}..{v[1]})"))
        out.train_ranges.append(t)
        out.valid_ranges.append(v)
        out.sha256.append(hashlib.sha256(raw_t + b"\0" + raw_v).hexdigest())
    out.bytes_read = list(src.read_log)
    if vsrc is not src:
        out.valid_file_bytes, out.valid_bytes_read = vsrc.size, list(vsrc.read_log)
    return out
