"""Scale: an index of 1,000,000 synthetic passages, built and served through the real code.

    python -m bench.scale [--passages 1000000] [--keep DIR]

Passages are recombined from the seed corpus: each joins one to three seed
clauses (their text, their jieba tokens and, as its unit vectors, the seed
clauses' e5 vectors plus noise, so that the vectors cluster like real ones).
The encoder is not run for them; this measures the index layers:

* build: ``BM25.fit`` and the FAISS index ``write_index`` picks for this many
  units (timed inside the real ``write_index``), and the whole write;
* serving: a real ``plansearch serve`` process on it: start-up (load with
  checksums), resident memory, search p50/p99 over HTTP on loopback;
* recall@10 of the dense retriever (FAISS candidates re-scored exactly) against
  exact scoring of every passage, for the dev questions and synthetic ones;
* adding one document (a seed file under a new name) with ``build_index``:
  seconds without its embedding, and its embedding seconds.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import free_port, rss_mb
from indexer import index as index_module
from indexer.bm25 import BM25
from indexer.build import background_texts, build_index, compatibility, corpus_files, parse_file
from indexer.chunk import embedding_units
from indexer.config import PROJECT_ROOT, Settings
from indexer.embed import make_embedder
from indexer.index import Index, faiss_kind, write_index
from indexer.tokenize import Tokenizer
from indexer.types import Document, Item, Passage
from search.retrieve import DenseRetriever

DEV = PROJECT_ROOT.parent / "shared" / "eval" / "dev.jsonl"
PASSAGES_PER_DOCUMENT = 500
NOISE = 0.025  # per-dimension noise: cosine ~0.9 between a synthetic unit and its seed clause


@dataclass
class ScaleResult:
    passages: int
    units: int
    faiss_kind: str
    generate_s: float = 0.0
    bm25_fit_s: float = 0.0
    faiss_build_s: float = 0.0
    write_s: float = 0.0
    index_bytes: int = 0
    serve_start_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_after_file_mb: float = 0.0  # of it, file-backed: mapped index pages (page cache, shared by workers)
    search_ms: list[float] = field(default_factory=list)
    recall_at_10: float = 0.0
    recall_queries: int = 0
    add_total_s: float = 0.0
    add_embed_s: float = 0.0
    add_passages: int = 0

    @property
    def search_p50(self) -> float:
        return statistics.median(self.search_ms)

    @property
    def search_p99(self) -> float:
        return float(np.percentile(self.search_ms, 99))


def _say(line: str) -> None:
    print(f"[scale] {line}", file=sys.stderr, flush=True)


# Seed clauses: texts, their BM25 tokens, their vectors.
Clauses = tuple[list[str], list[list[str]], np.ndarray]


def seed_clauses(settings: Settings, index: Index) -> Clauses:
    """Every clause unit of the seed index: text, BM25 tokens, vector."""
    texts: list[str] = []
    vectors: list[np.ndarray] = []
    for row in range(index.size):
        units = embedding_units(index.passage(row))
        unit_vectors = index.unit_vectors(row)
        texts.extend(units[1:])
        vectors.extend(unit_vectors[1:])
    return texts, Tokenizer().many(texts), np.asarray(vectors, dtype=np.float32)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _noisy(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _normalise(base + rng.standard_normal(base.shape, dtype=np.float32) * NOISE)


def synthetic_vectors(
    picks: np.ndarray, n_clauses: np.ndarray, clause_vectors: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Unit vectors of the synthetic passages: per passage its whole text, then its clauses.

    A clause's vector is its seed clause's, mixed with a random share (0-60%)
    of another seed clause and noise, so passages spread between the seed
    topics instead of sitting on ~1,000 points; the whole-text vector is the
    mean of its clauses' (plus noise), as for a real passage. Noise rows come
    from a pool (drawing 2 billion normals would dominate the benchmark)."""
    dim = clause_vectors.shape[1]
    pool = rng.standard_normal((1 << 17, dim), dtype=np.float32) * NOISE

    def noise(n: int) -> np.ndarray:
        return pool[rng.integers(0, len(pool), size=n)]

    clause_rows = np.empty((len(picks), dim), dtype=np.float32)
    for lo in range(0, len(picks), 1 << 18):
        hi = min(lo + (1 << 18), len(picks))
        share = rng.uniform(0, 0.6, size=(hi - lo, 1)).astype(np.float32)
        other = clause_vectors[rng.integers(0, len(clause_vectors), size=hi - lo)]
        clause_rows[lo:hi] = _normalise(clause_vectors[picks[lo:hi]] + share * other + noise(hi - lo))
    # Sum of each passage's clauses (1-3 of them) without reduceat: the k-th clause of each passage.
    starts = np.concatenate([[0], np.cumsum(n_clauses)[:-1]])
    whole = clause_rows[starts].copy()
    for k in (1, 2):
        has = np.flatnonzero(n_clauses > k)
        whole[has] += clause_rows[starts[has] + k]
    whole = _normalise(_normalise(whole) + noise(len(whole)))
    unit_start = np.concatenate([[0], np.cumsum(n_clauses + 1)[:-1]])
    vectors = np.empty((int((n_clauses + 1).sum()), dim), dtype=np.float32)
    vectors[unit_start] = whole
    within = np.arange(len(picks)) - np.repeat(starts, n_clauses)
    vectors[np.repeat(unit_start, n_clauses) + 1 + within] = clause_rows
    return vectors


def synthesize(n_passages: int, clauses: Clauses, corpus_dir: Path, seed: int = 0):  # type: ignore[no-untyped-def]
    """Documents, passages, unit vectors, unit counts, BM25 tokens and the
    manifest's file table of a synthetic corpus (whose files are written too)."""
    from indexer.build import file_hash

    texts, tokens, clause_vectors = clauses
    rng = np.random.default_rng(seed)
    n_clauses = rng.integers(1, 4, size=n_passages)
    picks = rng.integers(0, len(texts), size=int(n_clauses.sum()))
    starts = np.concatenate([[0], np.cumsum(n_clauses)])
    vectors = synthetic_vectors(picks, n_clauses, clause_vectors, rng)
    documents: list[Document] = []
    passages: list[Passage] = []
    corpus_tokens: list[list[str]] = []
    files: dict[str, dict[str, object]] = {}
    tokenizer = Tokenizer()
    for d in range(0, n_passages, PASSAGES_PER_DOCUMENT):
        doc_id = f"syn{d // PASSAGES_PER_DOCUMENT:05d}"
        title = f"合成{d // PASSAGES_PER_DOCUMENT:05d}区教育工作要点"
        source = f"{doc_id}.txt"
        heading = f"{title}\n一、合成章节"
        heading_tokens = tokenizer(heading)
        items: list[Item] = []
        for number, row in enumerate(range(d, min(d + PASSAGES_PER_DOCUMENT, n_passages)), start=1):
            mine = picks[starts[row] : starts[row + 1]]
            text = "".join(texts[c] for c in mine)
            items.append(Item(section="一、合成章节", item=f"{number}.", subitem=None, text=text))
            passages.append(
                Passage(
                    doc_id=doc_id, doc_title=title, source_file=source, year=2020 + row % 7, region=None,
                    issuer=None, section="一、合成章节", item=f"{number}.", subitem=None,
                    citation=f"《{title}》 一、合成章节 第{number}条", text=text, embed_text=f"{heading}\n{text}",
                    unit_key=f"{doc_id}/{number}",
                )
            )
            corpus_tokens.append(heading_tokens + [t for c in mine for t in tokens[c]])
        documents.append(Document(doc_id=doc_id, title=title, issuer=None, year=None, region=None,
                                  source_file=source, items=tuple(items)))
        body = title + "\n一、合成章节\n" + "\n".join(f"{i.item}{i.text}" for i in items) + "\n"
        (corpus_dir / source).write_text(body, encoding="utf-8")
        files[source] = {"sha256": file_hash(corpus_dir / source), "documents": [doc_id]}
    return documents, passages, vectors, n_clauses + 1, corpus_tokens, files


def _get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def dev_questions() -> list[str]:
    if not DEV.is_file():
        return ["义务教育课后服务", "教师培训", "学生体质健康", "校园安全", "双减"]
    return [json.loads(line)["query"] for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]


def exact_top(index: Index, queries: np.ndarray, k: int = 10, whole_weight: float = 0.3) -> np.ndarray:
    """The exact top-k passage rows of each query: every unit scored, in chunks."""
    n = index.size
    best_scores = np.full((queries.shape[0], 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((queries.shape[0], 0), dtype=np.int64)
    step = 100_000
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        u0, u1 = int(index.unit_offsets[r0]), int(index.unit_offsets[r1])
        sims = index.vectors_at(np.arange(u0, u1)) @ queries.T  # (units, queries)
        first = index.unit_offsets[r0:r1] - u0
        counts = index.unit_offsets[r0 + 1 : r1 + 1] - index.unit_offsets[r0:r1]
        whole = sims[first]
        clauses = sims.copy()
        clauses[first[counts > 1]] = -np.inf
        best = np.where((counts > 1)[:, None], np.maximum.reduceat(clauses, first, axis=0), whole)
        scores = (whole_weight * whole + (1 - whole_weight) * best).T  # (queries, rows)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_rows = np.concatenate([best_rows, np.broadcast_to(np.arange(r0, r1), scores.shape)], axis=1)
        keep = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(all_scores, keep, axis=1)
        best_rows = np.take_along_axis(all_rows, keep, axis=1)
    return best_rows


def run_scale(n_passages: int, work: Path, settings: Settings) -> ScaleResult:
    seed_index = Index.load(settings.resolved_index_dir, compatibility(settings))
    clauses = seed_clauses(settings, seed_index)
    home = work / "home"
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    scale_settings = Settings.from_env(home=home, corpus_dir=corpus, model_dir=settings.resolved_model_dir)

    started = time.perf_counter()
    documents, passages, vectors, unit_counts, tokens, files = synthesize(n_passages, clauses, corpus)
    result = ScaleResult(passages=len(passages), units=int(vectors.shape[0]), faiss_kind=faiss_kind(vectors.shape[0]))
    result.generate_s = time.perf_counter() - started
    _say(f"generated {result.passages} passages, {result.units} units in {result.generate_s:.1f} s")

    started = time.perf_counter()
    bm25 = BM25.fit(tokens)
    result.bm25_fit_s = time.perf_counter() - started
    del tokens
    _say(f"BM25 fit {result.bm25_fit_s:.1f} s")

    real_make = index_module.make_faiss_index

    def timed_make(v):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        made = real_make(v)
        result.faiss_build_s = time.perf_counter() - t
        return made

    index_module.make_faiss_index = timed_make  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        background = seed_index.background, seed_index.manifest["background_sha256"]
        version = write_index(
            scale_settings.resolved_index_dir,
            documents,
            passages,
            vectors,
            unit_counts,
            bm25,
            compatibility(settings),
            files,
            background=background,
            embedder=seed_index.embedder,  # the synthetic vectors are the seed index's, recombined
        )
        result.write_s = time.perf_counter() - started
    finally:
        index_module.make_faiss_index = real_make  # type: ignore[assignment]
    result.index_bytes = sum(p.stat().st_size for p in version.rglob("*") if p.is_file())
    _say(
        f"write_index {result.write_s:.1f} s (FAISS {result.faiss_kind} {result.faiss_build_s:.1f} s), "
        f"{result.index_bytes / 1e9:.2f} GB"
    )
    del documents, passages, vectors, bm25

    questions = dev_questions()
    # Recall of the dense retriever at this size, against exact scoring.
    index = Index.load(scale_settings.resolved_index_dir, compatibility(settings), verify=False)
    query_embedder = make_embedder(settings.query_embedder, settings.resolved_model_dir)
    rng = np.random.default_rng(1)
    synthetic = _noisy(clauses[2][rng.integers(0, len(clauses[0]), size=60)], rng)  # near a seed clause
    queries = np.concatenate([query_embedder.encode_queries(questions), synthetic]).astype(np.float32)
    exact = exact_top(index, queries)
    dense = DenseRetriever(index)
    hits = 0
    for q, truth in zip(queries, exact, strict=True):
        found = [row for row, _ in dense.search(q, settings.candidates)][:10]
        hits += len(set(found) & set(truth.tolist()))
    result.recall_at_10 = hits / (10 * len(queries))
    result.recall_queries = len(queries)
    index.close()
    _say(f"recall@10 {result.recall_at_10:.3f} over {len(queries)} queries")

    port = free_port()
    env = {
        **os.environ,
        "PLANSEARCH_HOME": str(home),
        "PLANSEARCH_CORPUS_DIR": str(corpus),
        "PLANSEARCH_MODEL_DIR": str(settings.resolved_model_dir),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    env.pop("PLANSEARCH_INDEX_DIR", None)
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                status, _ = _get(base + "/api/health", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"serve did not start: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.2)
        result.serve_start_s = time.perf_counter() - started
        result.rss_start_mb = rss_mb(server.pid)
        for question in questions[:5]:  # warm-up
            _get(base + "/api/search?" + urllib.parse.urlencode({"q": question}))
        for _ in range(5):
            for question in questions:
                t = time.perf_counter()
                status, _ = _get(base + "/api/search?" + urllib.parse.urlencode({"q": question}))
                result.search_ms.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    raise RuntimeError(f"search answered {status}")
        result.rss_after_mb = rss_mb(server.pid)
        result.rss_after_file_mb = rss_mb(server.pid, "RssFile")
    finally:
        server.terminate()
        server.wait(timeout=30)
    _say(
        f"serve: start {result.serve_start_s:.1f} s, RSS {result.rss_start_mb:.0f} -> {result.rss_after_mb:.0f} MB, "
        f"search p50 {result.search_p50:.1f} ms p99 {result.search_p99:.1f} ms"
    )

    # Add one document: a seed file under a new name, with the indexing model already loaded.
    embedder = make_embedder(settings.passage_embedder, settings.resolved_model_dir, settings.embed_batch_size)
    embedder.encode_passages(background_texts()[:2])  # warm
    source = corpus_files(settings.corpus_dir)[1]
    shutil.copyfile(source, corpus / "added-document.txt")
    parsed = parse_file(corpus / "added-document.txt", corpus, scale_settings)
    result.add_passages = len(parsed[1]) if parsed else 0
    report = build_index(scale_settings, progress=False, embedder=embedder, say=_say)
    result.add_total_s, result.add_embed_s = report.seconds, report.embed_seconds
    _say(
        f"added a document of {result.add_passages} passages in {report.seconds:.1f} s "
        f"({report.embed_seconds:.1f} s embedding); {report.passages} passages now"
    )
    seed_index.close()
    return result


def rows(result: ScaleResult):  # type: ignore[no-untyped-def]
    """Rows for the benchmark table (bench.report)."""
    from bench.report import Row

    add_s = result.add_total_s - result.add_embed_s
    section = f"scale ({result.passages:,} passages, {result.units:,} units, {result.faiss_kind})"
    return [
        Row(section, "BM25 build", f"{result.bm25_fit_s:.1f} s", "", None),
        Row(section, "FAISS build", f"{result.faiss_build_s:.1f} s", "", None),
        Row(
            section,
            "write_index (all layers, checksums)",
            f"{result.write_s:.1f} s",
            "",
            None,
            f"{result.index_bytes / 1e9:.2f} GB on disk",
        ),
        Row(
            section,
            "serving RSS after start / after queries",
            f"{result.rss_start_mb:.0f} / {result.rss_after_mb:.0f} MB",
            "≤ 2048 MB",
            result.rss_after_mb <= 2048,
            f"start-up {result.serve_start_s:.1f} s; after queries "
            f"{result.rss_after_mb - result.rss_after_file_mb:.0f} MB anonymous + "
            f"{result.rss_after_file_mb:.0f} MB mapped index files",
        ),
        Row(
            section,
            "search p50 / p99 (HTTP)",
            f"{result.search_p50:.1f} / {result.search_p99:.1f} ms",
            "p50 ≤ 50 ms, p99 ≤ 3 × p50",
            result.search_p50 <= 50 and result.search_p99 <= 3 * result.search_p50,
        ),
        Row(
            section,
            "dense recall@10 vs exact",
            f"{result.recall_at_10:.3f}",
            "≥ 0.95",
            result.recall_at_10 >= 0.95,
            f"{result.recall_queries} queries",
        ),
        Row(
            section,
            "add one document (excl. embedding)",
            f"{add_s:.1f} s",
            "≤ 5 s",
            add_s <= 5,
            f"{result.add_passages} passages, embedding {result.add_embed_s:.1f} s",
        ),
    ]


def run(quick: bool = False, passages: int | None = None, keep: Path | None = None):  # type: ignore[no-untyped-def]
    settings = Settings.from_env()
    n = passages or (20_000 if quick else 1_000_000)
    work = keep or Path(tempfile.mkdtemp(prefix="plansearch-scale-"))
    try:
        return rows(run_scale(n, work, settings))
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build under this directory and keep it")
    args = parser.parse_args()
    for row in run(passages=args.passages, keep=args.keep):
        print(f"{row.metric:45} {row.value:>20}  {row.target:>28}  {row.note}")


if __name__ == "__main__":
    main()
