"""Calibration: the logistic fit and the signals it is fitted on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.calibrate import CALIBRATION_FILE, fit_logistic, signals
from search.eval import read_gold


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(w[0] + x @ w[1:])))


def test_fit_logistic_recovers_a_clear_separation() -> None:
    rng = np.random.default_rng(0)
    positives = rng.normal(loc=[2.0, 0.0], scale=0.7, size=(200, 2))
    negatives = rng.normal(loc=[-2.0, 0.0], scale=0.7, size=(200, 2))
    x = np.vstack([positives, negatives])
    y = np.concatenate([np.ones(200), np.zeros(200)])
    w = fit_logistic(x, y)
    assert w.shape == (3,)
    assert w[1] > 2.0  # the informative feature
    assert abs(w[2]) < 0.5 * w[1]  # the noise feature
    assert abs(w[0]) < 1.0  # classes centred on 0
    assert ((predict(w, x) >= 0.5) == (y == 1)).mean() > 0.97


def test_fit_logistic_learns_a_shifted_boundary() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, size=(400, 1))
    y = (x[:, 0] > 0.7).astype(float)
    w = fit_logistic(x * 10, y, l2=0.01)
    boundary = -w[0] / w[1] / 10
    assert boundary == pytest.approx(0.7, abs=0.05)


def test_fit_logistic_is_finite_on_perfectly_separable_data() -> None:
    x = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]])
    y = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    w = fit_logistic(x, y)
    assert np.all(np.isfinite(w))
    assert w[1] > 0
    assert np.all((predict(w, x) >= 0.5) == (y == 1))


def test_fit_logistic_regularisation_shrinks_weights() -> None:
    x = np.array([[-2.0], [-1.0], [-0.5], [0.5], [1.0], [2.0]])
    y = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    assert abs(fit_logistic(x, y, l2=10.0)[1]) < abs(fit_logistic(x, y, l2=0.01)[1])


def test_fit_logistic_one_class_only_is_finite() -> None:
    w = fit_logistic(np.array([[0.1], [0.5], [0.9]]), np.ones(3))
    assert np.all(np.isfinite(w))
    assert predict(w, np.array([[0.5]]))[0] > 0.5


def test_calibration_file_is_readable_and_mixed() -> None:
    questions = read_gold(CALIBRATION_FILE)
    assert len(questions) >= 50
    assert any(q.gold for q in questions)
    assert any(not q.gold for q in questions)


@pytest.mark.parametrize(
    "question",
    ["安全巡检点要建多少个", "竟陵读书会", "驾驶证到期换证需要什么材料", "How do I renew my passport?", "学校"],
)
def test_signals_are_finite(searcher, question: str) -> None:  # type: ignore[no-untyped-def]
    margin, coverage, dense, english = signals(searcher, question)
    assert all(math.isfinite(v) for v in (margin, coverage, dense))
    assert english == (1.0 if question.isascii() else 0.0)
    assert -2.0 <= margin <= 2.0
    assert 0.0 <= coverage <= 1.0
    assert -1.0 <= dense <= 1.0


def test_signals_separate_on_and_off_corpus(searcher) -> None:  # type: ignore[no-untyped-def]
    on_margin, on_coverage, _on_dense, _ = signals(searcher, "安全巡检点要建多少个")
    off_margin, _off_coverage, _off_dense, _ = signals(searcher, "驾驶证到期换证需要什么材料")
    assert on_margin > off_margin
    assert on_margin > 0 > off_margin
    assert on_coverage > 0.5


def test_signals_match_what_ask_decides(searcher) -> None:  # type: ignore[no-untyped-def]
    for question in ["安全巡检点要建多少个", "驾驶证到期换证需要什么材料"]:
        margin, coverage, dense, english = signals(searcher, question)
        confidence = searcher.confidence(margin, coverage, dense, english)
        answer = searcher.ask(question).answer
        assert (answer is not None) == (confidence >= searcher.confidence.threshold)
        if answer is not None:
            assert answer.confidence == pytest.approx(confidence)


def test_signals_for_an_empty_question(searcher) -> None:  # type: ignore[no-untyped-def]
    assert signals(searcher, "   ") == (-1.0, 0.0, 0.0, 0.0)
