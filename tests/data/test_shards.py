"""Sharded reading: byte-range shards cover the splits, read little else, and agree with the
whole-text vocabulary and framing."""

import numpy as np
import pytest

from lmjax.config import Config, DataConfig, FramingConfig
from lmjax.data.corpus import load_text, split_text
from lmjax.data.shards import LOOKAHEAD, read_shards
from lmjax.data.vocab import Vocab, merge_counts, token_counts, tokenize_lines
from lmjax.errors import ConfigError, DataError

LINES = ["The cat sat on the mat, said Ann.", "A dog met the cat; the dog ran off!",
         "Über café naïve — tea?", "and so on and on", ""]


@pytest.fixture
def corpus(tmp_path):
    text = "\n".join(LINES[i % len(LINES)] + f" line {i}" for i in range(400)) + "\n"
    p = tmp_path / "c.txt"
    p.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())  # BOM, CRLF, non-ASCII
    return p


def _cfg(path, **kw):
    return DataConfig(name="file", path=str(path), **kw)


@pytest.mark.parametrize("num", [1, 2, 3, 7])
def test_shards_partition_the_splits_at_line_starts(corpus, num):
    cfg = _cfg(corpus)
    got = [read_shards(cfg, [k], num) for k in range(num)]
    raw = corpus.read_bytes()
    for split in ("train", "valid"):
        ranges = [getattr(g, f"{split}_ranges")[0] for g in got]
        for (_, end), (start, _) in zip(ranges, ranges[1:]):
            assert end == start  # contiguous, no gap, no overlap
        for lo, _ in ranges[1:]:
            assert raw[lo - 1:lo] == b"\n"  # each shard starts at a line start
        joined = "".join(getattr(g, split)[0] for g in got)
        lo, hi = ranges[0][0], ranges[-1][1]
        assert joined == raw[lo:hi].decode().replace("\r\n", "\n").lower()
    assert got[0].train_ranges[0][0] == 3  # after the BOM
    assert got[-1].train_ranges[0][1] == got[0].valid_ranges[0][0]


def test_shard_reads_only_its_range(tmp_path):
    corpus = tmp_path / "big.txt"
    corpus.write_text("".join(f"{LINES[i % 4]} {i}\n" for i in range(8000)))
    size = corpus.stat().st_size
    shards = read_shards(_cfg(corpus), [1], 4)
    (t_lo, t_hi), (v_lo, v_hi) = shards.train_ranges[0], shards.valid_ranges[0]
    for lo, hi in shards.bytes_read:  # its shards, plus lookahead past nominal cut points
        inside = (t_lo <= lo and hi <= t_hi) or (v_lo <= lo and hi <= v_hi)
        assert inside or hi - lo <= LOOKAHEAD, (lo, hi)
    report = shards.report()
    # a quarter of train + valid, and 4 lookaheads (two cuts of its own, two split points)
    assert report["bytes_read_total"] <= (t_hi - t_lo) + (v_hi - v_lo) + 4 * LOOKAHEAD
    assert report["bytes_read_total"] < 0.3 * size
    assert report["file_bytes"] == size


def test_ascii_splits_match_the_character_splits(tmp_path):
    text = "".join(f"line {i} of the text\n" for i in range(2000))
    p = tmp_path / "a.txt"
    p.write_text(text)
    cfg = _cfg(p)
    one = read_shards(cfg, [0], 1)
    splits = split_text(load_text(cfg), cfg)
    assert one.train == [splits.train] and one.valid == [splits.valid]


@pytest.mark.parametrize("level", ["word", "char"])
def test_merged_shard_counts_give_the_whole_text_vocab(corpus, level):
    cfg = _cfg(corpus)
    num = 5
    parts = [read_shards(cfg, [k], num).train[0] for k in range(num)]
    whole = Vocab.build(tokenize_lines("".join(parts), level), level)
    merged = Vocab.from_counts(merge_counts(token_counts(tokenize_lines(t, level))
                                            for t in parts), level)
    assert merged.tokens == whole.tokens


def test_one_shard_prepares_what_the_whole_text_does(tmp_path):
    """One device: the sharded path frames exactly the samples the whole-text path does."""
    from lmjax.train.parallel import Placement, select_devices
    from lmjax.train.prepare import prepare_data, prepare_sharded

    p = tmp_path / "a.txt"
    p.write_text("".join(f"the cat {i % 7} sat on mat {i % 5}\n" for i in range(300)))
    for framing in (FramingConfig(name="line_by_line"),
                    FramingConfig(name="sequence", level="char", seq_len=12)):
        cfg = Config(data=DataConfig(name="file", path=str(p), shard="devices"), framing=framing)
        a, b = prepare_data(cfg), prepare_sharded(cfg, Placement(select_devices("1")))
        assert a.vocab.tokens == b.vocab.tokens
        for x, y in ((a.train, b.train), (a.valid, b.valid)):
            np.testing.assert_array_equal(x.inputs, y.inputs)
            np.testing.assert_array_equal(x.weights, y.weights)
        assert b.train_counts == [len(a.train)] and b.shards.report()["num_shards"] == 1


def test_sharded_epoch_plan_covers_each_shard_once():
    from lmjax.data.framings import Framed
    from lmjax.train.datasets import ShardedData
    from lmjax.train.parallel import Placement, select_devices

    def framed(n):
        a = np.arange(n * 3, dtype=np.int32).reshape(n, 3) % 11
        return Framed(a, a, np.ones((n, 3), np.float32))

    data = ShardedData(Placement(select_devices("1")), [framed(10)], [10])
    plan = data.epoch_order(4, seed=0, epoch=2)
    assert plan.shape == (3, 4)
    real = plan[plan != data.rows - 1]
    assert sorted(real.tolist()) == list(range(10))
    assert not np.array_equal(plan, data.epoch_order(4, seed=0, epoch=3))


def test_errors(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text("a b\n")
    cfg = Config(data=DataConfig(name="file", path=str(p), split="none", shard="devices"),
                 framing=FramingConfig(name="sequence", seq_len=8))
    from lmjax.train.parallel import Placement, select_devices
    from lmjax.train.prepare import prepare_sharded

    with pytest.raises(DataError, match="data shard 0 of 1 .*data.shard=none"):
        prepare_sharded(cfg, Placement(select_devices("1")))
    with pytest.raises(ConfigError, match="data.shard must be one of"):
        DataConfig(shard="hosts")
    with pytest.raises(DataError, match="corpus file not found"):
        read_shards(_cfg(tmp_path / "missing.txt"), [0], 1)
