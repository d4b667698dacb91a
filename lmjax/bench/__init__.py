"""Side-by-side training-speed benchmark: lmjax's own train step against PyTorch, Flax and Keras.

``python -m experiments.bench`` runs it; see docs/benchmarks.md for the configs and results.
"""

from lmjax.bench.shapes import SHAPES, BenchConfig, Shape
from lmjax.bench.runner import run_bench, to_markdown

__all__ = ["SHAPES", "BenchConfig", "Shape", "run_bench", "to_markdown"]
