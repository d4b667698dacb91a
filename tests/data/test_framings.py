"""Exact expected arrays for every framing on a tiny corpus."""

import numpy as np
import pytest

from lmjax.config import FramingConfig
from lmjax.data.framings import frame, line_by_line, n_words, sequence, char_windows, fit_width
from lmjax.errors import DataError

# two lines of ids: "a b c" / "d e"
LINES = [np.array([2, 3, 4]), np.array([5, 6])]


def eq(a, b):
    np.testing.assert_array_equal(a, np.array(b))


def test_one_word_crosses_lines():
    f = n_words(LINES, 1, cross_lines=True)
    eq(f.inputs, [[2], [3], [4], [5]])
    eq(f.targets, [[3], [4], [5], [6]])
    eq(f.weights, [[1], [1], [1], [1]])


def test_one_word_within_lines():
    f = n_words(LINES, 1, cross_lines=False)
    eq(f.inputs, [[2], [3], [5]])
    eq(f.targets, [[3], [4], [6]])


def test_two_word():
    f = n_words(LINES, 2, cross_lines=True)
    eq(f.inputs, [[2, 3], [3, 4], [4, 5]])
    eq(f.targets, [[3, 4], [4, 5], [5, 6]])
    eq(f.weights, [[0, 1], [0, 1], [0, 1]])
    g = n_words(LINES, 2, cross_lines=False)
    eq(g.inputs, [[2, 3]])
    eq(g.targets, [[3, 4]])


def test_line_by_line_left_pads_prefixes():
    f = line_by_line(LINES)
    eq(f.inputs, [[0, 2], [2, 3], [0, 5]])
    eq(f.targets, [[2, 3], [3, 4], [5, 6]])
    eq(f.weights, [[0, 1], [0, 1], [0, 1]])


def test_char_windows_step():
    stream = [np.arange(10, 20)]  # 10 tokens
    f = char_windows(stream, seq_len=4, step=3)
    eq(f.inputs, [[10, 11, 12, 13], [13, 14, 15, 16]])
    eq(f.targets, [[11, 12, 13, 14], [14, 15, 16, 17]])
    eq(f.weights, [[0, 0, 0, 1], [0, 0, 0, 1]])


def test_sequence_weights_every_position():
    stream = [np.arange(10, 17)]  # 7 tokens -> blocks of 3 (+1 target) every 3
    f = sequence(stream, seq_len=3)
    eq(f.inputs, [[10, 11, 12], [13, 14, 15]])
    eq(f.targets, [[11, 12, 13], [14, 15, 16]])
    eq(f.weights, np.ones((2, 3)))
    g = sequence(stream, seq_len=3, step=2)
    eq(g.inputs, [[10, 11, 12], [12, 13, 14]])


def test_frame_too_short_is_a_clear_error():
    with pytest.raises(DataError, match="too short for framing=char.*41 characters"):
        frame([np.arange(5)], FramingConfig(name="char", level="char", seq_len=40, step=3))
    with pytest.raises(DataError, match="too short for framing=line_by_line"):
        frame([np.array([2]), np.array([3])], FramingConfig(name="line_by_line"))


def test_fit_width_pads_and_truncates_on_the_left():
    f = line_by_line(LINES)
    w = fit_width(f, 3)
    eq(w.inputs, [[0, 0, 2], [0, 2, 3], [0, 0, 5]])
    eq(w.weights[:, -1], [1, 1, 1])
    eq(fit_width(f, 1).inputs, [[2], [3], [5]])
