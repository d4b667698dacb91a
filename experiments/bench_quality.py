"""Word-level quality, lmjax beside PyTorch's word_language_model: ``python -m
experiments.bench_quality``.

    python -m experiments.bench_quality data=files data.train=train.txt \\
        data.valid=valid.txt data.test=test.txt bench.epochs=6
    python -m experiments.bench_quality bench.cut=sherlock.txt bench.cut_dir=data/sherlock

Trains lmjax (``experiment=wordlm_reference`` and any lmjax override given, e.g.
``model.hidden_size=650``) and the reference (PyTorch, the bench extra) one after the other on the
same token ids, same recipe, epochs and batch layout; writes per-epoch validation perplexity,
test perplexity and wall time of both to ``bench.out`` (quality.json, quality.md). Keys
(``bench.*``): epochs (6), impls ([lmjax,torch]), out (results/bench_quality/<date>_<time>),
eval_batch (10), stream_valid (true: score each lmjax epoch on the valid file as one stream);
``bench.impls=[lmjax,torch,regularized]`` then also trains ``experiment=wordlm_regularized`` for
the reference's wall time (less lmjax's non-training time; or ``bench.regularized_budget_s``);
``bench.cut=FILE bench.cut_dir=DIR [bench.cut_fracs=[0.85,0.05,0.10]]`` only cuts FILE by position
(at line boundaries) into DIR/train.txt, valid.txt, test.txt. docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from lmjax.cli import friendly_errors, setup_jax
from lmjax.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"


def parse(argv: list[str]):
    """``bench.*`` keys -> QualityConfig; every other key=value is an lmjax override."""
    from lmjax.bench.quality import QualityConfig

    bench, lmjax = [], []
    for a in argv:
        if "=" not in a:
            raise ConfigError(f"expected key=value, got {a!r}")
        (bench if a.startswith("bench.") else lmjax).append(a.removeprefix("bench."))
    schema = OmegaConf.structured(QualityConfig)
    try:
        merged = OmegaConf.merge(schema, OmegaConf.from_dotlist(bench))
    except Exception as e:
        raise ConfigError(f"bench.{str(e).splitlines()[0]}") from None
    qc = QualityConfig(**OmegaConf.to_container(merged))
    if qc.epochs < 1:
        raise ConfigError(f"bench.epochs must be >= 1, got {qc.epochs}")
    bad = set(qc.impls) - {"lmjax", "torch", "regularized"}
    if bad:
        raise ConfigError(f"unknown bench.impls {sorted(bad)}; choose from lmjax, torch, "
                          "regularized")
    return qc, lmjax


@friendly_errors
def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    qc, overrides = parse(argv)
    from lmjax.bench import quality

    if qc.cut:
        if not qc.cut_dir:
            raise ConfigError("bench.cut needs bench.cut_dir=DIR (where train/valid/test.txt go)")
        for name, r in quality.cut_text(qc.cut, qc.cut_dir, tuple(qc.cut_fracs)).items():
            print(f"{name}: {r['path']} ({r['lines']} lines)")
        return
    out = Path(qc.out or f"results/bench_quality/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    if (out / "quality.json").exists() or (out / "lmjax_run").exists():
        raise ConfigError(f"{out} already holds a benchmark; give a new bench.out=DIR")
    cfg = quality.compose(CONF, overrides, qc.epochs, every_epoch=qc.stream_valid)
    setup_jax()
    res = quality.run_quality(
        qc, cfg, out, compose_budget=lambda s: quality.compose(
            CONF, overrides, qc.epochs, preset="wordlm_regularized", budget_s=s))
    print((out / "quality.md").read_text())
    print(f"written: {out / 'quality.json'}, {out / 'quality.md'}")
    if res.get("torch_note"):
        print(res["torch_note"])


if __name__ == "__main__":
    main(sys.argv[1:])
