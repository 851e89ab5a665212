"""Load test of ``plansearch serve`` over loopback, bounded in time and in requests.

    python -m bench.load [--clients 32] [--seconds 60] [--workers N] [--reindex] [--max-requests N]

Starts ``plansearch serve`` as a subprocess on a free 127.0.0.1 port, over a
copy of an index and its corpus in a temporary directory (never the live
ones), with an API token set (every request sends it). ``--clients``
concurrent clients send the dev queries (``../shared/eval/dev.jsonl``), half
to ``/api/search`` and half to ``/api/ask``, until ``--seconds`` have passed or
``--max-requests`` were sent. Every response must be a 200 whose content is
exactly what the same query gave before the load, sequentially (results,
citations, scores to 4 places): a race inside the service shows up as a
mismatch even when the status is 200. The resident memory of the server
processes (summed over the workers) is sampled every second.

With ``--reindex``, a new item is appended to a corpus file a fifth of the way
in and ``plansearch index`` is run while the load goes on; when it finishes,
``POST /api/admin/reload`` is called too. Then every response must be what
either the old or the new complete index answers (the new answers are taken
after the run), ``/api/health`` must only ever report the old or the new
passage count, a query that only the new text answers must flip from not
found to found, and (one worker) no response from the old index may have
started after a response from the new one ended: there is one moment at
which the service switched.

Exit status 0 when every check passed, 1 otherwise. ``run_load`` returns the
same figures as a ``LoadResult`` for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from indexer.config import PROJECT_ROOT, Settings

DEV_QUERIES = PROJECT_ROOT.parent / "shared" / "eval" / "dev.jsonl"
FALLBACK_QUERIES = ["学前三年毛入园率要达到多少", "危化品 报废", "如何加强教师队伍建设", "校园足球", "教师的工资是多少"]
# The item appended with --reindex, and a query only it answers.
NEW_ITEM = "推进青少年航天科普实验室建设，每所中学配备一名航天科普辅导员，每学期开展一次航天科普周活动。"
NEW_MARKER = "航天科普"
PROBE_QUERY = "航天科普实验室"
WINDOW_S = 10.0  # RSS is compared between the first and the last window of this length


# -- the server as a subprocess ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(home: Path, corpus: Path, model_dir: Path, token: str = "", **extra: str) -> dict[str, str]:
    """The environment of a served instance: only the PLANSEARCH_* variables given here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANSEARCH_")}
    env.update(
        PLANSEARCH_HOME=str(home),
        PLANSEARCH_CORPUS_DIR=str(corpus),
        PLANSEARCH_MODEL_DIR=str(model_dir),
        PYTHONPATH=os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
        PYTHONIOENCODING="utf-8",
    )
    if token:
        env["PLANSEARCH_API_TOKEN"] = token
    env.update(extra)
    return env


@dataclass
class Served:
    """A running ``plansearch serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path
    index_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def pids(self) -> list[int]:
        """The serve process and all its descendants (the workers)."""
        return [self.proc.pid, *descendants(self.proc.pid)]

    def workers(self) -> list[int]:
        """The processes that hold an index open (one per worker)."""
        return [pid for pid in self.pids() if index_refs(pid, self.index_dir)]


@contextlib.contextmanager
def serve(
    index_dir: Path,
    env: dict[str, str],
    log_path: Path,
    workers: int = 1,
    ready: str = "ok",
    timeout: float = 180,
) -> Iterator[Served]:
    """Start ``python -m api.cli serve`` on a free loopback port; yield once ``/api/health``
    answers (``ready="ok"``: 200 from every worker; ``ready="any"``: any answer at all)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--index", str(index_dir), "--workers", str(workers)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Served(proc, base, log_path, index_dir)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"plansearch serve exited with {proc.returncode}:\n{served.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"plansearch serve not ready after {timeout:.0f} s:\n{served.log()}")
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(base + "/api/health", timeout=5)
                if ready == "any" or (health.status_code == 200 and (workers == 1 or len(served.workers()) >= workers)):
                    break
                if health.status_code == 503:
                    raise RuntimeError(f"plansearch serve is not ready: {health.text}\n{served.log()}")
            time.sleep(0.2)
        yield served
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # uvicorn's clean shutdown (and its workers')
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait(timeout=timeout)


# -- processes, from /proc ---------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return sorted(out)


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of a process, in kB (zeros if it is gone)."""
    out = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] = int(value.split()[0])
    return out


def index_refs(pid: int, index_dir: Path) -> dict[str, int]:
    """Files of ``index_dir`` that a process has open or memory-mapped: name -> count.

    Open files count once per descriptor, mapped ones once per mapped file."""
    refs: dict[str, int] = {}
    root = str(index_dir.resolve())
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith(root + "/"):
                    key = "open " + target[len(root) + 1 :]
                    refs[key] = refs.get(key, 0) + 1
    with contextlib.suppress(OSError):
        mapped = {
            line.split(maxsplit=5)[5]
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if len(line.split(maxsplit=5)) == 6
        }
        for target in mapped:
            if target.startswith(root + "/"):
                key = "mapped " + target[len(root) + 1 :]
                refs[key] = refs.get(key, 0) + 1
    return refs


def omp_threads(pid: int) -> str:
    """The OMP_NUM_THREADS a process was started with ("" if none)."""
    with contextlib.suppress(OSError):
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if entry.startswith(b"OMP_NUM_THREADS="):
                return entry.split(b"=", 1)[1].decode()
    return ""


def passages_handles(refs: dict[str, int]) -> int:
    """How many times a process has the passages file open or mapped (once per loaded index)."""
    return sum(count for name, count in refs.items() if name.endswith("/passages.jsonl"))


class RssSampler(threading.Thread):
    """Sums the resident memory of a process tree every second."""

    def __init__(self, served: Served, t0: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.served, self.t0 = served, t0
        self.samples: list[tuple[float, int, int, int]] = []  # (t, VmRSS, RssAnon, RssFile) in kB
        self.pids_seen: set[int] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = self.served.pids()
            self.pids_seen.update(pids)
            total = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
            for pid in pids:
                for key, value in rss_kb(pid).items():
                    total[key] += value
            self.samples.append((time.monotonic() - self.t0, total["VmRSS"], total["RssAnon"], total["RssFile"]))
            self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# -- what a response says ---------------------------------------------------------------------------
def fingerprint(path: str, body: dict) -> str:  # type: ignore[type-arg]
    """What a search or ask response answered (results, citations, texts, highlights and
    scores to 4 places), without its timing."""

    def hit(r: dict) -> list[object]:  # type: ignore[type-arg]
        return [r["rank"], round(r["score"], 4), r["doc_id"], r["citation"], r["text"], r["highlights"]]

    if path == "/api/search":
        content: list[object] = [body["total"], [hit(r) for r in body["results"]]]
    else:
        a = body["answer"]
        answer = None if a is None else [a["text"], a["short_answer"], a["citation"], round(a["score"], 4)]
        content = [answer, [hit(r) for r in body["passages"]]]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:16]


def found_new_text(body: dict) -> bool:  # type: ignore[type-arg]
    return any(NEW_MARKER in r["text"] for r in body.get("results", []))


def read_queries(path: Path = DEV_QUERIES) -> list[str]:
    if not path.is_file():
        return list(FALLBACK_QUERIES)
    queries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            queries.append(json.loads(line)["query"])
    return queries


# -- results ----------------------------------------------------------------------------------------
@dataclass
class Reply:
    kind: str  # "query" | "health" | "probe"
    key: str
    start: float
    end: float
    status: int
    value: str  # fingerprint, passage count, or "found"/"absent"
    error: str = ""


@dataclass
class ReindexResult:
    build_exit: int | None = None
    build_start: float = 0.0
    build_end: float = 0.0
    build_output: str = ""
    admin_reload_status: int | None = None
    admin_reload_body: str = ""
    old_passages: int = 0
    new_passages: int = 0
    health_passages_seen: list[int] = field(default_factory=list)
    probe_found: int = 0
    probe_absent: int = 0
    first_new_end: float | None = None  # when the first answer from the new index ended
    last_old_start: float | None = None  # when the last answer from the old index started
    old_answers: int = 0
    new_answers: int = 0
    unclassified: int = 0  # queries whose old and new answers are the same
    switch_ok: bool = False  # one moment separates old answers from new ones

    @property
    def ok(self) -> bool:
        return (
            self.build_exit == 0
            and self.admin_reload_status == 200
            and set(self.health_passages_seen) <= {self.old_passages, self.new_passages}
            and self.new_passages in self.health_passages_seen
            and self.probe_found > 0
            and self.probe_absent > 0
            and self.switch_ok
        )


@dataclass
class LoadResult:
    clients: int
    seconds: float
    workers: int
    requests: int = 0
    errors: int = 0
    mismatches: int = 0  # 200 answers that neither the old nor the new index gives
    error_samples: list[str] = field(default_factory=list)
    duration: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    rss_samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    rss_first_mb: float = 0.0
    rss_last_mb: float = 0.0
    worker_pids: list[int] = field(default_factory=list)
    workers_at_end: list[int] = field(default_factory=list)
    worker_index_refs_at_start: dict[int, dict[str, int]] = field(default_factory=dict)
    worker_index_refs: dict[int, dict[str, int]] = field(default_factory=dict)  # at the end
    worker_omp_threads: dict[int, str] = field(default_factory=dict)  # OMP_NUM_THREADS of each worker
    max_rss_growth: float = 0.10
    reindex: ReindexResult | None = None

    @property
    def throughput(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def rss_growth(self) -> float:
        return self.rss_last_mb / self.rss_first_mb - 1 if self.rss_first_mb else 0.0

    @property
    def memory_ok(self) -> bool:
        # A re-index loads a second index: memory is reported, not judged, then.
        return self.reindex is not None or self.rss_growth <= self.max_rss_growth

    @property
    def workers_ok(self) -> bool:
        """N workers, each with the index loaded once, none restarted during the run."""
        return (
            len(self.worker_pids) == self.workers
            and self.workers_at_end == self.worker_pids
            and all(passages_handles(refs) == 1 for refs in self.worker_index_refs_at_start.values())
            and all(passages_handles(refs) == 1 for refs in self.worker_index_refs.values())
        )

    @property
    def ok(self) -> bool:
        return (
            self.requests > 0
            and self.errors == 0
            and self.mismatches == 0
            and self.memory_ok
            and self.workers_ok
            and (self.reindex is None or self.reindex.ok)
        )

    def summary(self) -> str:
        mode = " with re-index" if self.reindex else ""
        lines = [
            f"load: {self.clients} clients, {self.workers} worker(s), {self.duration:.1f} s{mode}",
            f"  requests {self.requests}, errors {self.errors}, mismatched answers {self.mismatches}",
            f"  latency p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, max {self.max_ms:.0f} ms",
            f"  throughput {self.throughput:.1f} requests/s",
            f"  server RSS (sum over {len(self.worker_pids)} worker(s) and the supervisor): "
            f"first {WINDOW_S:.0f} s {self.rss_first_mb:.0f} MB, last {WINDOW_S:.0f} s {self.rss_last_mb:.0f} MB, "
            f"growth {self.rss_growth:+.1%}" + ("" if self.memory_ok else f"  > {self.max_rss_growth:.0%} FAILED"),
        ]
        for pid, refs in self.worker_index_refs.items():
            held = []
            for how in ("open", "mapped"):
                names = sorted(
                    k.rsplit("/", 1)[-1] + (f" x{v}" if v > 1 else "") for k, v in refs.items() if k.startswith(how)
                )
                held.append(f"{how}: {', '.join(names) or '-'}")
            omp = self.worker_omp_threads.get(pid) or "unset"
            lines.append(f"  worker {pid} (OMP_NUM_THREADS {omp}): index files {'; '.join(held)}")
        if not self.workers_ok:
            lines.append(
                f"  workers FAILED: expected {self.workers} with the index loaded once each, "
                f"saw {self.worker_pids} at start and {self.workers_at_end} at the end"
            )
        r = self.reindex
        if r is not None:
            lines += [
                f"  re-index: `plansearch index` exit {r.build_exit}, "
                f"from {r.build_start:.1f} s to {r.build_end:.1f} s; admin reload -> HTTP {r.admin_reload_status}",
                f"  health passage counts seen {sorted(set(r.health_passages_seen))} (old {r.old_passages}, "
                f"new {r.new_passages}); probe '{PROBE_QUERY}': absent {r.probe_absent}, found {r.probe_found}",
                f"  answers from the old index {r.old_answers}, from the new {r.new_answers}, same in both "
                f"{r.unclassified}; last old answer started at "
                + (f"{r.last_old_start:.2f} s" if r.last_old_start is not None else "-")
                + ", first new answer ended at "
                + (f"{r.first_new_end:.2f} s" if r.first_new_end is not None else "-")
                + (" (one switch)" if r.switch_ok else " FAILED: answers went back to the old index"),
            ]
        for sample in self.error_samples[:10]:
            lines.append(f"  error: {sample}")
        lines.append("  OK" if self.ok else "  FAILED")
        return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- the workspace -----------------------------------------------------------------------------------
def prepare(workdir: Path, source_index: Path, corpus: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """Copy the corpus and the index (``current`` and the version it names) into ``workdir``."""
    from indexer.index import current_version

    work_corpus = workdir / "corpus"
    shutil.copytree(corpus, work_corpus, ignore=shutil.ignore_patterns(".*"))
    index_dir = workdir / "index"
    version = current_version(source_index)
    if version is not None and version.is_dir():
        index_dir.mkdir()
        shutil.copytree(version, index_dir / version.name)
        os.symlink(version.name, index_dir / "current")
    else:
        print(f"bench.load: no index at {source_index}, indexing {corpus} first", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "api.cli", "index", str(work_corpus), "--index", str(index_dir)],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
        )
    return work_corpus, index_dir


def add_new_item(corpus: Path) -> Path:
    """Append an item with text no other passage has to the smallest corpus file."""
    target = min(sorted(corpus.glob("*.txt")), key=lambda p: p.stat().st_size)
    text = target.read_text(encoding="utf-8")
    target.write_text(text.rstrip("\n") + f"\n\n99.{NEW_ITEM}\n", encoding="utf-8")
    return target


# -- the load -----------------------------------------------------------------------------------------
class Load:
    def __init__(
        self,
        served: Served,
        token: str,
        queries: list[str],
        clients: int,
        seconds: float,
        max_requests: int,
        reindex: ReindexResult | None,
        corpus: Path,
        env: dict[str, str],
    ) -> None:
        self.served, self.token, self.queries = served, token, queries
        self.clients, self.seconds, self.max_requests = clients, seconds, max_requests
        self.reindex, self.corpus, self.env = reindex, corpus, env
        self.headers = {"Authorization": f"Bearer {token}"}
        self.replies: list[Reply] = []
        self.sent = 0
        self.t0 = 0.0
        self.deadline = 0.0
        self.building = False
        self.work: list[tuple[str, str]] = [(p, q) for q in queries for p in ("/api/search", "/api/ask")]

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def request(self, http: httpx.AsyncClient, kind: str, path: str, params: dict[str, object]) -> Reply:
        key = f"{path}?{json.dumps(params, ensure_ascii=False)}"
        start = self.now()
        try:
            response = await http.get(path, params=params, headers=self.headers)
        except httpx.HTTPError as exc:
            return Reply(kind, key, start, self.now(), 0, "", f"{type(exc).__name__}: {exc}")
        end = self.now()
        if response.status_code != 200:
            return Reply(kind, key, start, end, response.status_code, "", response.text[:200])
        try:
            body = response.json()
            if kind == "health":
                value = str(body["passages"])
            elif kind == "probe":
                value = "found" if found_new_text(body) else "absent"
            else:
                value = fingerprint(path, body)
        except (ValueError, KeyError, TypeError) as exc:
            return Reply(kind, key, start, end, response.status_code, "", f"bad body ({exc}): {response.text[:200]}")
        return Reply(kind, key, start, end, 200, value)

    def going(self) -> bool:
        """Until the time is up (and a re-index under way has finished, up to 3x the time)
        or the requests are all sent."""
        if self.sent >= self.max_requests or self.now() >= self.seconds * 3:
            return False
        return self.now() < self.deadline or self.building

    async def client(self, http: httpx.AsyncClient, n: int) -> None:
        i = n * 7
        while self.going():
            self.sent += 1
            path, query = self.work[i % len(self.work)]
            i += 1
            self.replies.append(await self.request(http, "query", path, {"q": query}))

    async def monitor(self, http: httpx.AsyncClient) -> None:
        """Health and the probe query, a few times a second (with --reindex)."""
        while self.going():
            self.sent += 2
            self.replies.append(await self.request(http, "health", "/api/health", {}))
            self.replies.append(await self.request(http, "probe", "/api/search", {"q": PROBE_QUERY, "k": 10}))
            await asyncio.sleep(0.2)

    async def reindex_task(self, http: httpx.AsyncClient) -> None:
        r = self.reindex
        assert r is not None
        await asyncio.sleep(self.seconds / 5)
        add_new_item(self.corpus)
        r.build_start = self.now()
        self.building = True
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "api.cli",
            "index",
            str(self.corpus),
            "--index",
            str(self.served.index_dir),
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
        r.build_end = self.now()
        r.build_exit = proc.returncode
        r.build_output = output.decode("utf-8", errors="replace")[-2000:]
        # The service reloads on its own within 2 s; the admin reload must be safe beside that.
        response = await http.post("/api/admin/reload", headers=self.headers)
        r.admin_reload_status, r.admin_reload_body = response.status_code, response.text[:300]
        # Enough time on the new index to see that nothing goes back.
        self.deadline = max(self.deadline, r.build_end + 10)
        self.building = False

    async def run(self) -> None:
        # Idle connections are dropped after 2 s, before the server's keep-alive timeout (5 s)
        # closes them: reusing one just as the server closes it is a client-side race.
        limits = httpx.Limits(
            max_connections=self.clients + 4, max_keepalive_connections=self.clients + 4, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(base_url=self.served.base, limits=limits, timeout=60) as http:
            self.t0 = time.monotonic()
            self.deadline = self.seconds
            tasks = [asyncio.create_task(self.client(http, n)) for n in range(self.clients)]
            if self.reindex is not None:
                tasks.append(asyncio.create_task(self.monitor(http)))
                tasks.append(asyncio.create_task(self.reindex_task(http)))
            await asyncio.gather(*tasks)


def expected_answers(base: str, token: str, work: list[tuple[str, str]]) -> dict[str, str]:
    """Each query's answer, asked one at a time (also warms the service)."""
    answers: dict[str, str] = {}
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        for path, query in work:
            response = http.get(path, params={"q": query})
            response.raise_for_status()
            answers[f"{path}?{json.dumps({'q': query}, ensure_ascii=False)}"] = fingerprint(path, response.json())
    return answers


def run_load(
    clients: int = 32,
    seconds: float = 60,
    workers: int = 1,
    reindex: bool = False,
    max_requests: int = 100_000,
    source_index: Path | None = None,
    corpus: Path | None = None,
    model_dir: Path | None = None,
    queries: list[str] | None = None,
    max_rss_growth: float = 0.10,
    workdir: Path | None = None,
    say=print,  # type: ignore[no-untyped-def]
) -> LoadResult:
    """Run one load test and return its figures (see the module docstring)."""
    settings = Settings.from_env()
    source_index = source_index or settings.resolved_index_dir
    corpus = corpus or settings.corpus_dir
    model_dir = model_dir or settings.resolved_model_dir
    queries = queries or read_queries()
    token = secrets.token_urlsafe(16)
    result = LoadResult(clients, seconds, workers, max_rss_growth=max_rss_growth)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plansearch-load-")))
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = server_env(home, workdir / "corpus", model_dir, token)
        work_corpus, index_dir = prepare(workdir, source_index, corpus, env)
        served = stack.enter_context(serve(index_dir, env, workdir / "serve.log", workers=workers))
        result.worker_pids = sorted(served.workers())
        result.worker_index_refs_at_start = {pid: index_refs(pid, index_dir) for pid in result.worker_pids}
        result.worker_omp_threads = {pid: omp_threads(pid) for pid in result.worker_pids}
        say(f"bench.load: serving {index_dir} at {served.base} with {len(result.worker_pids)} worker(s)")

        load = Load(
            served,
            token,
            queries,
            clients,
            seconds,
            max_requests,
            ReindexResult() if reindex else None,
            work_corpus,
            env,
        )
        result.reindex = load.reindex
        old = expected_answers(served.base, token, load.work)
        if load.reindex is not None:
            load.reindex.old_passages = int(httpx.get(served.base + "/api/health", timeout=30).json()["passages"])
        sampler = RssSampler(served, time.monotonic())
        sampler.start()
        try:
            asyncio.run(load.run())
        finally:
            sampler.stop()
        result.duration = load.now()
        result.workers_at_end = sorted(served.workers())
        # Taken again at the end: FAISS is read on first use, and after a re-index
        # only the new version may still be held.
        result.worker_index_refs = {pid: index_refs(pid, index_dir) for pid in result.workers_at_end}
        new = old
        if load.reindex is not None and load.reindex.build_exit == 0:
            new = settle_on_new_index(served, token, load, workers)
        check(load, result, old, new)
        result.rss_samples = sampler.samples
        result.rss_first_mb, result.rss_last_mb = rss_windows(sampler.samples, result.duration)
        if not result.ok:
            say(served.log()[-3000:])
        return result


def settle_on_new_index(served: Served, token: str, load: Load, workers: int) -> dict[str, str]:
    """Wait until every worker serves the new index, then take each query's new answer."""
    r = load.reindex
    assert r is not None
    deadline = time.monotonic() + 30
    streak = 0
    with httpx.Client(base_url=served.base, timeout=30) as http:
        while time.monotonic() < deadline and streak < 4 * workers:
            health = http.get("/api/health").json()
            passages = int(health.get("passages", 0))
            r.new_passages = passages if passages != r.old_passages else r.new_passages
            streak = streak + 1 if passages != r.old_passages else 0
            time.sleep(0.3)
    return expected_answers(served.base, token, load.work)


def check(load: Load, result: LoadResult, old: dict[str, str], new: dict[str, str]) -> None:
    latencies = []
    r = load.reindex
    for reply in load.replies:
        if reply.kind == "query":
            result.requests += 1
            latencies.append((reply.end - reply.start) * 1000)
        if reply.status != 200 or reply.error:
            result.errors += 1
            result.error_samples.append(f"{reply.key} at {reply.start:.1f} s: HTTP {reply.status} {reply.error}")
            continue
        if reply.kind == "query":
            if reply.value not in (old[reply.key], new[reply.key]):
                result.mismatches += 1
                result.error_samples.append(f"{reply.key} at {reply.start:.1f} s: an answer neither index gives")
                continue
            era = None if old[reply.key] == new[reply.key] else ("old" if reply.value == old[reply.key] else "new")
        elif reply.kind == "health":
            assert r is not None
            r.health_passages_seen.append(int(reply.value))
            era = "old" if int(reply.value) == r.old_passages else "new"
        else:
            assert r is not None
            if reply.value == "found":
                r.probe_found += 1
            else:
                r.probe_absent += 1
            era = "new" if reply.value == "found" else "old"
        if r is None or era is None:
            if r is not None:
                r.unclassified += 1
            continue
        if era == "old":
            r.old_answers += 1
            r.last_old_start = max(r.last_old_start or 0.0, reply.start)
        else:
            r.new_answers += 1
            r.first_new_end = reply.end if r.first_new_end is None else min(r.first_new_end, reply.end)
    if r is not None:
        r.health_passages_seen = sorted(set(r.health_passages_seen))
        if result.workers == 1:
            r.switch_ok = (
                r.first_new_end is not None and r.last_old_start is not None and r.last_old_start < r.first_new_end
            )
        else:
            # Each worker switches on its own; across workers only old-or-new is checked.
            r.switch_ok = r.first_new_end is not None
    result.p50_ms = percentile(latencies, 0.50)
    result.p99_ms = percentile(latencies, 0.99)
    result.max_ms = max(latencies, default=0.0)


def rss_windows(samples: list[tuple[float, int, int, int]], duration: float) -> tuple[float, float]:
    first = [s[1] for s in samples if s[0] < WINDOW_S]
    last = [s[1] for s in samples if s[0] >= duration - WINDOW_S]
    mean = lambda xs: sum(xs) / len(xs) / 1024 if xs else 0.0  # noqa: E731
    return mean(first), mean(last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reindex", action="store_true", help="run `plansearch index` on a changed corpus under load")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--index", type=Path, help="index to copy (default: the configured one)")
    parser.add_argument("--corpus", type=Path, help="its corpus (default: the configured one)")
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    result = run_load(
        clients=args.clients,
        seconds=args.seconds,
        workers=args.workers,
        reindex=args.reindex,
        max_requests=args.max_requests,
        source_index=args.index,
        corpus=args.corpus,
        max_rss_growth=args.max_rss_growth,
    )
    print(result.summary())
    if args.json:
        record = dataclasses.asdict(result)
        record.pop("rss_samples")
        record.update(throughput=result.throughput, rss_growth=result.rss_growth, ok=result.ok)
        print(json.dumps(record, ensure_ascii=False, default=str))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
