"""framing.carry_state: lanes of consecutive blocks, the LSTM state carried from step to step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lmjax.config import Config, FramingConfig, ModelConfig
from lmjax.data import batches
from lmjax.errors import ConfigError
from lmjax.model.lm import LanguageModel
from lmjax.train.step import Steps, init_state

from .test_resume import cli, corpus_text, outcome


def test_lanes_are_consecutive_rows():
    o = batches.lane_order(103, 4, seed=0, epoch=0)
    assert o.shape == (25, 4)
    assert np.all(np.diff(o, axis=0) == 1)  # each column walks forward one block per step
    assert np.all(o[0, 1:] == o[-1, :-1] + 1)  # lane j + 1 starts where lane j ends
    assert len(np.unique(o)) == 100 and o.min() >= 0 and o.max() < 103
    offsets = {int(batches.lane_order(103, 4, 0, e)[0, 0]) for e in range(20)}
    assert len(offsets) > 1  # the 3 rows left out move between epochs
    tiny = batches.lane_order(3, 4, 0, 0)
    assert tiny.tolist() == [[0, 1, 2, 3]]  # fewer rows than lanes: row 3 is the padding row


def test_config_checks():
    with pytest.raises(ConfigError, match="carry_state needs framing=sequence"):
        FramingConfig(name="char", level="char", carry_state=True)
    with pytest.raises(ConfigError, match="carry_state needs"):
        FramingConfig(name="sequence", seq_len=8, step=4, carry_state=True)
    FramingConfig(name="sequence", seq_len=8, step=8, carry_state=True)


def test_carried_state_equals_one_long_sequence():
    """With a zero learning rate, the per-step losses of K carried steps over consecutive
    blocks equal the per-block losses of one pass over the whole stream."""
    vocab, t, k, lanes = 13, 5, 4, 3
    model = LanguageModel(vocab, ModelConfig(embed_size=8, hidden_size=16, num_layers=2),
                          rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(model)
    steps = Steps(graphdef, optax.sgd(0.0), last_only=False, dropout=False, carry_state=True)
    stream = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (lanes, k * t + 1), 0, vocab))
    rows = [stream[j, i * t:i * t + t + 1] for j in range(lanes) for i in range(k)]
    win = np.stack(rows)  # row j * k + i: lane j, block i
    data = {"inputs": jnp.asarray(win[:, :-1]), "targets": jnp.asarray(win[:, 1:]),
            "weights": jnp.ones((len(win), t), jnp.float32)}
    idx = jnp.asarray(np.arange(lanes)[None, :] * k + np.arange(k)[:, None], jnp.int32)
    logits = model(jnp.asarray(stream[:, :-1]))  # (k*t, lanes, V), zero state at the start
    copy = lambda: jax.tree.map(jnp.array, params)  # noqa: E731 - train_chunk donates its state
    state = init_state(copy(), steps.tx, jax.random.PRNGKey(0))
    _, _, losses = steps.train_chunk(state, data, idx)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(stream[:, 1:]).T[..., None],
                               -1)[..., 0]
    want = nll.reshape(k, t, lanes).mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(losses), np.asarray(want), rtol=1e-5)
    stateless = Steps(graphdef, optax.sgd(0.0), last_only=False, dropout=False)
    _, _, cold = stateless.train_chunk(init_state(copy(), steps.tx, jax.random.PRNGKey(0)),
                                       data, idx)
    assert np.asarray(cold)[0] == pytest.approx(float(losses[0]), rel=1e-6)
    assert not np.allclose(np.asarray(cold)[1:], np.asarray(losses)[1:], rtol=1e-4)


@pytest.mark.parametrize("per_call", ["4", "0"])
def test_carry_state_run_trains_and_resumes_exactly(tmp_path, monkeypatch, per_call):
    """The entry point with carry_state: killed mid-epoch and resumed, it ends bit for bit
    where an uninterrupted run does (the carried state is part of the checkpoint), with chunks
    of 4 steps and with chunks sized by time (which differ from run to run)."""
    from . import test_resume

    monkeypatch.setattr(test_resume, "ARGS", [a if not a.startswith("train.steps_per_call=")
                                              else f"train.steps_per_call={per_call}"
                                              for a in test_resume.ARGS])
    args = ["framing=sequence", "framing.step=0", "framing.carry_state=true", "framing.level=char"]
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    ref = cli(tmp_path / "ref" / "run", *args)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed" / "run"
    r = cli(run, *args, env={"LMJAX_TEST_KILL_AT": "chunk:3" if per_call == "4" else "logged:2"})
    assert r.returncode == -9, r.stderr[-2000:]
    r = cli(run, *args, "resume=true")
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = outcome(tmp_path / "ref" / "run"), outcome(run)
    assert a["rows"] == b["rows"] and a["summary"] == b["summary"]
    for x, y in zip(a["params"], b["params"]):
        assert np.array_equal(x, y)
    assert a["rows"][-1]["train_loss"] < a["rows"][0]["train_running_loss"]  # it learns


def carried_run(run_dir, optim: dict | None = None, data: dict | None = None,
                **train) -> tuple[dict, list[dict]]:
    """A small char-level carry_state run in-process: its summary and its metrics rows
    (timings dropped). ``optim``, ``data``: OptimConfig / DataConfig keys."""
    import json

    from lmjax.config import DataConfig, LoggerConfig, OptimConfig, SampleConfig, TrainConfig
    from lmjax.train.loop import run

    corpus = run_dir.parent / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(corpus_text())
    cfg = Config(data=DataConfig(name="file", path=str(corpus), valid_frac=0.2, **(data or {})),
                 framing=FramingConfig(name="sequence", level="char", seq_len=8, step=0,
                                       carry_state=True),
                 model=ModelConfig(embed_size=8, hidden_size=16, dropout=0.1),
                 optim=OptimConfig(**(optim or {})),
                 train=TrainConfig(batch_size=8, progress=False, **train),
                 logger=LoggerConfig(name="none"), sample=SampleConfig(length=0))
    summary = run(cfg, run_dir)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def test_chunk_length_does_not_change_training(tmp_path):
    """carry_state trains the same, bit for bit, whatever the chunks are: 2 steps per jitted
    call, 3, or sized by time; the LSTM state runs on across chunk boundaries."""
    def one(per_call):
        return carried_run(tmp_path / f"run{per_call}", epochs=2, steps_per_call=per_call)[1]

    two, three, auto = one(2), one(3), one(0)
    assert two == three == auto
    assert two[-1]["train_loss"] < two[0]["train_running_loss"]


def test_checkpoint_holds_the_carried_state(tmp_path):
    """A carry_state checkpoint saves the LSTM state (resumed mid-epoch, the next step starts
    from it); load_run, which does not train, ignores it; an old checkpoint without it
    restores the zero state."""
    from lmjax.train.checkpoint import unflatten

    tmpl = {"params": {"w": np.zeros(2)}, "lstm": np.zeros((1, 2, 4, 3), np.float32)}
    old = unflatten(tmpl, {"params__w": np.ones(2)})
    assert np.array_equal(old["params"]["w"], np.ones(2)) and not old["lstm"].any()
    got = unflatten({"params": {"w": np.zeros(2)}},
                    {"params__w": np.ones(2), "lstm": np.ones((1, 2, 4, 3))})
    assert set(got) == {"params"}
    with pytest.raises(Exception, match="does not match"):
        unflatten({"params": {"w": np.zeros(2)}}, {"params__w": np.ones(2), "other": 1})


def test_epoch_eval_carried_trains_the_same(tmp_path):
    """train.epoch_eval=carried evaluates the carried validation alone: the run trains exactly
    as with epoch_eval=all (the plateau schedule and the best checkpoint follow the carried
    validation either way), logs no train_*/block val_* metrics, and its summary prints."""
    from experiments.run import _report
    from lmjax.config import TrainConfig

    def one(epoch_eval):
        return carried_run(tmp_path / epoch_eval, {"name": "sgd", "lr": 30.0,
                                                   "schedule": "plateau"},
                           epochs=4, steps_per_call=3, epoch_eval=epoch_eval)

    (s_all, all_rows), (s_car, car_rows) = one("all"), one("carried")
    assert "val_loss" in all_rows[0] and "train_loss" in all_rows[0]
    for r in car_rows:
        assert not {k for k in r if k.startswith(("val_", "train_", "oracle_"))
                    and not k.startswith("val_carried_") and k != "train_running_loss"}
    kept = [{k: v for k, v in r.items() if k in car_rows[0]} for r in all_rows]
    assert kept == car_rows  # same losses, same carried validation, same learning rates
    assert len({r["lr"] for r in car_rows}) > 1  # the schedule did anneal on the way
    assert s_car["best_step"] == s_all["best_step"]
    assert "val_loss" not in s_car and "val_carried_loss" in s_car
    assert "val_carried acc" in _report({**s_car, "samples": []})
    with pytest.raises(ConfigError, match="epoch_eval=carried .* needs framing.carry_state"):
        Config(train=TrainConfig(epoch_eval="carried"))
    with pytest.raises(ConfigError, match="epoch_eval must be all or carried"):
        TrainConfig(epoch_eval="none")
    # sharded data has no carried validation: refused before the run dir is made
    with pytest.raises(ConfigError, match="epoch_eval=carried: sharded data"):
        carried_run(tmp_path / "sharded", data={"shard": "devices"}, epochs=1,
                    epoch_eval="carried")
    assert not (tmp_path / "sharded").exists()
