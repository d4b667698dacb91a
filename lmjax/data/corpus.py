"""Text sources: built-in rhymes, named corpora (downloaded once, verified by sha256), local files.

A corpus resolves to one normalised string; :func:`split_text` then cuts it into contiguous
train / valid / test blocks by position, so overlapping windows never leak across splits.
``data=files`` gives the splits as files instead (:func:`load_splits` reads either kind).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lmjax.config import DataConfig
from lmjax.errors import DataError

# The rhyme used by the word-level framing tutorial (four lines).
JACK_AND_JILL = (
    "Jack and Jill went up the hill\n"
    "To fetch a pail of water\n"
    "Jack fell down and broke his crown\n"
    "And Jill came tumbling after\n"
)

BUILTINS: dict[str, str] = {"jack_and_jill": JACK_AND_JILL}


@dataclass(frozen=True)
class RegistryEntry:
    url: str
    sha256: str
    chars: int  # length of the decoded text, for the docs and a sanity check


# sha256 of the exact bytes lmjax expects; a download that does not match is rejected.
REGISTRY: dict[str, RegistryEntry] = {
    "nietzsche": RegistryEntry(
        "https://s3.amazonaws.com/text-datasets/nietzsche.txt",
        "8f140bcac6986db4b7930f9573ec18a74e10ad6084e31a13303cc654025ec33b", 600_893),
    "tinyshakespeare": RegistryEntry(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1_115_394),
    "sherlock": RegistryEntry(
        "https://www.gutenberg.org/files/1661/1661-0.txt",
        "555827cde7cb926eb1e6afe3fd8ca58be44a31fb1b7efd0a6182f1d7649c1edc", 595_126),
}


def data_dir(cfg: DataConfig) -> Path:
    """Where named corpora live: data.data_dir, else $LMJAX_DATA_DIR, else ~/.cache/lmjax/data."""
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    if os.environ.get("LMJAX_DATA_DIR"):
        return Path(os.environ["LMJAX_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmjax" / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(name: str, entry: RegistryEntry, dest: Path) -> None:
    """Fetch to a temp file, verify, then move into place (never leaves a partial file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        got = _sha256(Path(tmp))
        if got != entry.sha256:
            raise DataError(f"download of {name!r} from {entry.url} has sha256 {got}, "
                            f"expected {entry.sha256}; not used")
        os.replace(tmp, dest)
    except OSError as e:
        raise DataError(f"corpus {name!r} is not in {dest.parent} and could not be downloaded "
                        f"from {entry.url} ({e}); put the file there as {dest.name} or set "
                        f"LMJAX_DATA_DIR") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_named(name: str, cfg: DataConfig, verify: bool = True) -> Path:
    """Path of a registry corpus, downloading and verifying it when it is not there yet
    (``verify=False`` skips re-hashing a file that is already there)."""
    entry = REGISTRY[name]
    path = data_dir(cfg) / f"{name}.txt"
    if not path.exists():
        _download(name, entry, path)
    if not verify:
        return path
    got = _sha256(path)
    if got != entry.sha256:
        raise DataError(f"{path} has sha256 {got}, expected {entry.sha256} for {name!r}; "
                        f"delete it to download a fresh copy")
    return path


def read_text_file(path: str | Path) -> str:
    """Read a UTF-8 text file, with one-line errors for the ways that goes wrong."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"corpus file not found: {p}")
    if not p.is_file():
        raise DataError(f"corpus path is not a file: {p}")
    try:
        raw = p.read_bytes()
    except OSError as e:  # permissions, a vanished file, an I/O error
        raise DataError(f"cannot read corpus file {p}: {e.strerror or e}") from None
    if b"\x00" in raw[:65536]:
        raise DataError(f"corpus file looks binary (NUL bytes): {p}; give a UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"corpus file is not valid UTF-8 ({e.reason} at byte {e.start}): {p}; "
                        f"convert it, e.g. iconv -t UTF-8") from None
    return text.removeprefix("\ufeff")


def normalise(text: str, cfg: DataConfig) -> str:
    """Line endings unified ('\\n'), lowercased with ``data.lowercase``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.lower() if cfg.lowercase else text


def load_text(cfg: DataConfig) -> str:
    """The normalised corpus text named by ``cfg`` (line endings unified, optional lowercase);
    with ``data=files``, the training file's."""
    if cfg.name == "files":
        return load_splits(cfg).train
    if cfg.name == "file":
        text = read_text_file(cfg.path)
        source = cfg.path
    elif cfg.name in BUILTINS:
        text, source = BUILTINS[cfg.name], cfg.name
    elif cfg.name in REGISTRY:
        text, source = read_text_file(resolve_named(cfg.name, cfg)), cfg.name
    else:
        known = ", ".join(sorted(BUILTINS) + sorted(REGISTRY))
        raise DataError(f"unknown corpus {cfg.name!r}; choose one of {known}, "
                        f"data=file data.path=PATH, or data=files data.train=PATH")
    text = normalise(text, cfg)
    if not text.strip():
        raise DataError(f"corpus {source} is empty")
    return text


@dataclass(frozen=True)
class Splits:
    train: str
    valid: str
    test: str


def split_files(cfg: DataConfig) -> dict[str, Path]:
    """``data=files``: the given split files by name (train first), checked: each exists, and
    the test file is neither the training file nor a copy of it."""
    paths = {k: Path(v).expanduser() for k, v in
             (("train", cfg.train), ("valid", cfg.valid), ("test", cfg.test)) if v}
    for k, p in paths.items():
        if not p.exists():
            raise DataError(f"data.{k} file not found: {p}")
        if not p.is_file():
            raise DataError(f"data.{k} is not a file: {p}")
        if p.stat().st_size == 0:
            raise DataError(f"data.{k} file is empty: {p}")
    if "test" in paths:
        train, test = paths["train"], paths["test"]
        if train.resolve() == test.resolve():
            raise DataError(f"data.test is the training file ({test}); give a held-out test "
                            f"file, or leave data.test out")
        if train.stat().st_size == test.stat().st_size and _sha256(train) == _sha256(test):
            raise DataError(f"data.test is the training text ({test} and {train} have the same "
                            f"content); give a held-out test file, or leave data.test out")
    return paths


def load_splits(cfg: DataConfig) -> Splits:
    """The train / valid / test texts: the split files of ``data=files`` (a missing valid or
    test is ""), else the corpus cut by :func:`split_text`."""
    if cfg.name != "files":
        return split_text(load_text(cfg), cfg)
    texts = {}
    for k, p in split_files(cfg).items():
        texts[k] = normalise(read_text_file(p), cfg)
        if not texts[k].strip():
            raise DataError(f"data.{k} file has no text (only whitespace): {p}")
    return Splits(texts["train"], texts.get("valid", ""), texts.get("test", ""))


def _cut(text: str, pos: int) -> int:
    """Move a cut position to just after the next newline (so no line is split), if near."""
    nl = text.find("\n", pos)
    return nl + 1 if 0 <= nl < pos + 2000 else pos


def split_text(text: str, cfg: DataConfig) -> Splits:
    """Contiguous blocks by position: train first, then valid, then test (the last part).

    With ``split=none`` the whole text is train, valid and test (the tutorials' setting).
    """
    if cfg.split == "none":
        return Splits(text, text, text)
    n = len(text)
    a = _cut(text, int(n * (1 - cfg.valid_frac - cfg.test_frac)))
    b = _cut(text, int(n * (1 - cfg.test_frac))) if cfg.test_frac > 0 else n
    b = max(a, b)
    return Splits(text[:a], text[a:b], text[b:])
