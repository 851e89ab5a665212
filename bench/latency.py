"""Warm query latency and serving memory at seed scale.

    python -m bench.latency [--quick]

* In-process: ``Searcher.search`` and ``Searcher.ask`` over the dev queries,
  repeated (one untimed pass first), p50 and p99 of each.
* Reference: plain ``rank_bm25.BM25Okapi`` over the same passages with
  jieba's search-mode tokens, the ten lines a user could write instead
  (tokenising the query, scoring every passage, taking the top 10).
* HTTP: a real ``plansearch serve`` subprocess on a free loopback port,
  1,000 requests over one keep-alive connection, alternating ``/api/search``
  and ``/api/ask`` over the dev queries; p50/p99 of each after the first 80
  (the warm-up), and the server's resident memory after start-up, after the
  warm-up and after all 1,000 (sampled every 100).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import (
    clean_env,
    dev_queries,
    free_port,
    gold_path,
    percentile,
    plansearch_command,
    rss_mb,
    seed_index,
)
from bench.report import Row, render
from indexer.config import PROJECT_ROOT, Settings

SEARCH_P50_MS = 15.0
ASK_P50_MS = 25.0
P99_OVER_P50 = 3.0
RSS_LIMIT_MB = 800.0
# "No growth": at most this much more resident memory after 1,000 queries than after the warm-up.
RSS_GROWTH_MB = 10.0
HTTP_REQUESTS = 1000
HTTP_WARMUP = 80


@dataclass
class Timings:
    search_ms: list[float] = field(default_factory=list)
    ask_ms: list[float] = field(default_factory=list)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def in_process(settings: Settings, queries: list[str], rounds: int) -> Timings:
    from search.engine import Searcher

    searcher = Searcher.open(settings)
    searcher.warm_up()  # as plansearch serve does
    for query in queries:  # warm-up: lazy loads (jieba, OpenCC, the query model), caches
        searcher.search(query)
        searcher.ask(query)
    out = Timings()
    for _ in range(rounds):
        for query in queries:
            out.search_ms.append(timed(lambda q=query: searcher.search(q)))
            out.ask_ms.append(timed(lambda q=query: searcher.ask(q)))
    return out


def rank_bm25_reference(settings: Settings, rounds: int) -> tuple[list[float], float | None]:
    """Latencies of plain rank_bm25 + jieba over the index's passages, and its dev hit@5."""
    import jieba
    import numpy as np
    from rank_bm25 import BM25Okapi

    from indexer.index import Index

    index = Index.load(settings.resolved_index_dir)
    passages = index.passages()
    index.close()

    # -- the ten lines a user could write ---------------------------------
    bm25 = BM25Okapi([jieba.lcut_for_search(p.embed_text) for p in passages])

    def top10(query: str) -> list[int]:
        scores = bm25.get_scores(jieba.lcut_for_search(query))
        return [int(i) for i in np.argsort(-scores)[:10]]

    # ----------------------------------------------------------------------
    hit_at_5 = None
    if gold_path().is_file():
        from search.eval import matches, read_gold

        gold = [q for q in read_gold(gold_path()) if q.gold]
        found = [any(matches(passages[i], g) for i in top10(q.query)[:5] for g in q.gold) for q in gold]
        hit_at_5 = sum(found) / len(found) if found else None
    queries = dev_queries()
    for query in queries:
        top10(query)
    samples = [timed(lambda q=query: top10(q)) for _ in range(rounds) for query in queries]
    return samples, hit_at_5


@dataclass
class HttpRun:
    startup_s: float
    rss_start_mb: float
    rss_samples: list[tuple[int, float]]  # (requests served, RSS MB)
    timings: Timings


def http_run(settings: Settings, queries: list[str], requests: int, warmup: int) -> HttpRun:
    """Start ``plansearch serve`` on a free loopback port and query it ``requests`` times."""
    port = free_port()
    command = [*plansearch_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--index", str(settings.resolved_index_dir)]
    env = clean_env(PLANSEARCH_HOME=str(settings.home), PLANSEARCH_MODEL_DIR=str(settings.resolved_model_dir))
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            conn = _wait_ready(server, port, log, timeout=180.0)
            startup = time.perf_counter() - started
            rss_start = rss_mb(server.pid)
            out = Timings()
            samples: list[tuple[int, float]] = []
            for n in range(requests):
                query = queries[(n // 2) % len(queries)]
                endpoint = "/api/search" if n % 2 == 0 else "/api/ask"
                ms = timed(lambda e=endpoint, q=query: _get(conn, e, {"q": q}))
                if n >= warmup:
                    (out.search_ms if endpoint == "/api/search" else out.ask_ms).append(ms)
                if (n + 1) % 100 == 0 or n + 1 == warmup:
                    samples.append((n + 1, rss_mb(server.pid)))
            conn.close()
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return HttpRun(startup, rss_start, samples, out)


def _get(conn: http.client.HTTPConnection, path: str, params: dict[str, str]) -> bytes:
    conn.request("GET", f"{path}?{urllib.parse.urlencode(params)}")
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
    return body


def _wait_ready(server: subprocess.Popen, port: int, log, timeout: float) -> http.client.HTTPConnection:  # type: ignore[type-arg, no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            output = log.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"plansearch serve exited ({server.returncode}): {output}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            body = _get(conn, "/api/health", {})
            if json.loads(body).get("status") == "ok":
                return conn
        except (OSError, RuntimeError, http.client.HTTPException):
            pass
        conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"plansearch serve did not become ready in {timeout:.0f} s")


def latency_rows(section: str, timings: Timings, note: str = "") -> list[Row]:
    rows = []
    for name, samples, target in (("search", timings.search_ms, SEARCH_P50_MS), ("ask", timings.ask_ms, ASK_P50_MS)):
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        rows.append(Row(section, f"{name} p50 ms", f"{p50:.1f}", f"≤ {target:g}", p50 <= target, f"n={len(samples)}"))
        rows.append(
            Row(
                section,
                f"{name} p99 ms",
                f"{p99:.1f}",
                f"≤ 3 × p50 = {P99_OVER_P50 * p50:.1f}",
                p99 <= P99_OVER_P50 * p50,
                f"p99/p50 = {p99 / p50:.2f}" + (f"; {note}" if note else ""),
            )
        )
    return rows


def run(quick: bool = False, settings: Settings | None = None) -> list[Row]:
    settings = settings or Settings.from_env()
    seed_index(settings)
    queries = dev_queries()
    rounds = 1 if quick else 10
    requests = 200 if quick else HTTP_REQUESTS
    rows: list[Row] = []
    say = _say

    say(f"latency: in-process, {len(queries)} queries x {rounds} rounds")
    local = in_process(settings, queries, rounds)
    rows += latency_rows("1 warm latency, in-process", local, f"{len(queries)} dev queries x {rounds}")

    say("latency: rank_bm25 reference")
    reference, ref_hit5 = rank_bm25_reference(settings, rounds)
    ref_p50, ref_p99 = percentile(reference, 50), percentile(reference, 99)
    quality = f"; its dev hit@5 {ref_hit5:.3f}" if ref_hit5 is not None else ""
    rows.append(
        Row(
            "1 reference: rank_bm25 + jieba",
            "search p50 / p99 ms",
            f"{ref_p50:.1f} / {ref_p99:.1f}",
            "(reference)",
            None,
            f"BM25Okapi over the same passages, n={len(reference)}{quality}",
        )
    )

    say(f"latency: HTTP, {requests} requests to a plansearch serve subprocess")
    served = http_run(settings, queries, requests, HTTP_WARMUP)
    rows += latency_rows("1 warm latency, HTTP loopback", served.timings, "one keep-alive connection")
    rows += memory_rows(served, requests)
    return rows


def memory_rows(served: HttpRun, requests: int) -> list[Row]:
    section = "5 serving memory"
    after_warmup = dict(served.rss_samples).get(HTTP_WARMUP, served.rss_start_mb)
    final = served.rss_samples[-1][1]
    growth = final - after_warmup
    series = ", ".join(f"{n}: {mb:.0f}" for n, mb in served.rss_samples)
    return [
        Row(
            section,
            "RSS after start-up MB",
            f"{served.rss_start_mb:.0f}",
            f"≤ {RSS_LIMIT_MB:.0f}",
            served.rss_start_mb <= RSS_LIMIT_MB,
            f"start-up to ready {served.startup_s:.1f} s",
        ),
        Row(
            section,
            f"RSS after {requests} queries MB",
            f"{final:.0f}",
            f"≤ {RSS_LIMIT_MB:.0f}",
            final <= RSS_LIMIT_MB,
            f"MB after n requests, n: MB = {series}",
        ),
        Row(
            section,
            f"growth from query {HTTP_WARMUP} to {requests} MB",
            f"{growth:+.1f}",
            f"≤ {RSS_GROWTH_MB:g} (none)",
            growth <= RSS_GROWTH_MB if requests >= HTTP_REQUESTS else None,
            f"{after_warmup - served.rss_start_mb:+.1f} MB over the first {HTTP_WARMUP} (lazy loads)",
        ),
    ]


def _say(line: str) -> None:
    print(f"bench: {line}", flush=True)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.latency")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    print(render(run(quick=args.quick)))


if __name__ == "__main__":
    main()
