"""The four inference commands end to end on tiny trained runs (a word and a char model)."""

import json
import subprocess
import sys
import warnings

import pytest

from lmjax.config import (Config, DataConfig, FramingConfig, LoggerConfig, ModelConfig,
                          OptimConfig, SampleConfig, TrainConfig)
from lmjax.train.loop import run
from tests.conftest import REPO

CHAR_TEXT = ("jack and jill went up the hill\nto fetch a pail of water\n"
             "jack fell down and broke his crown\nand jill came tumbling after\n") * 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("infer_runs")
    quiet = dict(logger=LoggerConfig(name="none"), optim=OptimConfig(name="adam", lr=1e-2))
    word = Config(data=DataConfig(split="none"), framing=FramingConfig(name="line_by_line"),
                  model=ModelConfig(embed_size=8, hidden_size=16),
                  train=TrainConfig(epochs=30, batch_size=8, progress=False),
                  sample=SampleConfig(prompts=["jack"], length=2), **quiet)
    (base / "corpus.txt").write_text(CHAR_TEXT)
    char = Config(data=DataConfig(name="file", path=str(base / "corpus.txt")),
                  framing=FramingConfig(name="char", level="char", seq_len=8, step=2),
                  model=ModelConfig(embed_size=0, hidden_size=24),
                  train=TrainConfig(epochs=3, batch_size=32, progress=False),
                  sample=SampleConfig(prompts=["jack"], length=4,
                                      complete=["Jack and Jill went up the hill"]), **quiet)
    from lmjax.infer.samples import run_samples

    run(word, base / "word", samples=run_samples)
    run(char, base / "char", samples=run_samples)
    return {"word": base / "word", "char": base / "char"}


def call(module, args, capsys, monkeypatch):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after
    mod = __import__(f"experiments.{module}", fromlist=["main"])
    code = 0
    try:
        mod.main(list(args))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_training_writes_the_quote_completions(runs):
    rows = json.loads((runs["char"] / "completions.json").read_text())
    assert rows[0]["prompt"] == "jack and jill went up the hill"
    assert len(rows[0]["beam"]) == 5 and len(rows[0]["tutorial"]) == 5
    assert all(w.startswith("hill") for w in rows[0]["beam"])


def test_suggest(runs, capsys, monkeypatch):
    code, out, _ = call("suggest", [f"run={runs['word']}", "text=jack and j", "n=3"], capsys,
                        monkeypatch)
    assert code == 0 and set(out.strip().split(" | ")) == {"jack", "jill"}  # the j... words
    code, out, _ = call("suggest", [f"run={runs['char']}", "text=jack and ji", "method=tutorial"],
                        capsys, monkeypatch)
    words = out.strip().split(" | ")
    assert code == 0 and len(words) == 5 and all(w.startswith("ji") for w in words)
    code, out, err = call("suggest", ["run=/nonexistent/run", "text=a"], capsys, monkeypatch)
    assert code == 2 and err.startswith("lmjax: error:") and len(err.splitlines()) == 1


def test_suggest_reads_stdin_lines(runs):
    p = subprocess.run([sys.executable, "-m", "experiments.suggest", f"run={runs['word']}",
                        "n=2"], input="jack and \njack and j\n", capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2 and lines[1] in ("'jack and j': jill | jack",
                                            "'jack and j': jack | jill")
    assert len(lines[0].split(": ", 1)[1].split(" | ")) == 2


def test_generate(runs, capsys, monkeypatch):
    args = [f"run={runs['word']}", "prompt=jack and", "length=3"]
    code, greedy, _ = call("generate", args, capsys, monkeypatch)
    code2, beam1, _ = call("generate", args + ["strategy=beam", "beams=1"], capsys, monkeypatch)
    assert code == code2 == 0 and greedy == beam1 and len(greedy.split()) == 5
    s1 = call("generate", args + ["strategy=top_p", "seed=3"], capsys, monkeypatch)[1]
    assert s1 == call("generate", args + ["strategy=top_p", "seed=3"], capsys, monkeypatch)[1]
    code, out, err = call("generate", [f"run={runs['char']}", "prompt=jack €", "length=5",
                                       "strategy=beam", "show=2"], capsys, monkeypatch)
    assert code == 0 and len(out.splitlines()) == 2 and "€" in err  # unknown char: a warning
    code, out, err = call("generate", [f"run={runs['word']}", "prompt=a", "strategy=nope"],
                          capsys, monkeypatch)
    assert code == 2 and "strategy" in err and len(err.splitlines()) == 1


def test_generate_without_prompt_and_several_samples(runs, capsys, monkeypatch):
    args = [f"run={runs['word']}", "length=4", "strategy=sample", "seed=5"]
    code, out, _ = call("generate", args + ["num_samples=3"], capsys, monkeypatch)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and all(len(x.split()) == 4 for x in lines)
    one = call("generate", args, capsys, monkeypatch)[1]  # sample 0 is the seed's own sample
    six = call("generate", args[:-1] + ["seed=6"], capsys, monkeypatch)[1]
    assert one.strip() == lines[0] and six.strip() == lines[1]
    code, out, _ = call("generate", [f"run={runs['char']}", "length=12", "strategy=top_k"],
                        capsys, monkeypatch)  # a char model starts after a line break
    assert code == 0 and len(out) == 12 + 1  # 12 generated characters, then print's newline
    code, _, err = call("generate", args[:1] + ["num_samples=2"], capsys, monkeypatch)
    assert code == 2 and "num_samples=2 needs a sampling strategy" in err


def test_score(runs, capsys, monkeypatch, tmp_path):
    code, out, _ = call("score", [f"run={runs['char']}", "text=jack and jill"], capsys,
                        monkeypatch)
    assert code == 0 and "tokens 12" in out and "bits_per_char" in out
    f = tmp_path / "lines.txt"
    f.write_text("jack and jill went up the hill\n\njill came tumbling after\n")
    code, out, _ = call("score", [f"run={runs['word']}", f"file={f}"], capsys, monkeypatch)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and "tokens 6" in lines[0] and "perplexity" in lines[0]
    assert lines[2].startswith("total (2 lines)") and "tokens 9" in lines[2]
    code, _, err = call("score", [f"run={runs['word']}"], capsys, monkeypatch)
    assert code == 2 and "text=" in err
    code, _, err = call("score", [f"run={runs['word']}", f"file={tmp_path}/missing.txt"],
                        capsys, monkeypatch)
    assert code == 2 and "not found" in err
    code, out, _ = call("score", [f"run={runs['char']}", "text=jack and jill", "context=stream"],
                        capsys, monkeypatch)
    assert code == 0 and "tokens 12" in out and "bits_per_char" in out
    code, out, _ = call("score", [f"run={runs['word']}", f"file={f}", "context=stream"], capsys,
                        monkeypatch)
    # the whole file as one stream: every token after the first, the state carried over lines
    assert code == 0 and len(out.splitlines()) == 1 and "(one stream)" in out
    assert "tokens 10" in out and "perplexity" in out
    code, _, err = call("score", [f"run={runs['char']}", "text=ab", "context=forever"], capsys,
                        monkeypatch)
    assert code == 2 and "context" in err and len(err.splitlines()) == 1


def test_keyboard_eval(runs, capsys, monkeypatch):
    before = sorted(p.name for p in runs["char"].iterdir())
    code, out, _ = call("keyboard_eval", [f"run={runs['char']}", "split=test", "n=1,3",
                                          "max_words=20"], capsys, monkeypatch)
    assert code == 0 and "n=3: savings" in out
    r = json.loads((runs["char"] / "keyboard_eval.json").read_text())
    assert r["split"] == "test" and set(r["keystroke_savings"]) == {"1", "3"}
    assert 0 < r["next_token_accuracy"] <= 1 and r["bits_per_char"] > 0 and r["words"] == 20
    assert r["keystroke_savings"]["1"] <= r["keystroke_savings"]["3"]
    assert sorted(set(before) | {"keyboard_eval.json"}) == sorted(
        p.name for p in runs["char"].iterdir())  # nothing else written
    # min_suffix=0 (the word as typed may take a slot) is kept apart, and never saves more
    code, out, _ = call("keyboard_eval", [f"run={runs['char']}", "split=test", "n=1,3",
                                          "max_words=20", "min_suffix=0"], capsys, monkeypatch)
    r0 = json.loads((runs["char"] / "keyboard_eval_min0.json").read_text())
    assert code == 0 and "min_suffix 0" in out and r0["min_suffix"] == 0
    assert r["min_suffix"] == 2 and r0["keystrokes_saved"]["3"] <= r["keystrokes_saved"]["3"]
    code, _, _ = call("keyboard_eval", [f"run={runs['word']}", "max_words=10"], capsys,
                      monkeypatch)
    r = json.loads((runs["word"] / "keyboard_eval.json").read_text())
    assert code == 0 and "perplexity" in r and r["hit_rate"]["5"] >= r["hit_rate"]["1"]
    code, _, err = call("keyboard_eval", ["run=/nonexistent/run"], capsys, monkeypatch)
    assert code == 2 and err.startswith("lmjax: error:")
    code, _, err = call("keyboard_eval", [f"run={runs['word']}", "split=dev"], capsys,
                        monkeypatch)
    assert code == 2 and "split" in err


class _Bar:
    """Stands in for rich's Progress (shown on a terminal only): records the updates."""

    def __init__(self, what, seen):
        self.what, self.seen = what, seen

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, task, advance=None, completed=None, total=None):
        self.seen.append((self.what, completed, total))


@pytest.mark.parametrize("context", [None, "stream"])
def test_keyboard_eval_shows_next_token_progress(runs, monkeypatch, context):
    from lmjax.infer import keyboard
    from lmjax.infer.load import load_run

    seen = []
    monkeypatch.setattr(keyboard, "_progress", lambda total, enabled, what="keystrokes",
                        unit="words": _Bar(what, seen) if enabled else None)
    r = keyboard.keyboard_eval(load_run(runs["char"]), "test", (1,), "tutorial", 3,
                               context=context, write=False)
    nt = [(done, total) for what, done, total in seen if what == "next token"]
    assert len(nt) >= 1 and nt[-1][0] == nt[-1][1] >= r["tokens"]  # ends at its total
    assert [d for d, _ in nt] == sorted(d for d, _ in nt)
    seen.clear()
    keyboard.keyboard_eval(load_run(runs["char"]), "test", (1,), "tutorial", 3, progress=False,
                           write=False)
    assert seen == []


def test_cli_missing_run_dir_is_one_line():
    p = subprocess.run([sys.executable, "-m", "experiments.score", "run=/nonexistent/run",
                        "text=a"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "/nonexistent/run does not exist" in p.stderr


@pytest.mark.parametrize("module,extra", [("suggest", ["text=a"]), ("generate", ["prompt=a"]),
                                          ("score", ["text=a"]), ("keyboard_eval", [])])
def test_missing_or_wrong_run_dir_says_which(module, extra, tmp_path, capsys, monkeypatch):
    code, _, err = call(module, [f"run={tmp_path / 'nope'}", *extra], capsys, monkeypatch)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"lmjax: error: {tmp_path / 'nope'} does not exist")
    code, _, err = call(module, [f"run={tmp_path}", *extra], capsys, monkeypatch)
    assert code == 2 and "not an lmjax run directory (no config.yaml)" in err
