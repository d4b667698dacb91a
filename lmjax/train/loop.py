"""The training loop: data -> model -> epochs of jitted chunks -> eval -> trackers -> run dir.

``run(cfg, run_dir)`` is everything ``python -m experiments.run`` does after Hydra composed the
config. It writes into ``run_dir``: config.yaml, vocab.json, metrics.jsonl (one line per epoch),
samples.txt, summary.json and checkpoints/ (orbax).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmjax.config import Config
from lmjax.data import batches
from lmjax.data.corpus import load_text, split_text
from lmjax.data.framings import Framed, frame
from lmjax.data.vocab import Vocab, tokenize_lines
from lmjax.errors import LmjaxError
from lmjax.infer.generate import generate_seq
from lmjax.model.lm import LanguageModel
from lmjax.train.checkpoint import Checkpointer
from lmjax.train.metrics import finalize, oracle_accuracy
from lmjax.train.optim import make_optimizer
from lmjax.train.progress import TrainProgress
from lmjax.train.step import Steps, TrainState, init_state
from lmjax.track import make_trackers


class TrainingDiverged(LmjaxError):
    """The loss became NaN or infinite."""


@dataclass
class Prepared:
    vocab: Vocab
    train: Framed
    valid: Framed
    test_text: str
    corpus_types: int


def prepare_data(cfg: Config) -> Prepared:
    """Corpus -> position split -> vocabulary (from the training text) -> framed train/valid."""
    level = cfg.framing.token_level
    text = load_text(cfg.data)
    splits = split_text(text, cfg.data)
    train_lines = tokenize_lines(splits.train, level)
    vocab = Vocab.build(train_lines, level)
    corpus_types = len({t for line in tokenize_lines(text, level) for t in line})
    train = frame([vocab.encode(x) for x in train_lines], cfg.framing, "training text")
    if cfg.data.split == "none":
        valid = train
    else:
        hint = " (raise data.valid_frac, or use data.split=none)"
        try:
            valid = frame([vocab.encode(x) for x in tokenize_lines(splits.valid, level)],
                          cfg.framing, "validation text", seq_len=train.seq_len)
        except LmjaxError as e:
            raise type(e)(str(e) + hint) from None
    return Prepared(vocab, train, valid, splits.test, corpus_types)


def build_model(cfg: Config, vocab_size: int) -> tuple[nnx.GraphDef, Any]:
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0)
    model = LanguageModel(vocab_size, cfg.model, rngs=nnx.Rngs(params=key))
    return nnx.split(model)


def make_steps(cfg: Config, graphdef: nnx.GraphDef) -> Steps:
    return Steps(graphdef, make_optimizer(cfg.optim), last_only=cfg.framing.last_only,
                 dropout=cfg.model.dropout > 0)


class Evaluator:
    """Metric sums of a fixed sample set, in one jitted scan over fixed-size batches."""

    def __init__(self, steps: Steps, framed: Framed, batch_size: int, data: dict | None = None):
        self.steps = steps
        self.data = data if data is not None else batches.to_device(framed)
        self.idx = jnp.asarray(batches.sequential(len(framed), min(batch_size, len(framed))))
        self.oracle = oracle_accuracy(framed.inputs, framed.targets, framed.weights)

    def __call__(self, params: Any) -> dict:
        return self.steps.eval_chunk(params, self.data, self.idx)


def _auto_steps_per_call(steps_per_epoch: int, tokens_per_step: int) -> int:
    """Fuse steps so each jitted call does a decent amount of work (~0.5M tokens), capped."""
    return max(1, min(steps_per_epoch, 200, math.ceil(500_000 / tokens_per_step)))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    tmp.replace(path)


def run(cfg: Config, run_dir: str | Path) -> dict:
    """Train one model as configured; returns the summary (also written to summary.json)."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    level = cfg.framing.token_level

    data = prepare_data(cfg)
    vocab, train = data.vocab, data.train
    vocab.save(run_dir / "vocab.json")
    _write_config(cfg, run_dir)

    graphdef, params = build_model(cfg, len(vocab))
    steps = make_steps(cfg, graphdef)
    state = init_state(params, steps.tx, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1))
    n_params = sum(x.size for x in jax.tree.leaves(params))

    n, t_len = train.inputs.shape
    bsz = min(cfg.train.batch_size, n)
    steps_per_epoch = math.ceil(n / bsz)
    per_call = cfg.train.steps_per_call or _auto_steps_per_call(steps_per_epoch, bsz * t_len)
    train_dev = batches.to_device(train)
    rows = batches.subsample(n, cfg.train.eval_max_train_samples, cfg.seed)
    train_eval = Evaluator(steps, train if rows is None else train.take(rows),
                           cfg.train.eval_batch_size, train_dev if rows is None else None)
    valid_eval = (train_eval if data.valid is train
                  else Evaluator(steps, data.valid, cfg.train.eval_batch_size))

    trackers = make_trackers(cfg.logger, run_dir, cfg.name, cfg.to_dict())
    train_seconds, epochs_done, status, error = 0.0, 0.0, "completed", None
    record: dict[str, Any] = {}
    try:
        with TrainProgress(cfg.train.epochs * steps_per_epoch, enabled=cfg.train.progress) as bar:
            for epoch in range(cfg.train.epochs):
                order = batches.epoch_order(n, bsz, cfg.seed, epoch)
                t0 = time.perf_counter()
                state, running, done = _train_epoch(steps, state, train_dev, order, per_call,
                                                    bar, epoch, cfg, train_seconds)
                state = jax.block_until_ready(state)
                train_seconds += time.perf_counter() - t0
                epochs_done = epoch + done / steps_per_epoch
                record = _epoch_record(epoch, epochs_done, running, train_eval, valid_eval,
                                       state, level, train_seconds, time.perf_counter() - t_start)
                trackers.log(record, step=int(state.step))
                bar.epoch_done(record)
                if done < steps_per_epoch:  # time budget reached inside the epoch
                    break
                if (cfg.train.time_budget_s and train_seconds >= cfg.train.time_budget_s):
                    break
        samples = _samples(cfg, steps, state, vocab, t_len)
        (run_dir / "samples.txt").write_text("\n".join(samples) + "\n")
        ckpt = Checkpointer(run_dir / "checkpoints")
        ckpt.save(int(state.step), state_tree(state),
                  {"epoch": epochs_done, "step": int(state.step), "seq_len": t_len,
                   "vocab_size": len(vocab), "vocab_sha256": vocab.sha256(),
                   "config_hash": cfg.fingerprint(),
                   "wandb_id": trackers.wandb_run_id})
        ckpt.close()
    except BaseException as e:
        status, error = "failed", f"{type(e).__name__}: {e}"
        trackers.finish(exit_code=1)
        _write_json(run_dir / "summary.json", {"status": status, "error": error,
                                                "framing": cfg.framing.label})
        raise
    tokens = epochs_done * n * t_len
    summary = {
        "status": status, "name": cfg.name, "framing": cfg.framing.label, "level": level,
        "corpus": cfg.data.name if cfg.data.name != "file" else cfg.data.path,
        "corpus_types": data.corpus_types, "vocab_size": len(vocab), "num_sequences": n,
        "num_val_sequences": len(data.valid), "seq_len": t_len, "params": n_params,
        "hidden_size": cfg.model.hidden_size, "seed": cfg.seed,
        "epochs": epochs_done, "steps": int(state.step), "batch_size": bsz,
        **{k: v for k, v in record.items() if k.startswith(("train_", "val_", "oracle_"))},
        "wall_seconds": time.perf_counter() - t_start, "train_seconds": train_seconds,
        "tokens_per_second": tokens / max(train_seconds, 1e-9), "samples": samples,
    }
    _write_json(run_dir / "summary.json", summary)
    trackers.summary(summary)
    trackers.finish()
    return summary


def _train_epoch(steps: Steps, state: TrainState, data: dict, order: np.ndarray, per_call: int,
                 bar: Any, epoch: int, cfg: Config, seconds_before: float):
    """One epoch of jitted chunks. Reads each chunk's sums only after the next is dispatched,
    so the host never stalls the device. Returns (state, summed metrics, steps done)."""
    budget = cfg.train.time_budget_s
    t0 = time.perf_counter()
    total: dict[str, float] = {}
    pending = None
    done = 0
    first_step = int(state.step)  # one host read per epoch

    def collect(p) -> None:
        sums, losses, n_steps, start = p
        host = jax.device_get(sums)
        for k, v in host.items():
            total[k] = total.get(k, 0.0) + float(v)
        if not np.all(np.isfinite(np.asarray(losses))):
            bad = int(np.argmin(np.isfinite(np.asarray(losses))))
            raise TrainingDiverged(f"loss became {float(np.asarray(losses)[bad])} at epoch "
                                   f"{epoch + 1}, step {first_step + start + bad + 1}")
        bar.advance(n_steps, total["loss_sum"] / max(total["weight"], 1e-12), epoch)

    for a, b in batches.chunk_bounds(len(order), per_call):
        state, sums, losses = steps.train_chunk(state, data, jnp.asarray(order[a:b]))
        done = b
        if pending is not None:
            collect(pending)
        pending = (sums, losses, b - a, a)
        if budget and seconds_before + time.perf_counter() - t0 >= budget:
            break
    collect(pending)
    return state, total, done


def _epoch_record(epoch: int, epochs_done: float, running: dict, train_eval: Evaluator,
                  valid_eval: Evaluator, state: TrainState, level: str, train_seconds: float,
                  wall: float) -> dict:
    tm = finalize(train_eval(state.params), level)
    vm = tm if valid_eval is train_eval else finalize(valid_eval(state.params), level)
    rec: dict[str, Any] = {"epoch": epoch + 1, "epochs": epochs_done}
    rec["train_running_loss"] = running["loss_sum"] / max(running["weight"], 1e-12)
    rec.update({f"train_{k}": v for k, v in tm.items()})
    rec["oracle_train_accuracy"] = train_eval.oracle
    rec.update({f"val_{k}": v for k, v in vm.items()})
    rec["oracle_val_accuracy"] = valid_eval.oracle
    rec["train_seconds"] = train_seconds
    rec["wall_seconds"] = wall
    return rec


def _samples(cfg: Config, steps: Steps, state: TrainState, vocab: Vocab, width: int) -> list[str]:
    if cfg.sample.length == 0:
        return []
    import warnings

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(steps.predict(state.params, jnp.asarray(x)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [generate_seq(predict, vocab, p, cfg.sample.length, width)
                for p in cfg.sample.prompts]


def state_tree(state: TrainState) -> dict:
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step,
            "key": state.key}


def _write_config(cfg: Config, run_dir: Path) -> None:
    from omegaconf import OmegaConf

    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg.to_dict())))
