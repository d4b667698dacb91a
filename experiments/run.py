"""Train one model (or a sweep with -m): ``python -m experiments.run framing=two_word``.

Config groups live in conf/ (data, framing, model, optim, train, logger, experiment); any key can
be overridden on the command line (``model.hidden_size=128``). Outputs go to the Hydra run dir,
``results/runs/<date>/<time>_<name>/`` unless ``hydra.run.dir=...`` says otherwise.

With ``-m`` (a sweep) each job gets its own dir under ``results/sweeps/<date>_<time>/``, a W&B run
named by its overrides in a group named after the sweep, and a job that fails is recorded there
(``error.txt``, ``sweep_summary.jsonl``) without stopping the others; see docs/sweeps.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lmjax.cli import check_group_choices, friendly_errors, setup_jax
from lmjax.config import from_dictconfig, register_configs
from lmjax.infer.samples import run_samples
from lmjax.sweep import job_info, name_job, run_job

register_configs()


@hydra.main(version_base=None, config_path="../conf", config_name="config")
@friendly_errors
def main(dcfg: DictConfig) -> float | None:
    info = job_info()

    def job() -> dict:
        cfg = name_job(from_dictconfig(dcfg), info)
        setup_jax()
        out = Path(HydraConfig.get().runtime.output_dir)
        if cfg.train.parallel_seeds > 1:  # K seeds in one vmapped program, one dir per seed
            from lmjax.train.multiseed import run_seeds

            per_seed = run_seeds(cfg, out, samples=run_samples)
            for s in per_seed:
                print(_report(s))
            losses = [s["val_loss"] for s in per_seed]
            return {**per_seed[0], "val_loss": sum(losses) / len(losses), "_printed": True}
        from lmjax.train.loop import run

        return run(cfg, out, samples=run_samples)

    summary = run_job(job, info)  # a multirun records a failed job and goes on
    if summary is None:
        return None
    if not summary.pop("_printed", False):
        print(_report(summary))
    return summary.get("val_loss")


def _report(s: dict) -> str:
    metric = "val_bits_per_char" if "val_bits_per_char" in s else "val_perplexity"
    def oracle(key: str) -> str:  # not computed for sharded data (it needs every sample)
        v = s.get(key, float("nan"))
        return f" (oracle {v:.4f})" if v == v else ""

    lines = [f"{s['name']}: {s['framing']} ({s['level']}), {s['num_sequences']} sequences, "
             f"vocab {s['vocab_size']}, {s['params']} params, {s['epochs']:g} epochs",
             f"  train acc {s['train_accuracy']:.4f}{oracle('oracle_train_accuracy')}  "
             f"val acc {s['val_accuracy']:.4f}{oracle('oracle_val_accuracy')}  "
             f"{metric} {s[metric]:.4f}",
             f"  {s['train_seconds']:.1f}s training, {s['tokens_per_second']:,.0f} tokens/s"]
    lines += [f"  > {x}" for x in s["samples"]]
    return "\n".join(lines)


if __name__ == "__main__":
    check_group_choices(Path(__file__).resolve().parents[1] / "conf", sys.argv[1:])
    main()
