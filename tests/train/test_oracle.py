"""Oracle accuracy on hand-checked cases."""

import numpy as np
import pytest

from lmjax.train.metrics import oracle_accuracy, finalize


def test_conflicting_targets_cap_accuracy():
    # context [1] -> 2, 2, 3 (best 2 of 3); context [4] -> 5 (1 of 1): 3 / 4
    inputs = np.array([[1], [1], [1], [4]])
    targets = np.array([[2], [2], [3], [5]])
    w = np.ones((4, 1), np.float32)
    assert oracle_accuracy(inputs, targets, w) == pytest.approx(3 / 4)


def test_contexts_are_whole_prefixes():
    # same last token, different earlier tokens: no conflict
    inputs = np.array([[1, 7], [2, 7]])
    targets = np.array([[7, 3], [7, 4]])
    w = np.array([[0, 1], [0, 1]], np.float32)
    assert oracle_accuracy(inputs, targets, w) == 1.0
    # identical prefixes with different targets: half
    inputs2 = np.array([[1, 7], [1, 7]])
    assert oracle_accuracy(inputs2, targets, w) == 0.5


def test_every_position_and_zero_weights():
    # sequence weighting: position 0 context [1] -> 2 and 3 conflict (1 of 2); position 1 unique
    inputs = np.array([[1, 2], [1, 3], [9, 9]])
    targets = np.array([[2, 5], [3, 6], [9, 9]])
    w = np.array([[1, 1], [1, 1], [0, 0]], np.float32)
    assert oracle_accuracy(inputs, targets, w) == pytest.approx(3 / 4)


def test_finalize_word_and_char():
    sums = {"loss_sum": 2 * np.log(4), "correct": 1.0, "top5": 2.0, "weight": 2.0}
    w = finalize(sums, "word")
    assert w["perplexity"] == pytest.approx(4.0) and w["accuracy"] == 0.5
    c = finalize(sums, "char")
    assert c["bits_per_char"] == pytest.approx(2.0) and c["top5_accuracy"] == 1.0
