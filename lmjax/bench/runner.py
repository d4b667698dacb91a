"""Interleaved timing of the implementations, lmjax's ratio to PyTorch, and the loop overhead."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lmjax.bench.impls import ADAPTERS, PeerMissing, versions
from lmjax.bench.shapes import SHAPES, BenchConfig, Shape

GAP_S = 0.2  # pause between two implementations' rounds (lets spinning worker threads sleep)


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_shape(shape: Shape, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Build every implementation for one shape, warm each up, then time them in interleaved
    rounds (lmjax, torch, flax, keras, lmjax, torch, ...). Returns the config's JSON entry."""
    built: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    per_round: dict[str, int] = {}
    compile_s: dict[str, float] = {}
    for name in cfg.impls:
        try:
            t0 = time.perf_counter()
            impl = ADAPTERS[name](shape, cfg.lr, cfg.seed)
            impl.run(1)  # compiles (JAX) / allocates (torch)
            compile_s[name] = time.perf_counter() - t0
        except PeerMissing as e:
            skipped[name] = str(e)
            log(f"  {shape.name}: {name} skipped: {e}")
            continue
        # size a round to about cfg.round_s from a short timed run
        t0 = time.perf_counter()
        done = impl.run(3)
        per_step = (time.perf_counter() - t0) / done
        per_round[name] = max(1, round(cfg.round_s / max(per_step, 1e-6)))
        if hasattr(impl, "auto_per_call"):
            # lmjax fuses as many steps per call as the training loop would, unless one such
            # call would outlast a round (a slow config, where fusing saves nothing measurable)
            impl.set_per_call(min(impl.auto_per_call, per_round[name]))
            impl.run(1)  # compiles the chunk
            per_round[name] = max(per_round[name] // impl.per_call, 1) * impl.per_call
        for _ in range(cfg.warmup_rounds):
            impl.run(per_round[name])
        built[name] = impl
    samples: dict[str, list[float]] = {n: [] for n in built}
    for _ in range(cfg.rounds):
        for name, impl in built.items():
            time.sleep(GAP_S)
            t0 = time.perf_counter()
            done = impl.run(per_round[name])
            samples[name].append(done * shape.tokens_per_step / (time.perf_counter() - t0))
    results = {n: {"tokens_per_s": _stats(v), "samples": v,
                   "sequences_per_s_median": statistics.median(v) / shape.seq_len,
                   "steps_per_round": per_round[n], "setup_and_compile_s": compile_s[n]}
               for n, v in samples.items()}
    def ratio(name: str) -> float | None:
        if name not in results or "torch" not in results:
            return None
        return results[name]["tokens_per_s"]["median"] / results["torch"]["tokens_per_s"]["median"]

    for n in results:
        log(f"  {shape.name}: {n:6s} {results[n]['tokens_per_s']['median']:>10,.0f} tokens/s "
            f"(min {results[n]['tokens_per_s']['min']:,.0f}, max "
            f"{results[n]['tokens_per_s']['max']:,.0f})")
    return {"shape": {**shape.__dict__, "tokens_per_step": shape.tokens_per_step},
            "results": results, "skipped": skipped, "ratio_vs_torch": ratio("lmjax"),
            "ratio_dp_vs_torch": ratio("lmjax_dp")}


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,"  # 55 chars -> vocab 57


def loop_overhead(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Config A through the real training loop (lmjax.train.loop.run, what experiments.run
    calls) against lmjax's bare jitted step on the same shapes.

    The loop trains ``loop_epochs`` epochs of 100 steps on random text; its tokens/s come from
    metrics.jsonl's ``train_seconds`` between the end of epoch 1 (which includes compiling) and
    the last epoch, so evaluation and compiling are excluded, as they are from the bare step,
    which is timed right after the loop (same steps per round as one loop epoch).
    """
    from lmjax.config import (Config, DataConfig, FramingConfig, LoggerConfig, ModelConfig,
                              OptimConfig, SampleConfig, TrainConfig)
    from lmjax.train.loop import run

    shape = SHAPES["A"]
    steps_per_epoch = 100
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.txt"
        _random_text(path, shape, steps_per_epoch, cfg.seed)
        rcfg = Config(
            name="bench_loop", seed=cfg.seed,
            data=DataConfig(name="file", path=str(path), split="none", lowercase=False),
            framing=FramingConfig(name="char", level="char", seq_len=shape.seq_len, step=3),
            model=ModelConfig(embed_size=0, hidden_size=shape.hidden, num_layers=1),
            optim=OptimConfig(name="adam", lr=cfg.lr, clip_norm=5.0),
            train=TrainConfig(epochs=cfg.loop_epochs, batch_size=shape.batch, progress=False,
                              checkpoint_every_s=0, eval_max_train_samples=2000),
            sample=SampleConfig(prompts=["ab"], length=2), logger=LoggerConfig(name="none"))
        summary = run(rcfg, Path(tmp) / "run")
        recs = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    if summary["vocab_size"] != shape.vocab:
        raise RuntimeError(f"loop bench vocabulary {summary['vocab_size']} != {shape.vocab}")
    steps = recs[-1]["step"] - recs[0]["step"]
    secs = recs[-1]["train_seconds"] - recs[0]["train_seconds"]
    loop_tps = steps * shape.tokens_per_step / secs
    impl = ADAPTERS["lmjax"](shape, cfg.lr, cfg.seed)
    impl.set_per_call(impl.auto_per_call)  # as the loop fuses
    impl.run(1)
    samples = []
    for _ in range(cfg.rounds):
        t0 = time.perf_counter()
        done = impl.run(steps // (cfg.loop_epochs - 1))
        samples.append(done * shape.tokens_per_step / (time.perf_counter() - t0))
    bare_tokens_per_s = statistics.median(samples)
    out = {"config": "A", "loop_tokens_per_s": loop_tps, "bare_step_tokens_per_s": bare_tokens_per_s,
           "loop_steps_timed": steps, "loop_seconds_timed": secs,
           "overhead": bare_tokens_per_s / loop_tps - 1.0}
    log(f"  loop overhead (A): loop {loop_tps:,.0f} tokens/s vs bare step "
        f"{bare_tokens_per_s:,.0f} tokens/s -> {100 * out['overhead']:+.1f}%")
    return out


def _random_text(path: Path, shape: Shape, steps: int, seed: int) -> None:
    """Random text that the char framing (step 3) cuts into exactly ``steps`` batches of
    ``shape``'s windows; every symbol occurs (the vocabulary is the bench's 57)."""
    n_chars = shape.seq_len + 3 * (shape.batch * steps - 1) + 1 - len(_ALPHABET)
    rng = np.random.default_rng(seed)
    text = "".join(np.array(list(_ALPHABET))[rng.integers(0, len(_ALPHABET), n_chars)])
    path.write_text(_ALPHABET + text, encoding="utf-8")  # every symbol at least once


def first_step(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Time to the first training step of ``python -m experiments.run``, with an empty
    compilation cache (cold) and then again with the cache that run filled (warm).

    The run: config A's model (one-hot 57 chars, LSTM 128, T 40, batch 128) on random text,
    one epoch of 20 steps, no W&B. Each pair gets a fresh cache dir (``LMJAX_JAX_CACHE``).
    Reported per run: the process's wall time (start to exit, measured here) and the run's own
    ``first_chunk_seconds`` (training set-up, compiling or loading the step, and the first
    chunk of ``first_chunk_steps`` steps), medians over ``first_step_repeats`` pairs.
    """
    import subprocess
    import sys

    shape = SHAPES["A"]
    steps = 20
    rows = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.txt"
        _random_text(path, shape, steps, cfg.seed)
        for rep in range(cfg.first_step_repeats):
            env = {**os.environ, "LMJAX_JAX_CACHE": str(Path(tmp) / f"cache{rep}")}
            for kind in ("cold", "warm"):
                run_dir = Path(tmp) / f"run{rep}{kind}"
                args = [sys.executable, "-m", "experiments.run", "data=file",
                        f"data.path={path}", "data.split=none", "data.lowercase=false",
                        "framing=char", f"framing.seq_len={shape.seq_len}", "framing.step=3",
                        "model.embed_size=0", f"model.hidden_size={shape.hidden}",
                        f"train.batch_size={shape.batch}", "train.epochs=1",
                        "train.progress=false", "train.eval_max_train_samples=512",
                        "train.checkpoint_every_s=0", "sample.length=0", "logger=none",
                        f"seed={cfg.seed}", f"hydra.run.dir={run_dir}"]
                t0 = time.perf_counter()
                r = subprocess.run(args, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if r.returncode != 0:
                    raise RuntimeError(f"first-step run failed: {r.stderr.strip()[-500:]}")
                summ = json.loads((run_dir / "summary.json").read_text())
                rows[kind].append({"process_seconds": wall,
                                   "first_chunk_seconds": summ["first_chunk_seconds"],
                                   "first_chunk_steps": summ["first_chunk_steps"]})
                log(f"  first step ({kind} cache, pair {rep + 1}): process {wall:.1f} s, "
                    f"first chunk of {summ['first_chunk_steps']} steps done after "
                    f"{summ['first_chunk_seconds']:.2f} s")
    out = {"config": "A", "steps": steps, "runs": rows}
    for kind in rows:
        for key in ("process_seconds", "first_chunk_seconds"):
            out[f"{kind}_{key}"] = statistics.median(r[key] for r in rows[kind])
    return out


def _cpu_name() -> str:
    """The CPU's model name and its widest vector ISA ("AMD EPYC (avx2)"): the same model name
    covers machines whose matmul speed differs by 2x, and the ratio to PyTorch (oneDNN) moves
    with the ISA, so results record it."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    isa = next((f for f in ("avx512f", "avx2", "avx", "neon", "asimd") if f in flags), "")
    return f"{name} ({isa})" if isa else name


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Every requested config; returns (and writes to cfg.out, plus a .md twin) the results."""
    import jax

    meta = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "device": f"{jax.devices()[0].platform}: {_cpu_name()}, {os.cpu_count()} cores",
            "versions": versions(), "rounds": cfg.rounds, "round_s": cfg.round_s,
            "warmup_rounds": cfg.warmup_rounds, "optimizer": f"adam lr {cfg.lr}, clip norm 5"}
    try:
        import torch

        meta["torch_threads"] = torch.get_num_threads()
    except Exception:
        pass
    out: dict[str, Any] = {"meta": meta, "configs": {}}
    for name in cfg.configs:
        log(f"config {name}: {SHAPES[name].what}")
        out["configs"][name] = time_shape(SHAPES[name], cfg, log)
    if cfg.loop_overhead and "lmjax" in cfg.impls:
        out["loop_overhead"] = loop_overhead(cfg, log)
    if cfg.first_step:
        out["first_step"] = first_step(cfg, log)
    if cfg.out:
        path = Path(cfg.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
        path.with_suffix(".md").write_text(to_markdown(out))
        log(f"wrote {path} and {path.with_suffix('.md')}")
    return out


def to_markdown(res: dict) -> str:
    m = res["meta"]
    impls = sorted({n for c in res["configs"].values() for n in c["results"]},
                   key=list(ADAPTERS).index)
    lines = [f"Device: {m['device']}; {m['date_utc']} UTC; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
             + f"; {m['rounds']} interleaved rounds of ~{m['round_s']} s each after "
               f"{m['warmup_rounds']} warm-up rounds.", "",
             "Tokens per second, median (min-max); ratio = lmjax median / PyTorch median "
             "(lmjax_dp: the batch split over the devices).", "",
             "| config | " + " | ".join(impls) + " | lmjax / torch | lmjax_dp / torch |",
             "|---|" + "---|" * (len(impls) + 2)]
    for name, c in res["configs"].items():
        cells = []
        for n in impls:
            r = c["results"].get(n)
            if r is None:
                cells.append("skipped" if n in c["skipped"] else "-")
            else:
                s = r["tokens_per_s"]
                cells.append(f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})")
        ratio = "-" if c["ratio_vs_torch"] is None else f"{c['ratio_vs_torch']:.2f}x"
        dp = c.get("ratio_dp_vs_torch")
        ratio += " | " + ("-" if dp is None else f"{dp:.2f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    notes = {n: why for c in res["configs"].values() for n, why in c["skipped"].items()}
    lines += [""] + [f"* {n} skipped: {why}" for n, why in notes.items()]
    if "loop_overhead" in res:
        lo = res["loop_overhead"]
        lines += ["", f"Training loop (config A, lmjax.train.loop.run): "
                      f"{lo['loop_tokens_per_s']:,.0f} tokens/s vs the bare step's "
                      f"{lo['bare_step_tokens_per_s']:,.0f}: overhead "
                      f"{100 * lo['overhead']:+.1f}%."]
    if "first_step" in res:
        fs = res["first_step"]
        steps = fs["runs"]["cold"][0]["first_chunk_steps"]
        lines += ["", f"Time to the first training step (`experiments.run`, config A's model, "
                      f"medians of {len(fs['runs']['cold'])} cold/warm pairs): first chunk of "
                      f"{steps} steps done after {fs['cold_first_chunk_seconds']:.2f} s with an "
                      f"empty compilation cache, {fs['warm_first_chunk_seconds']:.2f} s with "
                      f"a warm one; whole process {fs['cold_process_seconds']:.1f} s cold, "
                      f"{fs['warm_process_seconds']:.1f} s warm."]
    return "\n".join(lines) + "\n"
