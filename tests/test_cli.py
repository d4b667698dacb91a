"""The command line: schema checks at compose time, one-line errors for bad input."""

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from lmjax.config import from_dictconfig, register_configs

from .conftest import REPO

register_configs()


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=["name=t", *overrides])


def test_schema_composes_presets():
    cfg = from_dictconfig(_compose("experiment=brownlee_two_word"))
    assert cfg.framing.name == "n_words" and cfg.framing.n_words == 2
    assert cfg.model.hidden_size == 50 and cfg.train.epochs == 500
    kb = from_dictconfig(_compose("experiment=keyboard_nietzsche"))
    assert (kb.framing.seq_len, kb.framing.step, kb.model.hidden_size) == (40, 3, 128)
    assert (kb.optim.name, kb.optim.lr, kb.train.batch_size, kb.model.embed_size) == (
        "rmsprop", 0.01, 128, 0)


@pytest.mark.parametrize("override", ["model.hiden_size=3", "train.epoch=3"])
def test_schema_rejects_unknown_key(override):
    with pytest.raises(ConfigCompositionException):
        _compose(override)


@pytest.mark.parametrize("override", ["model.hidden_size=abc", "train.progress=maybe"])
def test_schema_rejects_wrong_type(override):
    with pytest.raises(ConfigCompositionException):
        _compose(override)


def _cli(*args, cwd=REPO):
    env = dict(os.environ, WANDB_MODE="disabled")
    env.pop("LMJAX_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "experiments.run", *args, "logger=none"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["data=nosuch"], "unknown corpus 'nosuch'"),
    (["framing=nosuch"], "unknown framing 'nosuch'"),
    (["data=file", "data.path=/no/such/file.txt"], "corpus file not found: /no/such/file.txt"),
    (["data=file", "data.path={empty}"], "is empty"),
    (["data=file", "data.path={short}", "framing=char"], "too short for framing=char"),
    (["framing=char", "framing.seq_len=0"], "framing.seq_len must be > 0"),
    (["framing=sequence", "framing.seq_len=-3"], "framing.seq_len must be > 0"),
    (["data=file"], "data=file needs a path"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "short.txt").write_text("just a few characters\n")
    args = [a.format(empty=tmp_path / "empty.txt", short=tmp_path / "short.txt") for a in args]
    r = _cli(*args, f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("lmjax: error:"), r.stderr
    assert message in lines[0]


def test_cli_trains_and_writes_run_dir(tmp_path):
    r = _cli("framing=two_word", "train.epochs=20", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "two_word" in r.stdout
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "config.yaml").is_file()
    assert r.stdout.splitlines()[-1] == f"run dir: {tmp_path}"  # where the results are, last
    assert "framing=two_word" in (tmp_path / ".hydra" / "overrides.yaml").read_text()


# --- refused commands leave nothing behind; runs and sweeps say where they wrote (item 4) --

@pytest.mark.parametrize("args,message", [
    (["framing.seq_len=0"], "framing.seq_len must be > 0"),
    (["resume=true"], "holds no lmjax run"),
    (["data.name=nosuch"], "unknown corpus 'nosuch'"),
])
def test_refused_command_leaves_no_dated_run_dir(tmp_path, args, message):
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(REPO))
    env.pop("LMJAX_TRACEBACK", None)
    r = subprocess.run([sys.executable, "-m", "experiments.run", *args, "logger=none"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []  # no results/runs/<date>/<time>_<name>/ left



# --- compose errors: one line, a close key suggested (issue 15 item 3) --------------------

@pytest.mark.parametrize("args,message", [
    (["model.hiden_size=64"], "unknown config key model.hiden_size; did you mean "
                              "model.hidden_size?"),
    (["model.hidden_size=abc"], "model.hidden_size=abc: expected an integer"),
    (["train.progress=maybe"], "train.progress=maybe: expected true or false"),
    (["+new.key=1"], "unknown config key new.key"),
    (["+model.hiden_size=1"], "did you mean model.hidden_size?"),
    (["trian.epochs=3"], "did you mean train.epochs?"),
    (["-m", "model.hiden_size=8,16"], "did you mean model.hidden_size?"),
    (["-m", "model.hidden_size=8,abc"], "model.hidden_size=abc: expected an integer"),
])
def test_compose_errors_are_one_line(tmp_path, args, message):
    r = _cli(*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sw'}")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("lmjax: error:"), r.stderr
    assert message in lines[0], lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sw").exists()  # nothing left


def test_compose_error_full_with_lmjax_traceback(tmp_path):
    env = dict(os.environ, WANDB_MODE="disabled", LMJAX_TRACEBACK="1")
    r = subprocess.run([sys.executable, "-m", "experiments.run", "model.hiden_size=64",
                        "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr and "hiden_size" in r.stderr


def test_did_you_mean_over_schema_keys():
    from lmjax.config_errors import did_you_mean, schema_keys

    keys = schema_keys()
    assert {"model.hidden_size", "train.epochs", "seed", "sample.prompts"} <= keys
    assert did_you_mean("model.hiden_size") == "model.hidden_size"
    assert did_you_mean("optim.learning_rate") is None or did_you_mean(
        "optim.learning_rate").startswith("optim.")
    assert did_you_mean("zzz.qqq") is None


# --- numbers people read (item 5) -----------------------------------------------------------

def _summary(**extra):
    s = {"name": "t", "framing": "two_word", "level": "word", "num_sequences": 23,
         "vocab_size": 22, "params": 12345, "epochs": 3.0, "train_accuracy": 0.25,
         "val_accuracy": 0.125, "oracle_train_accuracy": 0.9, "oracle_val_accuracy": 0.9,
         "val_perplexity": 12.5, "train_seconds": 1.25, "tokens_per_second": 1234.4,
         "samples": ["jack and"], "status": "completed"}
    return {**s, **extra}


def test_report_prints_huge_numbers_readably_and_flags_divergence():
    from experiments.run import _report

    ok = _report(_summary())
    assert "val_perplexity 12.5000" in ok and "12,345 params" in ok and "1,234 tokens/s" in ok
    assert "DIVERGED" not in ok
    bad = _report(_summary(val_perplexity=1e300, status="diverged",
                           reason="val loss 690.8 is far above ln(V) = 3.09"))
    assert "val_perplexity 1.0e+300" in bad and "0" * 20 not in bad
    assert "  DIVERGED: val loss 690.8 is far above ln(V) = 3.09" in bad.splitlines()


# --- --help says what the keys mean (item 8) ------------------------------------------------

def test_help_lists_groups_and_explains_every_key():
    import re

    from lmjax.config_errors import schema_keys

    r = _cli("--help")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "framing: char, line_by_line" in text and "optim: adam, rmsprop, sgd" in text
    blocks = {"": text.split("top level:", 1)[1].split("\n\n", 1)[0]}
    for m in re.finditer(r"^(\w+)\.\*[^\n]*:\n(.*?)(?:\n\n|\Z)", text, re.M | re.S):
        blocks[m.group(1)] = m.group(2)
    missing = []
    for key in sorted(schema_keys()):
        section, _, leaf = key.rpartition(".")
        block = blocks.get(section, "")
        if not re.search(rf"^  {leaf} +\S", block, re.M):  # the key, then what it means
            missing.append(key)
    assert not missing, f"--help (conf/hydra/help/lmjax.yaml) does not explain {missing}"


@pytest.mark.parametrize("module", ["experiments.run", "experiments.suggest"])
def test_help_into_a_closed_pipe_exits_quietly(module):
    """``--help | head -1``: the reader has gone before the help is written; no traceback."""
    p = subprocess.Popen([sys.executable, "-m", module, "--help"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # long before the interpreter has imported anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
