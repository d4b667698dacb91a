"""Train one model (or a sweep with -m): ``python -m experiments.run framing=two_word``.

Config groups live in conf/ (data, framing, model, optim, train, logger, experiment); any key can
be overridden on the command line (``model.hidden_size=128``). Outputs go to the Hydra run dir,
``results/runs/<date>/<time>_<name>/`` unless ``hydra.run.dir=...`` says otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lmjax.cli import check_group_choices, friendly_errors, setup_jax
from lmjax.config import from_dictconfig, register_configs

register_configs()


@hydra.main(version_base=None, config_path="../conf", config_name="config")
@friendly_errors
def main(dcfg: DictConfig) -> float | None:
    cfg = from_dictconfig(dcfg)
    setup_jax()
    from lmjax.train.loop import run

    summary = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    print(_report(summary))
    return summary.get("val_loss")


def _report(s: dict) -> str:
    metric = "val_bits_per_char" if "val_bits_per_char" in s else "val_perplexity"
    lines = [f"{s['name']}: {s['framing']} ({s['level']}), {s['num_sequences']} sequences, "
             f"vocab {s['vocab_size']}, {s['params']} params, {s['epochs']:g} epochs",
             f"  train acc {s['train_accuracy']:.4f} (oracle {s['oracle_train_accuracy']:.4f})  "
             f"val acc {s['val_accuracy']:.4f} (oracle {s['oracle_val_accuracy']:.4f})  "
             f"{metric} {s[metric]:.4f}",
             f"  {s['train_seconds']:.1f}s training, {s['tokens_per_second']:,.0f} tokens/s"]
    lines += [f"  > {x}" for x in s["samples"]]
    return "\n".join(lines)


if __name__ == "__main__":
    check_group_choices(Path(__file__).resolve().parents[1] / "conf", sys.argv[1:])
    main()
