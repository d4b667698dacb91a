"""Corpora: built-ins, the registry (download + sha256, no network: file:// URLs), splits, vocab."""

import hashlib

import numpy as np
import pytest

from lmjax.config import Config, DataConfig, FramingConfig
from lmjax.data import corpus
from lmjax.data.corpus import RegistryEntry, load_text, split_text
from lmjax.data.vocab import Vocab, tokenize_lines, word_tokens
from lmjax.errors import CheckpointError, DataError
from lmjax.train.loop import prepare_data

from ..conftest import need_shared


def test_builtin_rhyme_default():
    text = load_text(DataConfig())
    assert text.startswith("jack and jill went up the hill\n") and text.count("\n") == 4


def test_keras_style_words():
    assert word_tokens("Hello, world! It's -- fine.") == ["Hello", "world", "It's", "fine"]


def test_vocab_ids_by_frequency_then_first_appearance(tmp_path):
    v = Vocab.build([["b", "a", "c", "a"], ["c", "d"]], "word")
    assert v.tokens == ("<pad>", "<unk>", "a", "c", "b", "d")
    np.testing.assert_array_equal(v.encode(["a", "zzz", "d"]), [2, 1, 5])
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v
    (tmp_path / "bad.json").write_text('{"format": "nope"}')
    with pytest.raises(CheckpointError):
        Vocab.load(tmp_path / "bad.json")


def test_split_by_position_is_contiguous_and_on_line_breaks():
    text = "".join(f"line {i}\n" for i in range(1000))
    s = split_text(text, DataConfig(valid_frac=0.1, test_frac=0.2))
    assert s.train + s.valid + s.test == text
    assert s.train.endswith("\n") and s.valid.endswith("\n")
    assert abs(len(s.test) / len(text) - 0.2) < 0.01 and abs(len(s.valid) / len(text) - 0.1) < 0.01
    none = split_text(text, DataConfig(split="none"))
    assert none.train == none.valid == none.test == text


def _registry(monkeypatch, tmp_path, payload: bytes, sha: str | None = None):
    src = tmp_path / "remote.txt"
    src.write_bytes(payload)
    entry = RegistryEntry(src.as_uri(), sha or hashlib.sha256(payload).hexdigest(), len(payload))
    monkeypatch.setitem(corpus.REGISTRY, "tiny", entry)
    monkeypatch.setenv("LMJAX_DATA_DIR", str(tmp_path / "data"))


def test_registry_downloads_once_and_verifies(monkeypatch, tmp_path):
    _registry(monkeypatch, tmp_path, b"Some Text\nmore text\n")
    assert load_text(DataConfig(name="tiny")) == "some text\nmore text\n"
    assert (tmp_path / "data" / "tiny.txt").is_file()
    (tmp_path / "remote.txt").unlink()  # cached: no second download
    assert load_text(DataConfig(name="tiny", lowercase=False)) == "Some Text\nmore text\n"


def test_registry_rejects_a_wrong_checksum(monkeypatch, tmp_path):
    _registry(monkeypatch, tmp_path, b"tampered\n", sha="0" * 64)
    with pytest.raises(DataError, match="sha256"):
        load_text(DataConfig(name="tiny"))
    assert not list((tmp_path / "data").glob("*"))  # nothing partial left behind


def test_registry_unreachable_says_where_to_put_the_file(monkeypatch, tmp_path):
    monkeypatch.setitem(corpus.REGISTRY, "tiny", RegistryEntry(
        (tmp_path / "missing.txt").as_uri(), "0" * 64, 1))
    monkeypatch.setenv("LMJAX_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataError, match="could not be downloaded.*tiny.txt"):
        load_text(DataConfig(name="tiny"))


def test_keyboard_nietzsche_matches_the_tutorial_counts():
    need_shared("nietzsche")
    cfg = Config(data=DataConfig(name="nietzsche", split="none"),
                 framing=FramingConfig(name="char", level="char", seq_len=40, step=3))
    data = prepare_data(cfg)
    assert data.corpus_types == 57
    # The file is 600,893 bytes but 600,885 characters of UTF-8 (five accented letters take two
    # bytes). The tutorial's 200,285 windows = ceil((600,893 - 40) / 3) count bytes; over the
    # decoded characters there are ceil((600,885 - 40) / 3) = 200,282. (A byte-level reading
    # would give 200,285 windows but 59 symbols, not the tutorial's 57.)
    assert len(data.train) == 200282
    assert data.train.inputs.shape == (200282, 40)
    assert len(data.vocab) == 57 + 2
    # default: trains on the first 85% only
    split = prepare_data(Config(data=DataConfig(name="nietzsche"), framing=cfg.framing))
    assert len(split.train) < 0.86 * 200285


def test_char_tokens_keep_newlines():
    lines = tokenize_lines("ab\nc", "char")
    assert lines == [["a", "b", "\n"], ["c"]]
