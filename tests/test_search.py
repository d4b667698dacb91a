"""Optuna searches through ``-m hydra/sweeper=optuna``: search spaces, pruning, resuming a killed
study, the compare report, one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from lmjax.search.driver import Search
from lmjax.search.space import SearchSpaceError, parse_space
from lmjax.search.study import SearchSettings, open_storage

from .conftest import REPO

QUICK = ["logger=none", "train.progress=false", "sample.length=2"]


def cli(*args, timeout=600):
    env = dict(os.environ, LMJAX_TRACEBACK="0")
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def study_of(d, name="search"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{d / 'optuna.db'}")


def states(study):
    return {t.number: t.state.name for t in study.get_trials()}


# --- search spaces ------------------------------------------------------------------------

def test_search_space_syntax_maps_to_optuna_distributions():
    d = optuna.distributions
    space = parse_space(["optim.lr=tag(log,interval(1e-4,1e-2))", "model.hidden_size=choice(8,16)",
                         "model.num_layers=range(1,4)", "train.epochs=3",
                         "model.embed_size=tag(int,interval(4,32))", "+extra=a,b"],
                        {"seed": "0,1", "model.hidden_size": "choice(1,2,3)"})
    dist = space.distributions
    assert dist["optim.lr"] == d.FloatDistribution(1e-4, 1e-2, log=True)
    assert dist["model.hidden_size"] == d.CategoricalDistribution([8, 16])  # the command line wins
    assert dist["model.num_layers"] == d.IntDistribution(1, 3)  # Hydra's range leaves out stop
    assert dist["model.embed_size"] == d.IntDistribution(4, 32)
    assert dist["seed"] == d.CategoricalDistribution([0, 1])
    assert space.fixed == ("train.epochs=3",)
    got = space.overrides({"optim.lr": 0.001, "model.hidden_size": 8, "extra": "a b"})
    assert got == ["train.epochs=3", "optim.lr=0.001", "model.hidden_size=8", "+extra='a b'"]


@pytest.mark.parametrize("bad, why", [
    ("optim.lr=tag(log,interval(0,1))", "log scale needs low > 0"),
    ("optim.lr=interval(2,1)", "low < high"),
    ("optim.lr=tag(logg,interval(1,2))", "unknown tag 'logg'"),
    ("optim.lr=range(0.1,1,0.1)", "whole numbers"),
    ("optim.lr=glob(*)", "cannot be searched"),
    ("optim.lr=0.1", "nothing to search"),
])
def test_bad_search_spaces_say_why(bad, why):
    with pytest.raises(SearchSpaceError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_space([bad])


@pytest.mark.parametrize("arg, why", [
    ("optim.lr=interval(1e-4", "cannot read the override 'optim.lr=interval(1e-4'"),
    ("optim.lr=tag(log,interval(0,1e-2))", "a log scale needs low > 0"),
    ("optim.lrr=interval(1e-4,1e-2)", "optim.lrr is not a config key"),
])
def test_a_bad_search_space_is_one_error_line(tmp_path, arg, why):
    r = cli("-m", "hydra/sweeper=optuna", arg, *QUICK, f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmjax: error: ") and why in lines[0], lines
    assert not (tmp_path / "s" / "0").exists()  # no trial ran


# --- a search with pruning, end to end ---------------------------------------------------------

@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """3 trials on the rhyme, grid over 2 params in a fixed order: trial 0 learns (lr 0.05),
    trials 1 and 2 are hopeless on purpose (lr 1e-7: the loss cannot fall), so the median
    pruner (after trial 0, from epoch 3 on) should stop them early."""
    d = tmp_path_factory.mktemp("search") / "s"
    r = cli("-m", "experiment=search_rhyme", f"hydra.sweep.dir={d}", *QUICK,
            "optim.lr=choice(0.05,1e-7)", "model.hidden_size=choice(8,16)",
            "hydra.sweeper.sampler=grid", "hydra.sweeper.seed=0", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.pruner_startup_trials=1", "hydra.sweeper.pruner_warmup_epochs=3",
            "hydra.sweeper.report_every_epochs=1",
            "train.epochs=20")
    assert r.returncode == 0, r.stderr[-3000:]
    return d, r


def test_search_runs_each_trial_in_its_own_dir_and_records_it(search):
    d, r = search
    study = study_of(d)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[0].params == {"optim.lr": 0.05, "model.hidden_size": 16}
    assert trials[0].state.name == "COMPLETE"
    s0 = json.loads((d / "0" / "summary.json").read_text())
    assert s0["status"] == "completed" and trials[0].value == pytest.approx(s0["val_loss"])
    cfg = (d / "0" / "config.yaml").read_text()
    assert "lr: 0.05" in cfg and "hidden_size: 16" in cfg and "epochs: 20" in cfg
    rows = [json.loads(x) for x in (d / "sweep_summary.jsonl").read_text().splitlines()]
    assert [x["run_dir"] for x in rows] == ["0", "1", "2"]
    assert f"best: trial 0, val_loss {s0['val_loss']:.4f}" in r.stdout


def test_pruning_stops_hopeless_trials_early(search):
    d, _ = search
    study = study_of(d)
    assert states(study) == {0: "COMPLETE", 1: "PRUNED", 2: "PRUNED"}
    for n in (1, 2):
        t = study.trials[n]
        assert t.params["optim.lr"] == 1e-7
        s = json.loads((d / str(n) / "summary.json").read_text())
        epochs = [json.loads(x) for x in (d / str(n) / "metrics.jsonl").read_text().splitlines()]
        assert s["status"] == "pruned" and 3 <= len(epochs) < 20
        # pruned with its last metrics, which are also the trial's value in the study
        assert s["val_loss"] == pytest.approx(epochs[-1]["val_loss"])
        assert t.value == pytest.approx(s["val_loss"]) and s["pruned_after_epoch"] == len(epochs)
        assert max(t.intermediate_values) == len(epochs)


def test_compare_shows_trials_best_first_with_optunas_plots(search, tmp_path):
    d, _ = search
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "experiments.compare", str(d), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = (out / "search.csv").read_text().splitlines()
    assert lines[0].startswith("trial,state,val_loss,model.hidden_size,optim.lr,epochs")
    assert [x.split(",")[:2] for x in lines[1:]] == [["0", "complete"], ["1", "pruned"],
                                                     ["2", "pruned"]] or \
        [x.split(",")[:2] for x in lines[1:]] == [["0", "complete"], ["2", "pruned"],
                                                  ["1", "pruned"]]
    for png in ("search_history.png", "search_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "search.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<td>pruned</td>" in html
    assert "| 0 | complete |" in r.stdout


# --- survives: kill -9 mid-search, then continue ------------------------------------------

@pytest.mark.slow  # two searches in subprocesses: ~40-70 s on a busy 2-core machine
def test_a_killed_search_continues_where_it_stopped(tmp_path):
    d = tmp_path / "s"
    args = ["-m", "experiment=search_rhyme", f"hydra.sweep.dir={d}", *QUICK,
            "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", "hydra.sweeper.seed=1",
            "hydra.sweeper.heartbeat_s=1", "hydra.sweeper.grace_s=2", "train.epochs=30",
            "train.checkpoint_every_s=0"]
    env = dict(os.environ, LMJAX_TRACEBACK="0")
    p = subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (d / "1" / "metrics.jsonl").exists():  # trial 1 is training
            assert p.poll() is None and time.monotonic() < deadline, "search ended too early"
            time.sleep(0.2)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    before = study_of(d)
    assert states(before) == {0: "COMPLETE", 1: "RUNNING"}
    done_0 = (d / "0" / "summary.json").read_text()

    r = cli(*args)  # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    study = study_of(d)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2 and trials[0].state.name == "COMPLETE"
    assert trials[1].state.name == "FAIL"  # the killed trial, retried with the same values
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retried) == 1 and retried[0].params == trials[1].params
    assert retried[0].state.name == "COMPLETE"
    assert (d / "0" / "summary.json").read_text() == done_0  # not rerun
    assert "1 of 2 trials done" in r.stdout and len(trials) == 3
    for t in complete:  # each trial its own dir, by number
        s = json.loads((d / str(t.number) / "summary.json").read_text())
        assert s["status"] == "completed" and t.value == pytest.approx(s["val_loss"])


# --- survives, the search loop alone (jobs faked: no training) --------------------------------

SPACE = ["optim.lr=tag(log,interval(1e-4,1e-2))", "model.hidden_size=choice(8,16,32)"]


class FakeJobs:
    """A launcher whose jobs tell the study a value made from their params, as a job would."""

    def __init__(self, storage, sleep=0.0):
        self.storage, self.sleep, self.launched = storage, sleep, []

    def __call__(self, jobs, first):
        study = optuna.load_study(study_name="search", storage=self.storage)
        for job in jobs:
            kv = dict(o.split("=", 1) for o in job)
            n = int(kv["hydra.sweeper.trial"])
            self.launched.append(n)
            time.sleep(self.sleep)
            study.tell(n, float(kv["optim.lr"]) * int(kv["model.hidden_size"]))
        return [None] * len(jobs)


def _search(d, n_trials, jobs, **kw):
    s = SearchSettings(n_trials=n_trials, heartbeat_s=1, grace_s=2, seed=0, pruner="none", **kw)
    return Search(s, d, launch=jobs, validate=lambda batch: None, echo=lambda line: None)


def test_a_rerun_retries_a_dead_trial_and_reruns_nothing_finished(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    jobs = FakeJobs(url)
    _search(tmp_path, 2, jobs).run(SPACE)
    assert jobs.launched == [0, 1]
    # a process that died mid-trial: trial 2 RUNNING, its heartbeat stopped
    storage = open_storage(url, SearchSettings(heartbeat_s=1, grace_s=2))
    study = optuna.load_study(study_name="search", storage=storage)
    dead = study.ask(parse_space(SPACE).distributions)
    study_id = storage.get_study_id_from_name("search")
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, 2))
    time.sleep(3.2)  # > grace_s (SQLite keeps heartbeat times in whole seconds)

    jobs = FakeJobs(url)
    _search(tmp_path, 4, jobs).run(SPACE)
    trials = study_of(tmp_path).get_trials()
    assert jobs.launched == [3, 4]  # 0 and 1 not rerun; 3 is 2's retry, 4 a new one
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE",
                                              "COMPLETE"]
    assert trials[3].params == dead.params and trials[3].system_attrs["failed_trial"] == 2
    assert trials[4].params not in (trials[0].params, trials[1].params)  # no replayed draws


def test_two_workers_share_one_study(tmp_path):
    import threading

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    workers = [FakeJobs(url, sleep=0.05), FakeJobs(url, sleep=0.05)]
    _search(tmp_path, 1, FakeJobs(url)).run(SPACE)  # the study exists before both start
    threads = [threading.Thread(target=_search(tmp_path, 8, w).run, args=(SPACE,))
               for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    launched = workers[0].launched + workers[1].launched
    assert len(launched) == len(set(launched))  # no trial run twice
    assert workers[0].launched and workers[1].launched  # both did work
    trials = study_of(tmp_path).get_trials()
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert 8 <= len(trials) <= 9  # two workers may both start the last trial


def test_a_study_is_not_continued_with_another_space_or_metric(tmp_path):
    from lmjax.errors import ConfigError

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _search(tmp_path, 1, FakeJobs(url)).run(SPACE)
    with pytest.raises(ConfigError, match="was started with search space"):
        _search(tmp_path, 2, FakeJobs(url)).run(SPACE[:1])
    with pytest.raises(ConfigError, match="was started with metric val_loss, not val_accuracy"):
        _search(tmp_path, 2, FakeJobs(url), metric="val_accuracy").run(SPACE)
    assert len(study_of(tmp_path).get_trials()) == 1
