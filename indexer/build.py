"""The indexing pipeline: load -> clean -> structure -> chunk -> embed -> index.

Incremental: a source file whose bytes (and ``.meta.json`` sidecar) are
unchanged keeps its documents, passages and vectors from the current index;
only added or changed files are parsed and embedded, removed files drop out.
When files were only added, the new version is the previous one plus a new
segment (``index.append_index``): its cost is the new files, not the corpus.
A change of model, chunker or tokenizer rebuilds everything, and says so.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.bm25 import BM25
from indexer.chunk import CHUNKER_VERSION, chunk, embedding_units
from indexer.clean import clean
from indexer.config import Settings
from indexer.embed import DIM, Embedder, make_embedder
from indexer.index import (
    MAX_SEGMENTS,
    Compatibility,
    Index,
    IndexMismatchError,
    IndexMissingError,
    IndexUnusableError,
    append_index,
    clean_stale,
    write_index,
)
from indexer.load import SUPPORTED_SUFFIXES, load_file
from indexer.model import weights_sha256
from indexer.structure import read_meta_sidecar, structure
from indexer.tokenize import TOKENIZER_VERSION, tokenize_in_background
from indexer.types import Document, Item, Passage

log = logging.getLogger("plansearch")

# Held (flock) by the build of an index directory.
BUILD_LOCK = ".build.lock"


@dataclass
class BuildReport:
    """What a build did, for the CLI and the tests."""

    files: int = 0
    files_parsed: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    passages: int = 0
    passages_embedded: int = 0
    rebuild_reason: str | None = None
    up_to_date: bool = False
    version: Path | None = None
    seconds: float = 0.0
    embed_seconds: float = 0.0


BACKGROUND_FILE = Path(__file__).with_name("data") / "background.txt"


def background_texts(path: Path = BACKGROUND_FILE) -> list[str]:
    """Reference texts on topics outside the corpus (see search.answer): embedded
    with every index so a question can be compared with them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def compatibility(settings: Settings) -> Compatibility:
    """What the running code needs an index to have been built with."""
    return Compatibility(
        model_name=settings.model_name,
        weights_sha256=weights_sha256(),
        dim=DIM,
        chunker_version=CHUNKER_VERSION,
        tokenizer_version=TOKENIZER_VERSION,
    )


def corpus_files(corpus_dir: Path) -> list[Path]:
    """Supported source files, in a stable order (hidden files and sidecars excluded)."""
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"corpus directory {corpus_dir} does not exist")
    return sorted(
        path
        for path in corpus_dir.rglob("*")
        if path.is_file()
        and path.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(corpus_dir).parts)
    )


def file_hash(path: Path) -> str:
    """Content hash of a source file and its metadata sidecar."""
    digest = hashlib.sha256(path.read_bytes())
    sidecar = path.with_name(path.name + ".meta.json")
    if sidecar.is_file():
        digest.update(b"\0meta\0" + sidecar.read_bytes())
    return digest.hexdigest()


def parse_file(path: Path, corpus_dir: Path, settings: Settings) -> tuple[list[Document], list[Passage]] | None:
    """load -> clean -> structure -> chunk for one file; None if it is skipped."""
    loaded = load_file(path, corpus_dir)
    if loaded is None:
        return None
    try:
        metas = read_meta_sidecar(path)
    except ValueError as exc:
        log.warning("ignored metadata of %s: %s", loaded.source_file, exc)
        metas = []
    documents = structure(clean(loaded), metas)
    passages: list[Passage] = []
    for document in documents:
        passages.extend(chunk(document, settings.max_passage_chars, settings.passage_overlap_chars))
    return documents, passages


def _previous(
    index_dir: Path, compat: Compatibility, rebuild: bool, embedder: str
) -> tuple[Index | None, str | None]:
    """The current index to reuse from, or why everything is rebuilt."""
    if rebuild:
        return None, "rebuild requested"
    try:
        # Sizes only: checksums are verified where old data is copied into
        # the new version (hard-linked segments keep their checksums).
        previous = Index.load(index_dir, compat, verify=False)
        if previous.embedder != embedder:
            previous.close()
            used = previous.embedder or "an older build"
            return None, f"passages were embedded by {used}, this build uses {embedder}: re-embedding everything"
        return previous, None
    except IndexMissingError:
        return None, None
    except IndexMismatchError as exc:
        return None, f"model, chunker or tokenizer changed ({str(exc).split(': run')[0]}): rebuilding everything"
    except IndexUnusableError as exc:
        return None, f"previous index unusable ({str(exc).split(': run')[0]}): rebuilding everything"


def _old_documents(index: Index, source_file: str) -> list[Document]:
    documents = []
    for info in index.documents:
        if info.source_file != source_file:
            continue
        outline = index.outline(info.doc_id)
        documents.append(
            Document(
                doc_id=info.doc_id,
                title=info.title,
                issuer=info.issuer,
                year=info.year,
                region=info.region,
                source_file=info.source_file,
                items=tuple(Item(**item) for item in outline["items"]),
            )
        )
    return documents


@contextmanager
def build_lock(index_dir: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One build of an index directory at a time: a second one waits for the first
    (whose result it then updates) instead of removing its work in progress."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / BUILD_LOCK).open("a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"plansearch: another build of {index_dir} is running; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the lock goes with the file (also when the process is killed)


def build_index(
    settings: Settings,
    corpus_dir: Path | None = None,
    index_dir: Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
    embedder: Embedder | None = None,
    say: Callable[[str], None] | None = None,
) -> BuildReport:
    """Bring the index of ``corpus_dir`` up to date. Returns what was done."""
    say = say or (lambda line: print(line, file=sys.stderr))
    index_dir = index_dir or settings.resolved_index_dir
    with build_lock(index_dir, say):
        return _build_index(settings, corpus_dir, index_dir, rebuild, progress, embedder, say)


def _build_index(
    settings: Settings,
    corpus_dir: Path | None,
    index_dir: Path,
    rebuild: bool,
    progress: bool,
    embedder: Embedder | None,
    say: Callable[[str], None],
) -> BuildReport:
    started = time.perf_counter()
    corpus_dir = corpus_dir or settings.corpus_dir
    report = BuildReport()
    compat = compatibility(settings)
    clean_stale(index_dir)
    embedder_name = embedder.name if embedder is not None else settings.passage_embedder  # validated by Settings
    previous, reason = _previous(index_dir, compat, rebuild, embedder_name)
    report.rebuild_reason = reason
    if reason:
        say(f"plansearch: {reason}")

    paths = corpus_files(corpus_dir)
    report.files = len(paths)
    hashes = {path.relative_to(corpus_dir).as_posix(): file_hash(path) for path in paths}
    old_files: dict[str, dict[str, object]] = previous.manifest["files"] if previous else {}
    background = background_texts()
    background_sha = hashlib.sha256("\n".join(background).encode("utf-8")).hexdigest()
    same_background = previous is not None and previous.manifest.get("background_sha256") == background_sha
    if (
        previous is not None
        and same_background
        and hashes == {name: entry["sha256"] for name, entry in old_files.items()}
    ):
        report.up_to_date = True
        report.files_skipped = sorted(name for name, entry in old_files.items() if entry.get("skipped"))
        report.passages = previous.size
        report.version = previous.path
        report.seconds = time.perf_counter() - started
        previous.close()
        return report
    report.files_removed = sorted(set(old_files) - set(hashes))
    changed = [name for name, digest in hashes.items() if name in old_files and old_files[name]["sha256"] != digest]
    # Files only added: the new version is the previous one plus a segment.
    append = (
        previous is not None
        and same_background
        and not report.files_removed
        and not changed
        and len(previous.segment_infos) < MAX_SEGMENTS
    )
    if previous is not None and not append:
        try:
            previous.verify()  # its documents and vectors are about to be copied
        except IndexUnusableError as exc:
            previous.close()
            previous, old_files, same_background = None, {}, False
            report.rebuild_reason = f"previous index unusable ({str(exc).split(': run')[0]}): rebuilding everything"
            say(f"plansearch: {report.rebuild_reason}")

    old_background = previous.background.copy() if previous is not None and same_background else None
    documents: list[Document] = []
    passages: list[Passage] = []
    # Unit vectors of each passage (its whole text, then its clauses); None
    # where the passage is new and still has to be embedded.
    unit_vectors: list[np.ndarray | None] = []
    files: dict[str, dict[str, object]] = {}
    for path in paths:
        name = path.relative_to(corpus_dir).as_posix()
        old = old_files.get(name)
        unchanged = previous is not None and old is not None and old["sha256"] == hashes[name]
        if unchanged and (append or old.get("skipped")):
            # Already in the kept segments, or skipped last time and unchanged:
            # skipped again, without re-reading it.
            if old.get("skipped"):
                report.files_skipped.append(name)
            files[name] = old
            continue
        if unchanged:
            rows = previous.file_passages(name)
            file_docs = _old_documents(previous, name)
            file_passages = previous.passages(rows)
            unit_vectors.extend(previous.unit_vectors(row) for row in rows)
        else:
            parsed = parse_file(path, corpus_dir, settings)
            if parsed is None:
                # Recorded, so that an unchanged bad file does not make every later build re-parse it.
                report.files_skipped.append(name)
                files[name] = {"sha256": hashes[name], "documents": [], "skipped": True}
                continue
            report.files_parsed.append(name)
            file_docs, file_passages = parsed
            unit_vectors.extend([None] * len(file_passages))
        files[name] = {"sha256": hashes[name], "documents": [d.doc_id for d in file_docs]}
        documents.extend(file_docs)
        passages.extend(file_passages)
    if previous is not None and not append:
        previous.close()

    # BM25 tokens are made in a child process while the model loads and embeds.
    tokens = tokenize_in_background([p.embed_text for p in passages])
    new_rows = [row for row, vectors in enumerate(unit_vectors) if vectors is None]
    if new_rows or old_background is None:
        embedder = embedder or make_embedder(
            settings.passage_embedder, settings.resolved_model_dir, settings.embed_batch_size
        )
    if new_rows:
        embed_started = time.perf_counter()
        units = [embedding_units(passages[row]) for row in new_rows]
        # Each distinct text once (overlapping windows of a long item share
        # clauses), in one call over all of them: batches are formed across the
        # whole corpus. The bar counts a passage once all of its units are done.
        position: dict[str, int] = {}
        owners: list[list[int]] = []
        for passage_number, group in enumerate(units):
            for text in group:
                if text not in position:
                    position[text] = len(owners)
                    owners.append([])
                owners[position[text]].append(passage_number)
        remaining = [len(group) for group in units]
        with tqdm(total=len(new_rows), unit="passage", desc="embedding", disable=not progress, file=sys.stderr) as bar:

            def advance(rows: np.ndarray) -> None:
                finished = 0
                for row in rows.tolist():
                    for passage_number in owners[row]:
                        remaining[passage_number] -= 1
                        finished += remaining[passage_number] == 0
                bar.update(finished)

            distinct = embedder.encode_passages(list(position), progress=advance)
        for row, group in zip(new_rows, units, strict=True):
            unit_vectors[row] = distinct[[position[text] for text in group]]
        report.embed_seconds = time.perf_counter() - embed_started
    report.passages_embedded = len(new_rows)
    ready = [v for v in unit_vectors if v is not None]
    unit_counts = np.asarray([len(v) for v in ready], dtype=np.int64)
    vectors = np.concatenate(ready) if ready else np.zeros((0, DIM), dtype=np.float32)

    if old_background is None:
        assert embedder is not None
        old_background = embedder.encode_passages(background)
    if append:
        assert previous is not None
        try:
            report.version = append_index(
                previous, documents, passages, vectors, unit_counts, tokens(), files,
                background=(old_background, background_sha),
            )
            report.passages = previous.size + len(passages)
        finally:
            previous.close()
    else:
        report.version = write_index(
            index_dir,
            documents,
            passages,
            vectors,
            unit_counts,
            BM25.fit(tokens()),
            compat,
            files,
            background=(old_background, background_sha),
            embedder=embedder_name,
        )
        report.passages = len(passages)
    report.seconds = time.perf_counter() - started
    return report
