"""Fusion of rankings: convex min-max score fusion and weighted reciprocal rank fusion."""

from __future__ import annotations

import pytest

from search.fuse import RankFusion, ScoreFusion


def scores(ranking: list[tuple[int, float]]) -> dict[int, float]:
    return dict(ranking)


# -- ScoreFusion -----------------------------------------------------------------


def test_min_max_normalisation_of_one_ranking() -> None:
    assert ScoreFusion.normalised([(1, 0.9), (2, 0.5), (3, 0.1)]) == pytest.approx({1: 1.0, 2: 0.5, 3: 0.0})
    assert ScoreFusion.normalised([(7, 12.0), (8, 4.0), (9, 2.0)]) == pytest.approx({7: 1.0, 8: 0.2, 9: 0.0})


def test_score_fusion_hand_computed() -> None:
    fusion = ScoreFusion({"dense": 0.7, "lexical": 0.3})
    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]  # -> 1: 1.0, 2: 0.5, 3: 0.0
    lexical = [(2, 10.0), (4, 4.0), (1, 2.0)]  # -> 2: 1.0, 4: 0.25, 1: 0.0
    fused = fusion.fuse({"dense": dense, "lexical": lexical})
    assert [row for row, _ in fused] == [1, 2, 4, 3]
    assert scores(fused) == pytest.approx({1: 0.7, 2: 0.7 * 0.5 + 0.3, 4: 0.3 * 0.25, 3: 0.0})


def test_weights_decide_between_retrievers() -> None:
    dense = [(1, 0.9), (2, 0.1)]
    lexical = [(2, 9.0), (1, 1.0)]
    assert ScoreFusion({"dense": 0.7, "lexical": 0.3}).fuse({"dense": dense, "lexical": lexical})[0][0] == 1
    assert ScoreFusion({"dense": 0.3, "lexical": 0.7}).fuse({"dense": dense, "lexical": lexical})[0][0] == 2


def test_score_scales_do_not_matter_only_the_spread() -> None:
    fusion = ScoreFusion({"dense": 0.5, "lexical": 0.5})
    small = fusion.fuse({"dense": [(1, 0.82), (2, 0.80)], "lexical": [(2, 30.0), (1, 10.0)]})
    scaled = fusion.fuse({"dense": [(1, 820.0), (2, 800.0)], "lexical": [(2, 0.3), (1, 0.1)]})
    assert [row for row, _ in small] == [row for row, _ in scaled] == [1, 2]
    assert scores(small) == pytest.approx(scores(scaled))


def test_passage_in_only_one_ranking_gets_only_that_share() -> None:
    fusion = ScoreFusion({"dense": 0.6, "lexical": 0.4})
    fused = scores(fusion.fuse({"dense": [(1, 0.8), (2, 0.4)], "lexical": [(3, 5.0), (1, 1.0)]}))
    assert fused[2] == pytest.approx(0.0)  # last in dense, absent from lexical
    assert fused[3] == pytest.approx(0.4)  # first in lexical, absent from dense
    assert fused[1] == pytest.approx(0.6)


def test_single_candidate_ranking_counts_as_best() -> None:
    fusion = ScoreFusion({"dense": 0.7, "lexical": 0.3})
    fused = fusion.fuse({"dense": [(5, 0.2)], "lexical": [(6, 3.0), (5, 1.0)]})
    assert scores(fused) == pytest.approx({5: 0.7, 6: 0.3})
    assert ScoreFusion.normalised([(5, -4.0)]) == {5: 1.0}


def test_all_equal_scores_are_all_best() -> None:
    assert ScoreFusion.normalised([(1, 0.5), (2, 0.5)]) == {1: 1.0, 2: 1.0}


def test_empty_rankings() -> None:
    fusion = ScoreFusion({"dense": 0.7, "lexical": 0.3})
    assert fusion.fuse({}) == []
    assert fusion.fuse({"dense": [], "lexical": []}) == []
    assert ScoreFusion.normalised([]) == {}
    only_dense = fusion.fuse({"dense": [(1, 0.9), (2, 0.3)], "lexical": []})
    assert scores(only_dense) == pytest.approx({1: 0.7, 2: 0.0})


def test_unweighted_retriever_counts_nothing() -> None:
    fused = ScoreFusion({"dense": 1.0}).fuse({"dense": [(1, 0.2), (2, 0.1)], "other": [(2, 9.0), (3, 1.0)]})
    assert scores(fused) == pytest.approx({1: 1.0, 2: 0.0, 3: 0.0})


def test_score_fusion_ties_broken_by_row() -> None:
    fusion = ScoreFusion({"dense": 0.5, "lexical": 0.5})
    fused = fusion.fuse({"dense": [(9, 1.0), (4, 0.0)], "lexical": [(4, 1.0), (9, 0.0)]})
    assert [row for row, _ in fused] == [4, 9]
    assert fused[0][1] == pytest.approx(fused[1][1])


# -- RankFusion --------------------------------------------------------------------


def test_rank_fusion_hand_computed() -> None:
    fusion = RankFusion(k=60, weights={"dense": 2.0})
    fused = fusion.fuse({"dense": [(1, 0.9), (2, 0.8)], "lexical": [(2, 7.0), (3, 6.0)]})
    expected = {1: 2 / 61, 2: 2 / 62 + 1 / 61, 3: 1 / 62}
    assert scores(fused) == pytest.approx(expected)
    assert [row for row, _ in fused] == [2, 1, 3]


def test_rank_fusion_ignores_score_values() -> None:
    fusion = RankFusion(k=10)
    a = fusion.fuse({"x": [(1, 100.0), (2, 0.0)], "y": [(3, 1.0)]})
    b = fusion.fuse({"x": [(1, 0.51), (2, 0.5)], "y": [(3, -5.0)]})
    assert a == b
    assert scores(a) == pytest.approx({1: 1 / 11, 2: 1 / 12, 3: 1 / 11})


def test_rank_fusion_ties_broken_by_row() -> None:
    fused = RankFusion(k=60).fuse({"dense": [(5, 0.9)], "lexical": [(3, 2.0)]})
    assert fused == [(3, pytest.approx(1 / 61)), (5, pytest.approx(1 / 61))]


def test_rank_fusion_empty() -> None:
    assert RankFusion().fuse({}) == []
    assert RankFusion().fuse({"dense": [], "lexical": []}) == []
