"""A tiny char model shared by the live keyboard tests (trained once per session, ~3 s)."""

import pytest

from lmjax.config import (Config, DataConfig, FramingConfig, LoggerConfig, ModelConfig,
                          OptimConfig, SampleConfig, TrainConfig)
from lmjax.infer.keyboard import TUTORIAL_QUOTES
from lmjax.train.loop import run

TINY_TEXT = ("jack and jill went up the hill\nto fetch a pail of water\n"
             "jack fell down and broke his crown\nand jill came tumbling after\n"
             + "\n".join(q.lower() for q in TUTORIAL_QUOTES) + "\n") * 6


def train_tiny(run_dir, seed: int = 0, hidden: int = 24):
    corpus = run_dir.parent / f"{run_dir.name}_corpus.txt"
    corpus.write_text(TINY_TEXT)
    cfg = Config(data=DataConfig(name="file", path=str(corpus), split="none"),
                 framing=FramingConfig(name="sequence", level="char", seq_len=16, step=0),
                 model=ModelConfig(embed_size=0, hidden_size=hidden),
                 optim=OptimConfig(name="adam", lr=2e-2), logger=LoggerConfig(name="none"),
                 train=TrainConfig(epochs=6, batch_size=16, progress=False),
                 sample=SampleConfig(prompts=[], length=0), seed=seed)
    run(cfg, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A char model (1 x 24) of nursery rhymes and the tutorial's quotes."""
    return train_tiny(tmp_path_factory.mktemp("live") / "tiny")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_run):
    from lmjax.infer.load import load_run
    return load_run(tiny_run)
