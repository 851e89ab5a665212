"""``python -m bench``: the whole benchmark suite in one run, one table.

    python -m bench            # about 6 minutes on 2 cores; writes bench/RESULTS.md
    python -m bench --quick    # a smoke run (~1-2 min): fewer repetitions, prints only

Parts, in order (each also runs alone: ``python -m bench.<part>``):

3. indexing (bench.index_bench): per passage embedder, whole ``plansearch
   index`` passages/s, encoding alone, cosine to torch fp32, dev hit@5. The
   default embedder's index is kept for the parts after it.
1. warm latency and 5. serving memory (bench.latency): search/ask p50/p99
   in-process and over HTTP, rank_bm25 reference, RSS over 1,000 queries.
2. cold CLI query (bench.cold_cli): ``plansearch search`` median of 5.
4. scale (bench.scale, when present): the 1M-passage figures.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from bench import cold_cli, index_bench, latency
from bench.report import RESULTS, Row, generated, load_average, machine_line, write_results
from indexer.config import Settings


def item_number(row: Row) -> int:
    """Rows in the order of the issue's items: 1 latency, 2 cold CLI, 3 indexing,
    4 scale (whose sections are named "scale (…)"), 5 memory."""
    found = re.match(r"\d+", row.section)
    return int(found.group()) if found else 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="The plansearch benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repetitions")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"write the table here (default: {RESULTS.relative_to(RESULTS.parent.parent)} for a full run; "
        "a --quick run writes nothing unless given)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=["index", "latency", "cold", "scale"])
    args = parser.parse_args(argv)
    output = args.output or (None if args.quick else RESULTS)

    started = time.perf_counter()
    load_before = load_average()
    machine = machine_line()
    print(f"bench: {machine}; load average {load_before}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="plansearch-bench-") as tmp:
        home = Path(tmp)
        base = Settings.from_env()
        model_dir = base.resolved_model_dir
        if "index" not in args.skip:
            rows += index_bench.run(quick=args.quick, home=home)
            default_index = home / f"index-{Settings().passage_embedder}"
            served = Settings.from_env(home=home, index_dir=default_index, model_dir=model_dir)
        else:
            # Without the indexing part, the seed index of a temporary home is built (not timed).
            served = Settings.from_env(home=home, index_dir=home / "index", model_dir=model_dir)
        if "latency" not in args.skip:
            rows += latency.run(quick=args.quick, settings=served)
        if "cold" not in args.skip:
            rows += cold_cli.run(quick=args.quick, settings=served)
    if "scale" not in args.skip:
        try:
            from bench import scale  # type: ignore[attr-defined]
        except ImportError:
            print("bench: no bench.scale module, scale part skipped", flush=True)
        else:
            try:
                rows += scale.run(quick=args.quick)
            except Exception as exc:  # one broken part must not lose the others' figures
                print(f"bench: the scale part failed: {exc!r}", flush=True)
                rows.append(Row("4 scale", "scale part", "failed", "–", False, repr(exc)[:200]))
    rows.sort(key=item_number)
    seconds = time.perf_counter() - started
    command = "python -m bench" + (" --quick" if args.quick else "") + "".join(f" --skip {s}" for s in args.skip)
    block = generated(rows, command, machine, load_before, load_average(), seconds)
    print()
    print(block)
    if output is not None:
        write_results(block, output)
        print(f"\nbench: written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
