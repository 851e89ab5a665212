"""Fit the answer/no-answer decision (``search.engine.Confidence``).

    python -m search.calibrate [CALIBRATION.jsonl]

reads hand-written questions (default ``search/data/calibration.jsonl``:
answerable paraphrases, keywords, figures, English and typos about seed items
that the dev set does not use, and unanswerable questions about other public
services and other levels of education), computes the three signals for each,
fits an L2-regularised logistic regression, and writes
``search/data/confidence.json``. The dev set is never read here.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.config import Settings
from search.engine import CONFIDENCE_FILE, Confidence, Searcher
from search.eval import read_gold
from search.query import parse_query

CALIBRATION_FILE = Path(__file__).with_name("data") / "calibration.jsonl"
ANSWERED_SHARE = 0.95
# The e5 score moves with the question's language (an English question scores
# ~0.1 lower against Chinese text), so the model also sees whether the
# question is in English and can shift its bar for the dense score.
# Coverage of the question by the answer sentence was tried as a fourth
# signal; its fitted weight was ~0 (-0.10), so it is left out.
FEATURES = ("margin", "dense", "english")


@dataclass(frozen=True)
class Sample:
    query: str
    answerable: bool
    margin: float
    coverage: float
    dense: float
    english: float


def signals(searcher: Searcher, text: str) -> tuple[float, float, float, float]:
    """(margin, coverage, dense, english) for a question, as ``Searcher.ask`` computes them."""
    query = parse_query(text, searcher.tokenizer)
    hits, vector = searcher._rank(query, searcher.answers.passages_considered, None)
    candidate = searcher.answers.best(query, hits, 0.0) if hits else None
    if candidate is None:
        return -1.0, 0.0, 0.0, 1.0 if query.is_english else 0.0
    return searcher.answer_signals(query, hits, vector, candidate.text)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 100) -> np.ndarray:
    """Newton's method for L2-regularised logistic regression; returns [bias, *weights]."""
    design = np.hstack([np.ones((x.shape[0], 1)), x])
    w = np.zeros(design.shape[1])
    reg = l2 * np.eye(design.shape[1])
    # The bias is (all but) not shrunk: a trace keeps the Hessian invertible
    # when the samples hold one class only.
    reg[0, 0] = 1e-6
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        gradient = design.T @ (p - y) + reg @ w
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else CALIBRATION_FILE
    searcher = Searcher.open(Settings.from_env())
    samples = [Sample(q.query, bool(q.gold), *signals(searcher, q.query)) for q in read_gold(path)]
    x = np.array([[s.margin, s.dense, s.english] for s in samples])
    y = np.array([1.0 if s.answerable else 0.0 for s in samples])
    # Scale features to unit spread for a well-conditioned fit, then unscale.
    scale = x.std(axis=0) + 1e-9
    w = fit_logistic(x / scale, y)
    confidence = Confidence(
        bias=float(w[0]),
        margin_weight=float(w[1] / scale[0]),
        coverage_weight=0.0,
        dense_weight=float(w[2] / scale[1]),
        english_weight=float(w[3] / scale[2]),
    )
    predicted = np.array([confidence(s.margin, s.coverage, s.dense, s.english) for s in samples])
    # The operating point: withholding an answer that is there costs more
    # than a weak answer to a question the corpus does not cover, so the
    # threshold is the highest one that still answers ANSWERED_SHARE of the
    # answerable calibration questions.
    answerable_scores = np.sort(predicted[y == 1])
    threshold = float(answerable_scores[int(np.floor((1 - ANSWERED_SHARE) * len(answerable_scores)))])
    threshold = min(threshold, 0.5)
    right = ((predicted >= threshold) == (y == 1)).mean()
    for s, p in sorted(zip(samples, predicted, strict=True), key=lambda pair: pair[1]):
        flag = "" if (p >= threshold) == s.answerable else "  <- wrong"
        print(f"{p:6.3f} {'ans' if s.answerable else 'no '} m={s.margin:+.3f} c={s.coverage:.2f} d={s.dense:.3f} "
              f"{s.query[:40]}{flag}")
    record = {
        "bias": confidence.bias,
        "margin_weight": confidence.margin_weight,
        "coverage_weight": confidence.coverage_weight,
        "dense_weight": confidence.dense_weight,
        "english_weight": confidence.english_weight,
        "threshold": threshold,
        "fitted_on": path.name,
        "samples": len(samples),
        "training_accuracy": round(float(right), 4),
    }
    CONFIDENCE_FILE.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    answered = (predicted[y == 1] >= threshold).mean()
    refused = (predicted[y == 0] < threshold).mean()
    print(
        f"threshold {threshold:.3f}: answers given {answered:.3f}, no-answer accuracy {refused:.3f}, "
        f"accuracy {right:.3f} on {len(samples)} questions; wrote {CONFIDENCE_FILE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
