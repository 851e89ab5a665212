"""Cold command-line query: ``plansearch search "…"`` in a fresh process, from
process start to its results printed (and the process gone), median of 5.

    python -m bench.cold_cli [--quick]

One untimed run first, so that every timed run finds the files in the page
cache (what "cold" means here: a new interpreter, nothing loaded).
"""

from __future__ import annotations

import statistics
import subprocess
import time

from bench.common import clean_env, command_name, plansearch_command, seed_index
from bench.report import Row, render
from indexer.config import PROJECT_ROOT, Settings

QUERY = "学前三年毛入园率要达到多少"
RUNS = 5
TARGET_S = 1.5


def cold_search(settings: Settings, query: str = QUERY) -> float:
    command = [*plansearch_command(), "search", query, "--index", str(settings.resolved_index_dir)]
    env = clean_env(PLANSEARCH_HOME=str(settings.home), PLANSEARCH_MODEL_DIR=str(settings.resolved_model_dir))
    started = time.perf_counter()
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "1. " not in done.stdout:
        raise RuntimeError(f"plansearch search failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def run(quick: bool = False, settings: Settings | None = None) -> list[Row]:
    settings = settings or Settings.from_env()
    seed_index(settings)
    runs = 3 if quick else RUNS
    print(f"bench: cold CLI, {runs} runs of plansearch search", flush=True)
    cold_search(settings)  # page cache
    times = [cold_search(settings) for _ in range(runs)]
    median = statistics.median(times)
    return [
        Row(
            "2 cold CLI query",
            f"`plansearch search` wall s, median of {runs}",
            f"{median:.2f}",
            f"≤ {TARGET_S:g}",
            median <= TARGET_S,
            f"runs: {', '.join(f'{t:.2f}' for t in times)}; run as {command_name()}",
        )
    ]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.cold_cli")
    parser.add_argument("--quick", action="store_true", help="3 runs instead of 5")
    args = parser.parse_args()
    print(render(run(quick=args.quick)))


if __name__ == "__main__":
    main()
