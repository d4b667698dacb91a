"""Word-level quality against PyTorch's ``word_language_model``: ``experiments.bench_quality``.

lmjax (``experiment=wordlm_reference`` plus the user's overrides, trained by
:func:`lmjax.train.loop.run`) and the reference (:mod:`lmjax.bench.torch_wordlm`) train one
after the other on the same token ids, with the same recipe, epochs and batch layout; both are
timed and tested, and the results are written as ``quality.json`` and ``quality.md``.

lmjax's test perplexity is what ``experiments.score run=RUN checkpoint=best file=TEST
context=stream`` prints (the best-validation checkpoint, the whole test text one stream, OOV
as ``<unk>``); the reference's is its own test loop (10 parallel streams). docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lmjax.config import Config
from lmjax.errors import ConfigError, DataError

PRESET = "wordlm_reference"


@dataclass
class QualityConfig:
    """``bench.*`` keys of experiments.bench_quality."""
    epochs: int = 6
    impls: list[str] = field(default_factory=lambda: ["lmjax", "torch"])
    out: str = ""  # output dir (default results/bench_quality/<date>_<time>)
    eval_batch: int = 10  # the reference's eval_batch_size
    stream_valid: bool = True  # lmjax: also score every epoch's checkpoint on valid as a stream
    cut: str = ""  # cut this text file into train/valid/test files in cut_dir, then stop
    cut_dir: str = ""
    cut_fracs: list[float] = field(default_factory=lambda: [0.85, 0.05, 0.10])
    # impls "regularized": experiment=wordlm_regularized with this training-time budget
    # (0: the reference's wall time less lmjax's own non-training time in this benchmark)
    regularized_budget_s: float = 0.0


# --- the corpus -----------------------------------------------------------------------------

def cut_text(path: str | Path, out_dir: str | Path, fracs: tuple[float, ...] = (0.85, 0.05, 0.10)
             ) -> dict[str, Any]:
    """Cut a text file by position into ``train.txt``, ``valid.txt``, ``test.txt`` in
    ``out_dir``: the first ``fracs[0]`` of its characters (to the next line boundary) train,
    the next ``fracs[1]`` valid, the rest test. Returns the paths and line counts."""
    if len(fracs) != 3 or any(f <= 0 for f in fracs) or abs(sum(fracs) - 1) > 1e-6:
        raise ConfigError(f"bench.cut_fracs must be three positive shares summing to 1, "
                          f"got {list(fracs)}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"bench.cut={path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    ends = np.cumsum([len(x) for x in lines])
    total = int(ends[-1]) if len(lines) else 0
    # the first line whose end reaches the share: the cut falls on a line boundary
    a = int(np.searchsorted(ends, fracs[0] * total)) + 1
    b = int(np.searchsorted(ends, (fracs[0] + fracs[1]) * total)) + 1
    parts = {"train": lines[:a], "valid": lines[a:b], "test": lines[b:]}
    if not all(parts.values()):
        raise DataError(f"{path} has too few lines ({len(lines)}) to cut into three parts")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = {}
    for name, part in parts.items():
        p = out / f"{name}.txt"
        p.write_text("".join(part), encoding="utf-8")
        res[name] = {"path": str(p), "lines": len(part)}
    return res


def token_ids(cfg: Config) -> tuple[Any, dict[str, np.ndarray]]:
    """lmjax's vocabulary and the train/valid/test token streams as ids (each line's tokens
    and ``<eos>``, lines one after the other: the reference's ``data.Corpus`` order)."""
    from lmjax.data.corpus import load_splits
    from lmjax.data.vocab import tokenize_lines
    from lmjax.train.prepare import prepare_data, tokenizer_of

    vocab = prepare_data(cfg).vocab
    splits = load_splits(cfg.data)
    tok = tokenizer_of(cfg)
    ids = {}
    for k in ("train", "valid", "test"):
        lines = tokenize_lines(getattr(splits, k), **tok)
        ids[k] = np.concatenate([vocab.encode(x) for x in lines] or [np.zeros(0, np.int32)])
    return vocab, ids


def lmjax_layout(train_ids: np.ndarray, cfg: Config, epoch: int = 0
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (inputs (T, B), targets (T, B)) of each training step of an lmjax epoch under
    ``framing.carry_state``: the same framing and lanes the training loop uses."""
    from lmjax.data import batches
    from lmjax.data.framings import frame

    framed = frame([np.asarray(train_ids, np.int32)], cfg.framing)
    order = batches.lane_order(len(framed), cfg.train.batch_size, cfg.seed, epoch)
    return [(framed.inputs[row].T, framed.targets[row].T) for row in order]


# --- the two sides ---------------------------------------------------------------------------

def compose(conf_dir: str | Path, overrides: list[str], epochs: int,
            preset: str = PRESET, budget_s: float = 0.0, every_epoch: bool = True) -> Config:
    """lmjax's config: ``preset``, the user's overrides, ``epochs``, no logger, every
    epoch's checkpoint kept (for the per-epoch stream validation); ``every_epoch=False``:
    only the best-validation checkpoint (what the test scores) and the last are written, as
    the reference's main.py saves its model only when validation improves.
    ``budget_s`` > 0: trained for that long (``train.time_budget_s``) instead, the preset's
    epochs an upper bound, checkpoints as the preset keeps them."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lmjax.config import from_dictconfig, register_configs

    register_configs()
    # each epoch validates as the reference does, and only that: the carried validation alone
    # (no training-set metrics, no block-wise validation; a user's train.epoch_eval=all wins)
    fixed = [f"experiment={preset}", "name=bench_quality", "logger=none",
             "train.epoch_eval=carried"]
    tail = [f"train.epochs={epochs}", f"train.keep_checkpoints={epochs + 1}",
            f"train.checkpoint_every={int(every_epoch)}", "train.checkpoint_every_s=0"]
    if budget_s > 0:
        tail = [f"train.time_budget_s={budget_s:.1f}"]
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        try:
            dcfg = hydra_compose("config", overrides=fixed + list(overrides) + tail)
        except Exception as e:  # a misspelled key, a missing group option
            raise ConfigError(str(e).splitlines()[0]) from None
    cfg = from_dictconfig(dcfg)
    if cfg.data.name != "files" or not cfg.data.test:
        raise ConfigError("bench_quality needs split files: data=files data.train=TRAIN "
                          "data.valid=VALID data.test=TEST")
    if not cfg.data.valid:
        raise ConfigError("bench_quality needs a validation file: add data.valid=VALID")
    return cfg


def recipe_of(cfg: Config, epochs: int, eval_batch: int):
    """The reference's arguments for the same recipe as ``cfg``. Its seed follows lmjax's:
    the reference's own default (1111) plus ``seed``, so ``seed=0`` runs the example exactly
    and ``seed=1,2,...`` repeat both sides with new draws."""
    from lmjax.bench.torch_wordlm import Recipe

    m, o = cfg.model, cfg.optim
    return Recipe(emsize=m.embed_size, nhid=m.hidden_size, nlayers=m.num_layers,
                  dropout=m.dropout, lr=o.lr, clip=o.clip_norm, epochs=epochs,
                  batch_size=cfg.train.batch_size, bptt=cfg.framing.seq_len,
                  eval_batch_size=eval_batch, anneal=1.0 / o.plateau_factor,
                  tied=m.tie_embeddings, seed=Recipe.seed + cfg.seed)


def run_lmjax(cfg: Config, run_dir: Path, stream_valid: bool,
              log: Callable[[str], None] = print) -> dict:
    """Train with lmjax's loop, then score the best checkpoint's test stream."""
    from lmjax.data.corpus import read_text_file
    from lmjax.fmt import num
    from lmjax.infer.load import load_run
    from lmjax.infer.score import STREAM, heldout_next_token
    from lmjax.train import loop
    from lmjax.train.cache import CacheSpec

    epochs: list[dict] = []
    t0 = time.perf_counter()

    def on_epoch(rec: dict, step: int) -> None:
        epochs.append({"epoch": rec["epoch"], "step": step, "lr": rec.get("lr"),
                       "train_loss": rec["train_running_loss"],
                       # block-wise validation: only with train.epoch_eval=all
                       "val_loss": rec.get("val_loss"),
                       "val_perplexity": rec.get("val_perplexity"),
                       # carried validation, where the training loop computes it
                       "val_carried_perplexity": rec.get("val_carried_perplexity"),
                       "wall_seconds": rec["wall_seconds"],
                       # from the call of loop.run (data preparation included) to this
                       # epoch's validation done: the reference's wall clock
                       "bench_wall_seconds": time.perf_counter() - t0})
        log(f"lmjax epoch {rec['epoch']}: val ppl (carried) "
            f"{num(rec.get('val_carried_perplexity'))}  "
            f"lr {rec.get('lr')}  {rec['wall_seconds']:.1f} s")

    summary = loop.run(cfg, run_dir, on_epoch=on_epoch)
    # to the end of the last epoch, as the reference's: the loop's own end-of-run test
    # scoring and final writes are left out (the test is timed apart below)
    wall = epochs[-1]["bench_wall_seconds"] if epochs else time.perf_counter() - t0
    t1 = time.perf_counter()
    best = load_run(run_dir, "best")
    cache = CacheSpec.from_model(cfg.model)  # wordlm_regularized's continuous cache
    test = heldout_next_token(best, read_text_file(cfg.data.test), STREAM, cache=cache)
    test_s = time.perf_counter() - t1
    out = {"epochs": epochs, "wall_seconds": wall, "test_seconds": test_s,
           "train_seconds": summary.get("train_seconds"), "best_step": int(best.state.step),
           "test_perplexity": test["perplexity"], "test_loss": math.log(test["perplexity"]),
           "test_tokens": test["tokens"], "test_oov_rate": test["oov_rate"],
           "run_dir": str(run_dir), "params": summary.get("params"),
           # the run's own end-of-run test score, where the training loop computes one
           "summary_test_perplexity": summary.get("test_perplexity")}
    if cache is not None:  # the same tokens, the LSTM with its continuous cache
        out["test_cache_perplexity"] = test["cache"]["perplexity"]
        out["cache"] = dataclasses.asdict(cache)
    if stream_valid:  # every epoch's checkpoint on the whole valid text, state carried
        valid = read_text_file(cfg.data.valid)
        for rec in epochs:
            s = heldout_next_token(load_run(run_dir, rec["step"]), valid, STREAM)
            rec["val_perplexity_stream"] = s["perplexity"]
    return out


def run_torch(cfg: Config, ids: dict[str, np.ndarray], vocab_size: int, epochs: int,
              eval_batch: int, log: Callable[[str], None] = print) -> dict:
    from lmjax.bench.torch_wordlm import run_reference

    r = recipe_of(cfg, epochs, eval_batch)
    res = run_reference(ids["train"], ids["valid"], ids["test"], vocab_size, r,
                        on_epoch=lambda e: log(
                            f"torch epoch {e['epoch']}: val ppl {e['val_perplexity']:.2f}  "
                            f"lr {e['lr']:g}  {e['wall_seconds']:.1f} s"))
    res["recipe"] = dataclasses.asdict(r)
    return res


def regularized_budget(qc: QualityConfig, res: dict) -> float:
    """The training-time budget of the ``regularized`` side: ``bench.regularized_budget_s``,
    or the reference's wall time less what lmjax spent outside training in this benchmark
    (data preparation, compilation, validation, checkpoints), so that the regularized run's
    wall time is about the reference's."""
    if qc.regularized_budget_s > 0:
        return qc.regularized_budget_s
    lj, tc = res.get("lmjax"), res.get("torch")
    if not (lj and tc):
        raise ConfigError("bench.impls=[...,regularized] without lmjax and torch needs "
                          "bench.regularized_budget_s=SECONDS")
    overhead = lj["wall_seconds"] - (lj.get("train_seconds") or lj["wall_seconds"])
    return max(1.0, tc["wall_seconds"] - overhead)


def run_regularized(qc: QualityConfig, compose_budget: Callable[[float], Config], res: dict,
                    out: Path, log: Callable[[str], None] = print) -> dict:
    """``experiment=wordlm_regularized`` on the same files for the budget above
    (``compose_budget(seconds)``: its config with the user's overrides)."""
    budget = regularized_budget(qc, res)
    log(f"regularized: experiment=wordlm_regularized, train.time_budget_s={budget:.1f}")
    rcfg = compose_budget(budget)
    side = run_lmjax(rcfg, out / "regularized_run", False, log)
    side["time_budget_s"] = budget
    return side


# --- the report ------------------------------------------------------------------------------

def run_quality(qc: QualityConfig, cfg: Config, out: Path,
                log: Callable[[str], None] = print,
                compose_budget: Callable[[float], Config] | None = None) -> dict:
    """Both sides one after the other (then ``regularized``, when in ``bench.impls``: its
    config from ``compose_budget(seconds)``); writes quality.json and quality.md in ``out``."""
    vocab, ids = token_ids(cfg)
    res: dict[str, Any] = {
        "epochs": qc.epochs, "vocab_size": len(vocab),
        "tokens": {k: int(len(v)) for k, v in ids.items()},
        "data": {"train": cfg.data.train, "valid": cfg.data.valid, "test": cfg.data.test},
        "lmjax_config": dataclasses.asdict(cfg)}
    log(f"vocab {len(vocab)}, tokens {res['tokens']}")
    if "lmjax" in qc.impls:
        res["lmjax"] = run_lmjax(cfg, out / "lmjax_run", qc.stream_valid, log)
    if "torch" in qc.impls:
        try:
            import torch  # noqa: F401
        except ImportError:
            res["torch"] = None
            res["torch_note"] = "torch is not installed (pip install -e '.[bench]'); skipped"
            log(res["torch_note"])
        else:
            res["torch"] = run_torch(cfg, ids, len(vocab), qc.epochs, qc.eval_batch, log)
    lj, tc = res.get("lmjax"), res.get("torch")
    if "regularized" in qc.impls:
        if compose_budget is None:
            raise ConfigError("bench.impls regularized needs a way to compose its config")
        res["regularized"] = run_regularized(qc, compose_budget, res, out, log)
    rg = res.get("regularized")
    if lj and tc:
        res["test_ppl_ratio"] = lj["test_perplexity"] / tc["test_perplexity"]
        res["speedup"] = tc["wall_seconds"] / lj["wall_seconds"]
    if rg and tc:
        res["regularized_vs_torch"] = rg["test_perplexity"] / tc["test_perplexity"]
        if rg.get("test_cache_perplexity") is not None:
            res["regularized_cache_vs_torch"] = (rg["test_cache_perplexity"]
                                                 / tc["test_perplexity"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(res, indent=2, default=str))
    (out / "quality.md").write_text(markdown(res))
    return res


def markdown(res: dict) -> str:
    """The per-epoch table and the totals of :func:`run_quality`'s result."""
    from lmjax.fmt import num

    lj, tc = res.get("lmjax") or {}, res.get("torch") or {}
    n = max(len(lj.get("epochs", [])), len(tc.get("epochs", [])))
    rows = ["| epoch | lmjax val ppl (carried) | lmjax val ppl (stream) | lmjax lr | lmjax wall s "
            "| torch val ppl | torch lr | torch wall s |", "|---" * 8 + "|"]

    def cell(side: dict, i: int, key: str) -> str:
        e = side.get("epochs", [])
        return num(e[i][key]) if i < len(e) and e[i].get(key) is not None else "-"

    for i in range(n):
        rows.append(f"| {i + 1} | {cell(lj, i, 'val_carried_perplexity')} | "
                    f"{cell(lj, i, 'val_perplexity_stream')} | {cell(lj, i, 'lr')} | "
                    f"{cell(lj, i, 'bench_wall_seconds')} | {cell(tc, i, 'val_perplexity')} | "
                    f"{cell(tc, i, 'lr')} | {cell(tc, i, 'wall_seconds')} |")
    lines = [f"# lmjax and PyTorch word_language_model, {res['epochs']} epochs", "",
             f"vocabulary {num(res['vocab_size'])}; tokens {res['tokens']}", "", *rows, ""]
    rg = res.get("regularized") or {}
    for name, side in (("lmjax", lj), ("torch", tc), ("lmjax wordlm_regularized", rg)):
        if side:
            cache = (f" (with its continuous cache: {num(side['test_cache_perplexity'])})"
                     if side.get("test_cache_perplexity") is not None else "")
            lines.append(f"* {name}: test perplexity {num(side['test_perplexity'])}{cache} "
                         f"over {num(side['test_tokens'])} tokens; training + validation "
                         f"{num(side['wall_seconds'])} s, test {num(side['test_seconds'])} s")
    if res.get("torch_note"):
        lines.append(f"* torch: {res['torch_note']}")
    if "test_ppl_ratio" in res:
        lines.append(f"* lmjax / torch test perplexity: {res['test_ppl_ratio']:.4f}; "
                     f"torch / lmjax wall time: {res['speedup']:.2f}x")
    if "regularized_vs_torch" in res:
        lines.append(f"* wordlm_regularized ({num(rg['time_budget_s'])} s training budget, "
                     f"{len(rg['epochs'])} epochs) / torch test perplexity: "
                     f"{res['regularized_vs_torch']:.4f} "
                     f"({100 * (1 - res['regularized_vs_torch']):.1f}% lower)")
    if "regularized_cache_vs_torch" in res:
        r = res["regularized_cache_vs_torch"]
        lines.append(f"* wordlm_regularized with its continuous cache / torch test perplexity: "
                     f"{r:.4f} ({100 * (1 - r):.1f}% lower)")
    return "\n".join(lines) + "\n"
