"""Evaluation on a gold query set (format: ../shared/eval/README.md).

Definitions (as the product promises them):
* a result is a hit when its shown text contains a gold ``answer_snippet``
  (both compared after NFKC and with all whitespace removed);
* hit@1 / hit@5 / MRR@10 over answerable queries;
* multi-document recall@5: for ``multi`` queries, the share of gold documents
  with a hit in the top 5;
* citation accuracy: of the first hit per query, the share whose section,
  item and sub-item labels equal the gold's (numbers compared, not styles);
* factoid accuracy: the gold ``answer`` inside ``short_answer``, or inside an
  answer sentence of at most 150 characters;
* no-answer accuracy: unanswerable queries given no answer;
* answers given: answerable queries given an answer.
"""

from __future__ import annotations

import json
import re
import statistics
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexer.patterns import label_number
from indexer.types import Passage
from search.engine import Searcher
from search.types import Hit

ANSWER_MAX_CHARS = 150


def squash(text: str | None) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or ""))


@dataclass(frozen=True)
class GoldPassage:
    file: str
    doc_title: str | None
    section: str | None
    item: str | None
    subitem: str | None
    answer_snippet: str


@dataclass(frozen=True)
class GoldQuery:
    id: str
    query: str
    kind: str
    gold: tuple[GoldPassage, ...]
    answer: str | None


def read_gold(path: Path) -> list[GoldQuery]:
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            gold = tuple(
                GoldPassage(
                    file=g["file"],
                    doc_title=g.get("doc_title"),
                    section=g.get("section"),
                    item=g.get("item"),
                    subitem=g.get("subitem"),
                    answer_snippet=g["answer_snippet"],
                )
                for g in raw.get("gold", [])
            )
            queries.append(GoldQuery(str(raw["id"]), raw["query"], raw.get("kind", ""), gold, raw.get("answer")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: not an object
            raise ValueError(f"{path}:{number}: not a gold query line ({exc})") from exc
    return queries


def matches(passage: Passage, gold: GoldPassage) -> bool:
    return squash(gold.answer_snippet) in squash(passage.text) and Path(passage.source_file).name == gold.file


def same_labels(passage: Passage, gold: GoldPassage) -> bool:
    def section_number(label: str | None) -> int | None:
        return label_number(label) if label else None

    return (
        section_number(passage.section) == section_number(gold.section)
        and label_number(passage.item) == label_number(gold.item)
        and label_number(passage.subitem) == label_number(gold.subitem)
        and (passage.item is None) == (gold.item is None)
        and (passage.subitem is None) == (gold.subitem is None)
    )


@dataclass
class QueryOutcome:
    id: str
    kind: str
    query: str
    first_hit_rank: int | None
    citation_ok: bool | None
    docs_found: int
    docs_wanted: int
    answered: bool
    factoid_ok: bool | None
    answer_text: str | None
    short_answer: str | None
    latency_ms: float


@dataclass
class Report:
    mode: str
    queries: int
    hit_at_1: float
    hit_at_5: float
    mrr_at_10: float
    multi_recall_at_5: float
    citation_accuracy: float
    factoid_accuracy: float
    no_answer_accuracy: float
    answers_given: float
    latency_p50_ms: float
    outcomes: list[QueryOutcome] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("hit@1", self.hit_at_1, "≥ 0.80"),
            ("hit@5", self.hit_at_5, "≥ 0.95"),
            ("MRR@10", self.mrr_at_10, "≥ 0.85"),
            ("multi-doc recall@5", self.multi_recall_at_5, "≥ 0.85"),
            ("citation accuracy", self.citation_accuracy, "1.00"),
            ("factoid answer accuracy", self.factoid_accuracy, "≥ 0.85"),
            ("no-answer accuracy", self.no_answer_accuracy, "≥ 0.90"),
            ("answers given", self.answers_given, "≥ 0.95"),
        ]
        lines = [f"mode: {self.mode}   queries: {self.queries}", f"{'metric':<26}{'value':>8}   target"]
        lines += [f"{name:<26}{value:>8.3f}   {target}" for name, value, target in rows]
        lines.append(f"{'latency p50 (ms)':<26}{self.latency_p50_ms:>8.1f}")
        return "\n".join(lines)


def _first_hit(hits: list[Hit], gold: tuple[GoldPassage, ...]) -> tuple[int | None, GoldPassage | None]:
    for rank, hit in enumerate(hits, start=1):
        for g in gold:
            if matches(hit.passage, g):
                return rank, g
    return None, None


def evaluate(searcher: Searcher, queries: list[GoldQuery], mode: str = "hybrid") -> Report:
    searcher.warm_up()  # latencies of a served query, not of first loads
    outcomes: list[QueryOutcome] = []
    for gq in queries:
        started = time.perf_counter()
        result = searcher.ask(gq.query, k=10)
        latency = (time.perf_counter() - started) * 1000
        hits = result.hits
        rank, gold_hit = _first_hit(hits, gq.gold)
        citation_ok = None
        if rank is not None and gold_hit is not None:
            citation_ok = same_labels(hits[rank - 1].passage, gold_hit)
        gold_docs = {(g.file, g.doc_title) for g in gq.gold}
        found_docs = {
            (g.file, g.doc_title) for g in gq.gold for h in hits[:5] if matches(h.passage, g)
        }
        answer = result.answer
        factoid_ok = None
        if gq.kind == "factoid" and gq.answer:
            wanted = squash(gq.answer)
            factoid_ok = bool(
                answer
                and (
                    wanted in squash(answer.short_answer)
                    or (len(answer.text) <= ANSWER_MAX_CHARS and wanted in squash(answer.text))
                )
            )
        outcomes.append(
            QueryOutcome(
                id=gq.id,
                kind=gq.kind,
                query=gq.query,
                first_hit_rank=rank,
                citation_ok=citation_ok,
                docs_found=len(found_docs),
                docs_wanted=len(gold_docs),
                answered=answer is not None,
                factoid_ok=factoid_ok,
                answer_text=answer.text if answer else None,
                short_answer=answer.short_answer if answer else None,
                latency_ms=latency,
            )
        )
    answerable = [o for o in outcomes if o.docs_wanted]
    unanswerable = [o for o in outcomes if not o.docs_wanted]
    multi = [o for o in outcomes if o.kind == "multi"]
    cited = [o for o in answerable if o.citation_ok is not None]
    factoids = [o for o in outcomes if o.factoid_ok is not None]

    def share(items: list[QueryOutcome], test) -> float:  # type: ignore[no-untyped-def]
        return sum(1 for o in items if test(o)) / len(items) if items else 0.0

    return Report(
        mode=mode,
        queries=len(outcomes),
        hit_at_1=share(answerable, lambda o: o.first_hit_rank == 1),
        hit_at_5=share(answerable, lambda o: o.first_hit_rank is not None and o.first_hit_rank <= 5),
        mrr_at_10=(
            sum(1 / o.first_hit_rank for o in answerable if o.first_hit_rank and o.first_hit_rank <= 10)
            / len(answerable)
            if answerable
            else 0.0
        ),
        multi_recall_at_5=(
            sum(o.docs_found for o in multi) / sum(o.docs_wanted for o in multi) if multi else 0.0
        ),
        citation_accuracy=share(cited, lambda o: o.citation_ok),
        factoid_accuracy=share(factoids, lambda o: o.factoid_ok),
        no_answer_accuracy=share(unanswerable, lambda o: not o.answered),
        answers_given=share(answerable, lambda o: o.answered),
        latency_p50_ms=statistics.median(o.latency_ms for o in outcomes) if outcomes else 0.0,
        outcomes=outcomes,
    )


def report_json(report: Report) -> str:
    return json.dumps(asdict(report), ensure_ascii=False, indent=1)
