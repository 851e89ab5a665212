"""Evaluation: gold file parsing, hit matching, label comparison, and the product targets on the dev set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.types import Passage
from search.eval import GoldPassage, evaluate, matches, read_gold, report_json, same_labels, squash

GOLD = Path(__file__).resolve().parents[3] / "shared" / "eval" / "dev.jsonl"


def passage(text: str = "", source_file: str = "003_9ac541179e48cb99.txt", **labels: str | None) -> Passage:
    fields = {"section": "二、主要任务目标", "item": "(六)", "subitem": None, **labels}
    return Passage(
        doc_id="d",
        doc_title="t",
        source_file=source_file,
        year=None,
        region=None,
        issuer=None,
        citation="c",
        text=text,
        embed_text=text,
        unit_key="k",
        **fields,
    )


def gold(snippet: str = "", file: str = "003_9ac541179e48cb99.txt", **labels: str | None) -> GoldPassage:
    fields = {"section": "二、主要任务目标", "item": "(六)", "subitem": None, **labels}
    return GoldPassage(file=file, doc_title=None, answer_snippet=snippet, **fields)


# -- read_gold --------------------------------------------------------------------------


def test_read_gold_parses_the_dev_file() -> None:
    queries = read_gold(GOLD)
    assert len(queries) == 40
    assert len({q.id for q in queries}) == 40
    by_id = {q.id: q for q in queries}
    d21 = by_id["d21"]
    assert d21.kind == "factoid"
    assert d21.answer == "91%以上"
    assert d21.gold[0].file == "003_9ac541179e48cb99.txt"
    assert d21.gold[0].item == "(六)"
    assert d21.gold[0].subitem is None
    assert "91%以上" in d21.gold[0].answer_snippet
    assert all(not q.gold for q in queries if q.kind == "no_answer")
    assert all(len(q.gold) >= 2 for q in queries if q.kind == "multi")
    assert {q.kind for q in queries} == {"paraphrase", "keyword", "factoid", "multi", "english", "typo", "no_answer"}


def test_read_gold_skips_blank_lines_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text('\n{"id": 7, "query": "q"}\n\n', encoding="utf-8")
    [query] = read_gold(path)
    assert (query.id, query.query, query.kind, query.gold, query.answer) == ("7", "q", "", (), None)


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        '{"id": "x"}',  # no query
        '{"id": "x", "query": "q", "gold": [{"file": "f.txt"}]}',  # gold without answer_snippet
        '{"id": "x", "query": "q", "gold": 5}',
        "[1, 2]",
    ],
)
def test_read_gold_names_the_malformed_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "gold.jsonl"
    good = json.dumps({"id": "a", "query": "学校", "kind": "keyword", "gold": []}, ensure_ascii=False)
    path.write_text(f"{good}\n\n{bad}\n{good}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"gold\.jsonl:3: not a gold query line"):
        read_gold(path)


# -- matches ------------------------------------------------------------------------------


def test_squash() -> None:
    assert squash("９１％ 以上\n") == "91%以上"
    assert squash(None) == ""


def test_matches_after_nfkc_and_without_whitespace() -> None:
    shown = "学前三年毛入园率达到９１％\n以上,义务教育巩固率 达到 96%"
    assert matches(passage(shown), gold("学前三年毛入园率达到91%以上"))
    assert matches(passage(shown), gold("义务教育巩固率达到96%"))
    assert matches(passage("达到91% 以上"), gold("达到 ９１％以上"))


def test_matches_needs_the_whole_snippet_and_the_same_file() -> None:
    shown = "学前三年毛入园率达到91%以上"
    assert not matches(passage(shown), gold("学前三年毛入园率达到92%以上"))
    assert not matches(passage(shown), gold(shown, file="004_a2a3b87c571a2f00.txt"))
    assert matches(passage(shown, source_file="sub/003_9ac541179e48cb99.txt"), gold(shown))


# -- same_labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shown", "wanted"),
    [
        ({"item": "(五)"}, {"item": "（五）"}),
        ({"item": "5."}, {"item": "5、"}),
        ({"item": "5."}, {"item": "5．"}),
        ({"item": "(八)", "subitem": "3."}, {"item": "（八）", "subitem": "3、"}),
        ({"section": "三、重点工作"}, {"section": "三、重点任务"}),  # numbers, not words
    ],
)
def test_same_labels_compares_numbers_across_styles(shown: dict, wanted: dict) -> None:
    assert same_labels(passage(**shown), gold(**wanted))


@pytest.mark.parametrize(
    ("shown", "wanted"),
    [
        ({"item": "(五)"}, {"item": "(六)"}),
        ({"item": "5."}, {"item": "6、"}),
        ({"section": "二、主要任务目标"}, {"section": "三、主要任务目标"}),
        ({"item": "(八)", "subitem": "3."}, {"item": "(八)", "subitem": None}),
        ({"item": "(八)", "subitem": None}, {"item": "(八)", "subitem": "3."}),
        ({"item": None}, {"item": "(六)"}),
        ({"item": "(六)"}, {"item": None}),
    ],
)
def test_same_labels_rejects_other_numbers_and_missing_levels(shown: dict, wanted: dict) -> None:
    assert not same_labels(passage(**shown), gold(**wanted))


def test_same_labels_without_section() -> None:
    assert same_labels(passage(section=None, item="专栏8"), gold(section=None, item="专栏8"))
    assert not same_labels(passage(section=None), gold(section="一、总体要求"))


# -- the product targets ------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(searcher):  # type: ignore[no-untyped-def]
    return evaluate(searcher, read_gold(GOLD))


def failing(report, test) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{o.id} {o.query}" for o in report.outcomes if test(o)]


def test_dev_hit_at_5(report) -> None:  # type: ignore[no-untyped-def]
    missed = failing(report, lambda o: o.docs_wanted and (o.first_hit_rank is None or o.first_hit_rank > 5))
    assert report.hit_at_5 >= 0.95, missed


def test_dev_hit_at_1(report) -> None:  # type: ignore[no-untyped-def]
    assert report.hit_at_1 >= 0.80, failing(report, lambda o: o.docs_wanted and o.first_hit_rank != 1)


def test_dev_mrr_at_10(report) -> None:  # type: ignore[no-untyped-def]
    assert report.mrr_at_10 >= 0.85


def test_dev_multi_document_recall_at_5(report) -> None:  # type: ignore[no-untyped-def]
    missed = failing(report, lambda o: o.kind == "multi" and o.docs_found < o.docs_wanted)
    assert report.multi_recall_at_5 >= 0.85, missed


def test_dev_citation_accuracy(report) -> None:  # type: ignore[no-untyped-def]
    assert report.citation_accuracy == 1.0, failing(report, lambda o: o.citation_ok is False)


def test_dev_factoid_accuracy(report) -> None:  # type: ignore[no-untyped-def]
    wrong = [f"{o.id} {o.query} -> {o.short_answer!r}" for o in report.outcomes if o.factoid_ok is False]
    assert report.factoid_accuracy >= 0.85, wrong


def test_dev_no_answer_accuracy(report) -> None:  # type: ignore[no-untyped-def]
    assert report.no_answer_accuracy >= 0.9, failing(report, lambda o: o.kind == "no_answer" and o.answered)


def test_dev_report_is_consistent(report) -> None:  # type: ignore[no-untyped-def]
    assert report.queries == 40
    assert len(report.outcomes) == 40
    answerable = [o for o in report.outcomes if o.docs_wanted]
    assert report.hit_at_1 == pytest.approx(sum(o.first_hit_rank == 1 for o in answerable) / len(answerable))
    assert report.hit_at_1 <= report.hit_at_5 <= 1.0
    assert report.hit_at_1 <= report.mrr_at_10 <= 1.0
    assert all(o.citation_ok is None for o in report.outcomes if o.first_hit_rank is None)
    assert report.latency_p50_ms > 0
    record = json.loads(report_json(report))
    assert record["hit_at_5"] == report.hit_at_5
    assert len(record["outcomes"]) == 40
    assert "hit@1" in report.table()
