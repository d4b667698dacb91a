"""Train one model (or a sweep with -m): ``python -m experiments.run framing=two_word``.

Config groups live in conf/ (data, framing, model, optim, train, logger, experiment); any key can
be overridden on the command line (``model.hidden_size=128``). Outputs go to the Hydra run dir,
``results/runs/<date>/<time>_<name>/`` unless ``hydra.run.dir=...`` says otherwise, and the run
prints that dir last. Bad input (a misspelled key too) is one ``lmjax: error:`` line, exit 2, and
leaves no new folder behind (lmjax/hydra_app.py); ``--help`` explains every key.

With ``-m`` (a sweep) each job gets its own dir under ``results/sweeps/<date>_<time>/``, a W&B run
named by its overrides in a group named after the sweep, and a job that fails is recorded there
(``error.txt``, ``sweep_summary.jsonl``) without stopping the others; see docs/sweeps.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lmjax.cli import friendly_errors, setup_jax
from lmjax.config import from_dictconfig, register_configs
from lmjax.fmt import num
from lmjax.hydra_app import run_dir_guard, run_main, shown
from lmjax.infer.samples import run_samples
from lmjax.search.space import check_overrides
from lmjax.sweep import job_info, name_job, run_job

register_configs()


@hydra.main(version_base=None, config_path="../conf", config_name="config")
@friendly_errors
def main(dcfg: DictConfig) -> float | None:
    info = job_info()
    out = info.run_dir

    def job(accept) -> dict:
        cfg = name_job(from_dictconfig(dcfg), info)
        setup_jax()
        if cfg.train.parallel_seeds > 1:  # K seeds in one vmapped program, one dir per seed
            from lmjax.train.multiseed import run_seeds

            per_seed = run_seeds(cfg, out, samples=run_samples)
            for s in per_seed:
                print(_report(s))
            losses = [s["val_loss"] for s in per_seed]
            return {**per_seed[0], "val_loss": sum(losses) / len(losses), "_printed": True}
        from lmjax.search.trial import run_trial  # a trial of an Optuna search reports to it

        return run_trial(cfg, out, on_start=accept, samples=run_samples)

    # a refused run leaves no new folder behind and an existing run's .hydra/ as it was
    with run_dir_guard(out, dcfg) as accept:
        summary = run_job(lambda: job(accept), info)  # a multirun records a failed job, goes on
    if summary is None:
        return None
    if not summary.pop("_printed", False):
        print(_report(summary))
    if not info.multirun:  # a sweep prints its sweep dir once, at the end
        print(f"run dir: {shown(out)}")
    return summary.get("val_loss", summary.get("val_carried_loss"))  # train.epoch_eval=carried


def _report(s: dict) -> str:
    """The run's summary for the terminal; every number through :func:`lmjax.fmt.num`, so a
    diverged run's perplexity of 1e300 prints as ``1.0e+300``."""
    # train.epoch_eval=carried: the carried validation alone
    carried = "val_accuracy" not in s and "val_carried_accuracy" in s
    val = "val_carried" if carried else "val"
    metric = f"{val}_bits_per_char" if f"{val}_bits_per_char" in s else f"{val}_perplexity"

    def oracle(key: str) -> str:  # not computed for sharded data (it needs every sample)
        v = s.get(key, float("nan"))
        return f" (oracle {num(v)})" if v == v else ""

    lines = [f"{s['name']}: {s['framing']} ({s['level']}), {num(s['num_sequences'])} sequences, "
             f"vocab {num(s['vocab_size'])}, {num(s['params'])} params, {s['epochs']:g} epochs"]
    if s.get("status") == "diverged":
        lines.append(f"  DIVERGED: {s.get('reason') or 'the loss ended far above ln(vocab)'}")
    train = ("" if carried else
             f"train acc {num(s['train_accuracy'])}{oracle('oracle_train_accuracy')}  ")
    lines += [f"  {train}{val} acc {num(s[f'{val}_accuracy'])}{oracle('oracle_val_accuracy')}  "
              f"{metric} {num(s[metric])}",
              f"  {num(s['train_seconds'], 1)}s training, "
              f"{num(round(s['tokens_per_second']))} tokens/s"]
    lines += _test_lines(s)
    lines += [f"  > {x}" for x in s["samples"]]
    return "\n".join(lines)


def _test_lines(s: dict) -> list[str]:
    """The end-of-run test metrics (docs/metrics.md), or why there are none."""
    if "test_loss" in s:
        metric = "test_bits_per_char" if "test_bits_per_char" in s else "test_perplexity"
        line = (f"  test (step {s['test_step']}, best validation; one stream): {metric} "
                f"{num(s[metric])}  test_loss {num(s['test_loss'])}  "
                f"test_tokens {num(s['test_tokens'])}  test_oov_rate {num(s['test_oov_rate'])}")
        cache = metric.replace("test_", "test_cache_")
        if cache in s:  # model.cache_window > 0: the same tokens, the LSTM with its cache
            line += f"\n  with the continuous cache: {cache} {num(s[cache])}"
        return [line] + ([f"  ({s['test_note']})"] if s.get("test_note") else [])
    return [f"  test: {s['test_note']}"] if s.get("test_note") else []


if __name__ == "__main__":
    friendly_errors(check_overrides)(sys.argv[1:])  # one line for an unreadable search space
    run_main(main, Path(__file__).resolve().parents[1] / "conf", sys.argv[1:])
