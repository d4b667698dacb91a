"""Split files (data=files) and tokenizers: the counts of PyTorch's word_language_model
``data.Corpus`` on a three-file corpus, unknown words, sharded reading of split files, errors."""

import json

import numpy as np
import pytest

from lmjax.config import Config, DataConfig, FramingConfig
from lmjax.data.corpus import load_splits
from lmjax.data.shards import LOOKAHEAD, read_shards
from lmjax.data.vocab import EOS, PAD_ID, UNK_ID, Vocab, tokenize_lines
from lmjax.errors import ConfigError, DataError
from lmjax.train.prepare import prepare_data

TRAIN = ("The cat sat on the mat .\n"
         " the dog , a <unk> , ran off !\n"
         "\n"  # an empty line: the reference reads it as one <eos>
         "The Cat and the dog met on the mat\n")
VALID = "the cat met a bird .\nthe <unk> sat\n"
TEST = "a dog ran on the mat , said Ann\nThe end"  # no final newline: still a line


def reference_corpus(paths):
    """PyTorch examples/word_language_model data.Corpus, in a few lines: every word of every
    file (each line split on whitespace, plus '<eos>') goes into one dictionary; each file
    becomes the ids of its words."""
    word2idx, out = {}, {}
    for name, path in paths.items():
        ids = []
        with open(path, "r", encoding="utf8") as f:
            for line in f:
                for word in line.split() + ["<eos>"]:
                    ids.append(word2idx.setdefault(word, len(word2idx)))
        out[name] = ids
    return word2idx, out


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, text in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text(text)
    return paths


def files_cfg(paths, framing=None, **kw):
    data = dict(name="files", train=str(paths["train"]), valid=str(paths.get("valid") or "")
                or None, test=str(paths.get("test") or "") or None, lowercase=False,
                tokenizer="whitespace", eos=True)
    data.update(kw)
    return Config(data=DataConfig(**data),
                  framing=framing or FramingConfig(name="sequence", seq_len=3))


def split_ids(prep, cfg):
    """Token ids of each split, as training reads them."""
    splits = load_splits(cfg.data)
    return {k: prep.vocab.encode(prep.vocab.tokenize_text(getattr(splits, k)))
            for k in ("train", "valid", "test")}


def test_vocab_all_matches_the_reference_corpus(files):
    cfg = files_cfg(files, vocab="all")
    prep = prepare_data(cfg)
    ref_dict, ref_ids = reference_corpus(files)
    ids = split_ids(prep, cfg)
    # the same types: lmjax adds only <pad> (id 0); the text's own <unk> is lmjax's <unk>
    assert "<unk>" in ref_dict
    assert len(prep.vocab) == len(ref_dict) + 1
    assert set(prep.vocab.tokens) == set(ref_dict) | {"<pad>"}
    for k in ("train", "valid", "test"):  # the same number of tokens in every split ...
        assert len(ids[k]) == len(ref_ids[k]), k
        # ... and the same tokens: the ids map one to one
        back = {i: w for w, i in ref_dict.items()}
        assert prep.vocab.decode(ids[k]) == [back[i] for i in ref_ids[k]]
    assert not np.any(ids["test"] == PAD_ID)
    assert prep.vocab.id("<unk>") == UNK_ID and prep.vocab.id(EOS) > UNK_ID


def test_vocab_train_maps_words_seen_only_in_valid_or_test_to_unk(files):
    cfg = files_cfg(files)  # data.vocab=train (the default)
    prep = prepare_data(cfg)
    ref_dict, ref_ids = reference_corpus({"train": files["train"]})
    assert len(prep.vocab) == len(ref_dict) + 1  # train's types, <unk> included, + <pad>
    ids = split_ids(prep, cfg)
    words = prep.vocab.tokenize_text(TEST)
    assert len(ids["test"]) == len(reference_corpus(files)[1]["test"])
    for w, i in zip(words, ids["test"]):
        assert (i == UNK_ID) == (w not in ref_dict), w  # "said", "Ann", "The end": unknown
    assert {w for w, i in zip(words, ids["test"]) if i == UNK_ID} == {"said", "Ann", "end"}
    assert prep.vocab.id("bird") == UNK_ID and "bird" not in prep.vocab
    # case and punctuation are tokens; the text's <unk> is the unknown id, not a new type
    assert {"The", "the", "Cat", ",", "!", "."} <= set(prep.vocab.tokens)
    assert prep.vocab.tokens.count("<unk>") == 1
    assert prep.corpus_types == len(reference_corpus(files)[0])


def test_keras_tokenizer_is_unchanged_and_eos_is_per_line():
    assert tokenize_lines("A b, c!\n\nd\n", "word") == [["A", "b", "c"], ["d"]]
    assert tokenize_lines("A b, c!\n\nd\n", "word", "whitespace", eos=True) == [
        ["A", "b,", "c!", EOS], [EOS], ["d", EOS]]
    assert tokenize_lines("x\ny", "word", "keras", eos=True) == [["x", EOS], ["y", EOS]]
    v = Vocab.build([["a", "b", EOS]], "word", "whitespace", True)
    assert v.tokenize("a b\nb") == ["a", "b", EOS, "b"]  # a prompt is continued: no final <eos>
    assert v.tokenize_text("a b\nb") == ["a", "b", EOS, "b", EOS]
    assert v.encode(["<pad>", "<unk>", "zzz"]).tolist() == [UNK_ID] * 3  # never padding


def test_vocab_json_round_trips_and_old_files_still_load(tmp_path):
    v = Vocab.build([["The", "cat", EOS]], "word", "whitespace", True)
    v.save(tmp_path / "v.json")
    back = Vocab.load(tmp_path / "v.json")
    assert back == v and back.tokenizer == "whitespace" and back.eos
    assert back.sha256() == v.sha256()
    old = {"format": "lmjax-vocab-1", "level": "word", "tokens": ["<pad>", "<unk>", "the"]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    o = Vocab.load(tmp_path / "old.json")
    assert o.tokenizer == "keras" and not o.eos and o.tokenize("The, end") == ["The", "end"]
    keras = Vocab("word", ("<pad>", "<unk>", "the"))
    # a keras vocabulary keeps the fingerprint it always had (old checkpoints match)
    assert o.sha256() == keras.sha256() == __import__("hashlib").sha256(
        json.dumps(["word", "<pad>", "<unk>", "the"]).encode()).hexdigest()
    assert Vocab("word", keras.tokens, "whitespace").sha256() != keras.sha256()


@pytest.mark.parametrize("framing", [
    FramingConfig(name="one_word"), FramingConfig(name="line_by_line"),
    FramingConfig(name="n_words", n_words=2, cross_lines=False),
    FramingConfig(name="sequence", seq_len=4), FramingConfig(name="char", level="char", seq_len=5),
    FramingConfig(name="sequence", level="char", seq_len=6, step=0, carry_state=True)])
def test_every_framing_reads_split_files(files, framing):
    char = framing.token_level == "char"
    kw = dict(tokenizer="keras", eos=False) if char else {}
    prep = prepare_data(files_cfg(files, framing, **kw))
    assert len(prep.train) and len(prep.valid) and prep.valid is not prep.train
    assert prep.test_text == TEST and prep.heldout_text == VALID
    no_valid = prepare_data(files_cfg({"train": files["train"]}, framing, **kw))
    assert no_valid.valid is no_valid.train and no_valid.test_text == ""


def test_split_file_errors(files, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n")
    copy = tmp_path / "copy.txt"
    copy.write_bytes(files["train"].read_bytes())
    cases = [({"test": tmp_path / "nope.txt"}, "data.test file not found"),
             ({"valid": empty}, "data.valid file is empty"),
             ({"train": blank}, "data.train file has no text"),
             ({"test": files["train"]}, "data.test is the training file"),
             ({"test": copy}, "data.test is the training text")]
    for change, msg in cases:
        with pytest.raises(DataError, match=msg):
            prepare_data(files_cfg({**files, **change}))
    with pytest.raises(ConfigError, match="data=files needs a training file"):
        DataConfig(name="files")
    with pytest.raises(ConfigError, match="need data=files"):
        DataConfig(name="file", path="x.txt", valid="v.txt")
    with pytest.raises(ConfigError, match="data.tokenizer"):
        DataConfig(tokenizer="bpe")
    with pytest.raises(ConfigError, match="data.vocab"):
        DataConfig(vocab="test")
    with pytest.raises(ConfigError, match="apply to word models"):
        prepare_data(files_cfg(files, FramingConfig(name="char", level="char", seq_len=5)))


def _big_files(tmp_path):
    paths = {}
    for name, n in (("train", 3000), ("valid", 800)):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text("".join(f"{name} line {i} , The cat {i % 13} .\n"
                                       for i in range(n)))
    return paths


@pytest.mark.parametrize("num", [1, 3])
def test_split_files_shard_like_a_single_file(tmp_path, num):
    paths = _big_files(tmp_path)
    cfg = files_cfg(paths).data
    got = [read_shards(cfg, [k], num) for k in range(num)]
    for split in ("train", "valid"):
        raw = paths[split].read_bytes()
        ranges = [getattr(g, f"{split}_ranges")[0] for g in got]
        assert ranges[0][0] == 0 and ranges[-1][1] == len(raw)
        for (_, end), (start, _) in zip(ranges, ranges[1:]):
            assert end == start and raw[start - 1:start] == b"\n"
        assert "".join(getattr(g, split)[0] for g in got) == raw.decode()
    # shard 1 of 3 reads its own ranges of each file (plus lookahead at the cuts), little else
    if num == 3:
        g = got[1]
        (t_lo, t_hi), (v_lo, v_hi) = g.train_ranges[0], g.valid_ranges[0]
        for lo, hi in g.bytes_read:
            assert (t_lo <= lo and hi <= t_hi) or hi - lo <= LOOKAHEAD
        for lo, hi in g.valid_bytes_read:
            assert (v_lo <= lo and hi <= v_hi) or hi - lo <= LOOKAHEAD
        r = g.report()
        assert r["valid_file_bytes"] == paths["valid"].stat().st_size
        assert r["bytes_read_total"] <= (t_hi - t_lo) + (v_hi - v_lo) + 4 * LOOKAHEAD
        assert r["bytes_read_total"] < 0.4 * (r["file_bytes"] + r["valid_file_bytes"])


def test_one_shard_of_split_files_prepares_what_the_whole_files_do(tmp_path):
    from lmjax.train.parallel import Placement, select_devices
    from lmjax.train.prepare import prepare_sharded

    paths = _big_files(tmp_path)
    for valid in (True, False):
        p = paths if valid else {"train": paths["train"]}
        cfg = files_cfg(p, FramingConfig(name="sequence", seq_len=7), shard="devices")
        a, b = prepare_data(cfg), prepare_sharded(cfg, Placement(select_devices("1")))
        assert a.vocab == b.vocab
        for x, y in ((a.train, b.train), (a.valid, b.valid)):
            np.testing.assert_array_equal(x.inputs, y.inputs)
            np.testing.assert_array_equal(x.targets, y.targets)
        assert (b.valid is b.train) == (not valid)
    with pytest.raises(ConfigError, match="data.vocab=all"):
        prepare_sharded(files_cfg(paths, shard="devices", vocab="all"),
                        Placement(select_devices("1")))


def test_heldout_word_metrics_count_unknown_targets_as_unk():
    """heldout_word_*: a target outside the vocabulary is scored as <unk> (its log-probability
    counts), its share is heldout_word_oov_rate; ..._in_vocab leaves it out, and says so."""
    import math

    from lmjax.train.heldout import heldout_word_metrics

    vocab = Vocab.build(tokenize_lines("a b c\n", "word"), "word")  # no "d"
    logp = np.log(np.asarray([1e-9, 0.1, 0.3, 0.3, 0.3 - 1e-9]))  # <pad> <unk> a b c

    def predict(x):
        return np.tile(logp, (len(x), 1))

    cfg = Config(framing=FramingConfig(name="one_word"))
    m = heldout_word_metrics(predict, cfg, vocab, "a b c\na b d\n", 1)
    # targets: b c b d -> b c b <unk>
    lps = [logp[3], logp[4], logp[3], logp[UNK_ID]]
    assert m["heldout_word_count"] == 4 and m["heldout_word_oov_rate"] == 0.25
    assert m["heldout_word_perplexity"] == pytest.approx(math.exp(-np.mean(lps)))
    assert m["heldout_word_perplexity_in_vocab"] == pytest.approx(math.exp(-np.mean(lps[:3])))
    assert m["heldout_word_accuracy"] == pytest.approx(2 / 4)  # b is top (tied with c): right


def test_score_a_test_file_as_one_stream(files, tmp_path, capsys):
    """``experiments.score file=test.txt context=stream`` after ``data=files`` training: the
    whole file is one stream, tokenized as training read it (whitespace + <eos>): every token
    after the first scored (the reference's count, less one), unknown words as <unk>, and the
    log-probability that of the model run over the whole file at once."""
    import dataclasses
    import re

    import jax
    import jax.numpy as jnp

    from experiments.score import main as score_main
    from lmjax.config import LoggerConfig, ModelConfig, SampleConfig, TrainConfig
    from lmjax.infer.load import load_run
    from lmjax.train.loop import run

    cfg = dataclasses.replace(
        files_cfg(files, FramingConfig(name="sequence", seq_len=4)),
        model=ModelConfig(embed_size=6, hidden_size=8), logger=LoggerConfig(name="none"),
        train=TrainConfig(epochs=1, batch_size=2, progress=False),
        sample=SampleConfig(prompts=["the"], length=1))
    run(cfg, tmp_path / "run")
    score_main([f"run={tmp_path / 'run'}", f"file={files['test']}", "context=stream"])
    out = capsys.readouterr().out
    got = dict(re.findall(r"(log_prob|tokens|unknown) (-?[\d.]+)", out))
    ref_dict, ref_ids = reference_corpus({"train": files["train"], "test": files["test"]})
    assert int(got["tokens"]) == len(ref_ids["test"]) - 1 == 12
    assert int(got["unknown"]) == 3 and "oov_rate 0.2500" in out  # said, Ann, end
    loaded = load_run(tmp_path / "run")
    ids = loaded.vocab.encode(loaded.vocab.tokenize_text(TEST))
    logits = loaded.model(jnp.asarray(ids[None, :-1]))  # (T, 1, V): the whole file at once
    logp = np.asarray(jax.nn.log_softmax(logits[:, 0], -1))
    want = float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
    assert float(got["log_prob"]) == pytest.approx(want, abs=2e-3)


def test_keyboard_eval_reads_the_split_files(files):
    from lmjax.infer.keyboard import split_texts

    texts, before = split_texts(files_cfg(files))
    assert texts == {"train": TRAIN, "valid": VALID, "test": TEST}
    assert before == {"valid": TRAIN, "test": TRAIN + VALID}
