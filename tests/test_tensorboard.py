"""TensorBoard: logger choices, the tracker's event files (live, resumed), and a real sweep read
back through a real TensorBoard server's HTTP API and its page in headless Chromium."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lmjax.config import LoggerConfig, from_dict, register_configs
from lmjax.dashboard import TensorBoardServer, find_chromium, screenshot
from lmjax.errors import ConfigError
from lmjax.track import (event_files, hparams_of, make_trackers, safe_run_name, scalar_tag,
                         tensorboard_dir)

from .conftest import REPO

QUICK = ["train.epochs=3", "train.progress=false", "sample.length=2"]


def cli(*args, env=None, module="experiments.run"):
    e = dict(os.environ, LMJAX_TRACEBACK="0", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=600)


def events(logdir: Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every summary value in a TensorBoard run dir, in file order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = []
    for f in event_files(logdir):
        for ev in EventFileLoader(str(f)).Load():
            for v in ev.summary.value:
                value = v.simple_value if v.HasField("simple_value") else (
                    float(v.tensor.float_val[0]) if v.tensor.float_val else float("nan"))
                out.append((ev.step, v.tag, value))
    return out


# --- which trackers -------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, trackers", [
    (["logger=none"], ()),
    ([], ("wandb",)),  # the default
    (["logger=wandb"], ("wandb",)),
    (["logger=tensorboard"], ("tensorboard",)),
    (["logger=[wandb,tensorboard]"], ("wandb", "tensorboard")),
    (["logger=[tensorboard,wandb]", "logger.mode=offline"], ("wandb", "tensorboard")),
    (["logger.tensorboard=true"], ("wandb", "tensorboard")),
])
def test_logger_choices_compose(overrides, trackers):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        composed = compose("config", overrides=overrides)
    logger = LoggerConfig(**OmegaConf.to_container(composed.logger))
    assert logger.trackers == trackers
    if "logger.mode=offline" in overrides:
        assert logger.mode == "offline"


def test_logger_list_passes_the_group_check_and_a_misspelled_one_does_not():
    from lmjax.cli import check_group_choices

    check_group_choices(REPO / "conf", ["logger=[wandb,tensorboard]", "-m", "seed=0,1"])
    r = cli("logger=[wandb,tensorbord]")
    assert r.returncode == 2 and "unknown logger 'tensorbord'" in r.stderr


def test_old_run_configs_keep_their_logger():
    """config.yaml of runs written before logger=tensorboard existed: ``logger.name``."""
    old = {"name": "x", "logger": {"name": "wandb", "mode": "auto", "project": "lmjax",
                                   "entity": None, "group": None, "tags": []}}
    assert from_dict(old).logger.trackers == ("wandb",)
    old["logger"]["name"] = "none"
    assert from_dict(old).logger.trackers == ()
    assert LoggerConfig(name="wandb+tensorboard").trackers == ("wandb", "tensorboard")
    new = LoggerConfig(wandb=True, tensorboard=True)
    assert from_dict({"logger": dataclasses.asdict(new)}).logger == new  # round trip
    assert dataclasses.replace(new, name="none").trackers == ()  # how a run turns them off
    with pytest.raises(ConfigError, match="logger must be none or any of wandb, tensorboard"):
        LoggerConfig(name="tensorbord")


# --- names, tags and hparams ----------------------------------------------------------------

def test_job_names_hparams_and_tags():
    config = from_dict({"seed": 1, "model": {"hidden_size": 16}, "optim": {"lr": 0.01},
                        "sample": {"prompts": ["a", "b"]}}).to_dict()
    hp = hparams_of("framing=two_word,model.hidden_size=16,optim.lr=0.01,sample.prompts=[a,b]",
                    config)
    assert hp == {"framing": "two_word", "model.hidden_size": 16.0, "optim.lr": 0.01,
                  "sample.prompts": "['a', 'b']"}  # typed from the config; groups by name
    assert hparams_of("line_by_line_jack_and_jill", config) == {  # a single run
        "framing": "line_by_line", "data": "jack_and_jill", "model.hidden_size": 16.0,
        "optim.name": "adam", "optim.lr": 0.01, "seed": 1.0}
    assert safe_run_name("framing=two_word,seed=1") == "framing=two_word,seed=1"
    odd = safe_run_name("data.path=/x/my text.txt")
    assert "/" not in odd and " " not in odd and odd.startswith("data.path=_x_my_text.txt-")
    assert scalar_tag("val_loss") == "val/loss"
    assert scalar_tag("oracle_train_accuracy") == "train/oracle_accuracy"
    assert scalar_tag("epoch") is None


def test_sweep_jobs_share_one_tensorboard_folder(tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "multirun.yaml").write_text("{}")
    assert tensorboard_dir(tmp_path / "sweep" / "3", "seed=1") == \
        tmp_path / "sweep" / "tensorboard" / "seed=1"
    assert tensorboard_dir(tmp_path / "run", "seed=1") == tmp_path / "run" / "tensorboard"


# --- the tracker ----------------------------------------------------------------------------

def _record(epoch: int) -> dict:
    return {"epoch": epoch, "epochs": float(epoch), "train_loss": 3.0 / epoch,
            "val_loss": 3.5 / epoch, "val_accuracy": 0.1 * epoch, "train_seconds": 2.0 * epoch}


def test_tracker_is_live_and_a_resume_appends_without_repeating_epochs(tmp_path):
    """Each epoch is on disk when logged (a running job shows in TensorBoard); an interrupted
    run resumed from its epoch-2 checkpoint (epochs 3-4 were logged after it) drops those and
    goes on, so every step appears once and the HParams session starts and ends once."""
    cfg = LoggerConfig(tensorboard=True)
    config = from_dict({"optim": {"lr": 0.5}}).to_dict()
    run = tmp_path / "run"
    run.mkdir()
    t = make_trackers(cfg, run, "r", config, learning_rate=lambda step: 1.0 / step,
                      tokens_per_epoch=100)
    for epoch in (1, 2, 3, 4):
        t.log(_record(epoch), step=10 * epoch)
    deadline = time.monotonic() + 15
    while True:  # before finish: on disk within FLUSH_SECS of being logged
        logged = events(run / "tensorboard")
        steps = [s for s, tag, _ in logged if tag == "val/loss"]
        if steps == [10, 20, 30, 40] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert steps == [10, 20, 30, 40]
    lr = {s: v for s, tag, v in logged if tag == "optim/learning_rate"}
    assert lr[20] == pytest.approx(1 / 20)
    tps = {s: v for s, tag, v in logged if tag == "speed/tokens_per_second"}
    assert tps[20] == pytest.approx(1 * 100 / 2.0)  # one epoch of 100 tokens in 2 s
    t.finish(exit_code=143)  # SIGTERM: interrupted, resumable

    t = make_trackers(cfg, run, "r", config, keep_epochs=2, learning_rate=0.5,
                      tokens_per_epoch=100)
    for epoch in (3, 4, 5):
        t.log(_record(epoch), step=10 * epoch)
    t.summary({"status": "completed", "steps": 50, "samples": ["jack and jill"],
               "heldout_word_accuracy": 0.25})
    t.finish()
    logged = events(run / "tensorboard")
    assert [s for s, tag, _ in logged if tag == "val/loss"] == [10, 20, 30, 40, 50]
    assert [s for s, tag, _ in logged if tag == "train/loss"] == [10, 20, 30, 40, 50]
    tags = [tag for _, tag, _ in logged]
    assert tags.count("_hparams_/session_start_info") == 1
    assert tags.count("_hparams_/session_end_info") == 1
    assert ("samples/text_summary" in tags and (50, "heldout/word_accuracy", 0.25) in logged)
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4, 5]


def test_a_new_run_replaces_old_events_and_a_failed_run_says_so(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import api_pb2, metadata

    cfg = LoggerConfig(tensorboard=True)
    config = from_dict({}).to_dict()
    for _ in range(2):
        t = make_trackers(cfg, tmp_path, "r", config)
        t.log(_record(1), step=1)
        t.finish(exit_code=1)
    files = event_files(tmp_path / "tensorboard")
    assert len(files) == 1
    ends = [v for ev in EventFileLoader(str(files[0])).Load() for v in ev.summary.value
            if v.tag == metadata.SESSION_END_INFO_TAG]
    content = metadata.parse_session_end_info_plugin_data(ends[0].metadata.plugin_data.content)
    assert content.status == api_pb2.STATUS_FAILURE


@pytest.mark.slow  # two runs, one with W&B (~20 s of CPU); the default suite has the unit test
def test_a_run_with_both_loggers_resumes_into_the_same_tensorboard_run(tmp_path):
    """logger=[wandb,tensorboard]: W&B (offline) and TensorBoard both get the run; continuing it
    for two more epochs with resume=true appends epochs 3-4 to the same TensorBoard run."""
    run = tmp_path / "run"
    base = ["framing=two_word", "train.progress=false", "sample.length=2", f"hydra.run.dir={run}"]
    r = cli(*base, "train.epochs=2", "logger=[wandb,tensorboard]")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((run / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    r = cli(*base, "train.epochs=4", "resume=true", "logger=tensorboard")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = events(run / "tensorboard")
    val = [(step, v) for step, tag, v in logged if tag == "val/loss"]
    assert [step for step, _ in val] == [row["step"] for row in rows]  # 4 epochs, each once
    assert [v for _, v in val] == pytest.approx([row["val_loss"] for row in rows], rel=1e-6)
    tags = [tag for _, tag, _ in logged]
    assert tags.count("_hparams_/session_start_info") == 1
    assert tags.count("_hparams_/session_end_info") == 1  # the first run's end was dropped
    assert tags.count("samples/text_summary") == 2  # at the end of each part


# --- a real sweep in a real TensorBoard -----------------------------------------------------

def _browser_ready() -> None:
    try:
        find_chromium()
    except Exception as e:  # noqa: BLE001
        if os.environ.get("LMJAX_REQUIRE_BROWSER"):  # CI (.ci/run) installs Chromium
            raise
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def tb_sweep(tmp_path_factory):
    """2 framings x 2 seeds on the rhyme, 3 epochs each, logged to TensorBoard."""
    _browser_ready()
    d = tmp_path_factory.mktemp("tb") / "sweep"
    r = cli("-m", "framing=one_word,two_word", "seed=0,1", "logger=tensorboard", *QUICK,
            f"hydra.sweep.dir={d}")
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def test_sweep_in_tensorboard_api_and_page(tb_sweep, tmp_path):
    rows = [json.loads(x) for x in (tb_sweep / "sweep_summary.jsonl").read_text().splitlines()]
    jobs = {r["name"]: json.loads((tb_sweep / r["run_dir"] / "summary.json").read_text())
            for r in rows}
    assert len(jobs) == 4 and "framing=two_word,seed=1" in jobs
    with TensorBoardServer(tb_sweep / "tensorboard") as tb:
        groups = {g["name"]: g for g in tb.wait_for_sessions(4, timeout=60)}
        assert set(groups) == set(jobs)  # one run per job, named by its overrides
        tags = tb.scalar_tags()
        for name in jobs:
            assert {"train/loss", "val/loss", "val/accuracy", "optim/learning_rate",
                    "speed/tokens_per_second", "heldout/word_accuracy"} <= set(tags[name])
        exp = tb.experiment()
        assert {h["name"] for h in exp["hparamInfos"]} == {"framing", "seed"}
        assert {"val/loss", "val/accuracy", "val/perplexity"} <= \
            {m["name"]["tag"] for m in exp["metricInfos"]}
        for name, s in jobs.items():
            g = groups[name]
            framing, seed = (kv.split("=")[1] for kv in name.split(","))
            assert g["hparams"] == {"framing": framing, "seed": float(seed)}
            values = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
            assert values["val/loss"] == pytest.approx(s["val_loss"], rel=1e-6)
            assert values["val/accuracy"] == pytest.approx(s["val_accuracy"], rel=1e-6)
            assert g["sessions"][0]["status"] == "STATUS_SUCCESS"
            curve = tb.get(f"data/plugin/scalars/scalars?run={_q(name)}&tag=val%2Floss")
            assert [step for _, step, _ in curve] == sorted({step for _, step, _ in curve})
            assert len(curve) == 3  # one point per epoch
        text = tb.get(f"data/plugin/text/text?run={_q(name)}&tag=samples%2Ftext_summary")
        assert all(x in text[0]["text"] for x in s["samples"])
        _check_page(tb.url, sorted(jobs), tmp_path / "hparams.png")


def _q(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def _check_page(url: str, names: list[str], png: Path) -> None:
    """The HParams tab lists every job with its hparams and metric columns; the project's own
    screenshot of it is a real image of that size."""
    from playwright.sync_api import sync_playwright

    from lmjax.dashboard import CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "#hparams")
            for name in names:
                page.get_by_text(name, exact=True).first.wait_for(timeout=30000)
            for header in ("framing", "seed", "val/loss", "val/accuracy"):
                assert page.get_by_text(header, exact=True).count() >= 1, header
            cells = page.get_by_text("one_word", exact=True)
            assert sum(cells.nth(i).is_visible() for i in range(cells.count())) == 2  # 2 seeds
        finally:
            browser.close()
    screenshot(url, png, names, width=1000)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] == 1000 and im.size[1] >= 400


def test_dashboard_command_refuses_what_it_cannot_show(tmp_path):
    r = cli(f"logdir={tmp_path / 'missing'}", module="experiments.dashboard")
    assert r.returncode == 2 and r.stderr.startswith("lmjax: error:") and "does not exist" in \
        r.stderr and len(r.stderr.splitlines()) == 1
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"name": "x"}))
    r = cli(f"logdir={tmp_path / 'run'}", module="experiments.dashboard")
    assert r.returncode == 2 and "train with logger=tensorboard" in r.stderr
    r = cli(f"logdir={tmp_path}", "view=pie", module="experiments.dashboard")
    assert r.returncode == 2 and "view must be one of table, parallel, scatter" in r.stderr
