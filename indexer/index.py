"""Index stage: the on-disk index, written atomically and loaded with checks.

Layout of an index directory ``DIR``::

    DIR/current -> v-20261122T110203-4242   (symlink, swapped atomically)
    DIR/v-…/manifest.json                    written last; checksums of the rest
    DIR/v-…/passages.jsonl, passage_offsets.npy, passage_doc.npy
    DIR/v-…/documents.jsonl                  one document (with its outline) a line
    DIR/v-…/vectors.npy, unit_offsets.npy     unit vectors (whole passage, then each
                                             clause); passage i owns rows
                                             unit_offsets[i]:unit_offsets[i+1]
    DIR/v-…/faiss.index                      all unit vectors, inner product
    DIR/v-…/bm25*.json|npy                   BM25 postings (indexer.bm25)
    DIR/v-…/background.npy                   vectors of off-corpus reference texts

A new version is written into ``DIR/.tmp-…`` and renamed to ``v-…``; only
then does ``current`` move, by ``os.replace`` of a symlink. A build killed at
any moment leaves ``current`` pointing at the previous, complete version;
leftovers are removed by the next build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.bm25 import BM25
from indexer.types import Document, Passage

FORMAT_VERSION = 1
CURRENT = "current"
MANIFEST = "manifest.json"
# Below this many passages, exact inner-product search; above, HNSW over
# 8-bit scalar-quantised vectors (memory ~1/4 of flat, recall >= 0.95).
EXACT_SEARCH_MAX = 200_000


class IndexUnusableError(RuntimeError):
    """An index that cannot be used; the message says what to run."""


class IndexMissingError(IndexUnusableError):
    pass


class IndexMismatchError(IndexUnusableError):
    pass


class IndexDamagedError(IndexUnusableError):
    pass


@dataclass(frozen=True)
class DocumentInfo:
    """A document as the index lists it."""

    doc_id: str
    title: str
    issuer: str | None
    year: int | None
    region: str | None
    source_file: str
    passage_count: int


@dataclass(frozen=True)
class Compatibility:
    """What an index must share with the running code to be searched."""

    model_name: str
    weights_sha256: str
    dim: int
    chunker_version: str
    tokenizer_version: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_faiss_index(vectors: np.ndarray):  # type: ignore[no-untyped-def]
    """The FAISS index type for a corpus of this size (see EXACT_SEARCH_MAX)."""
    import faiss

    n, dim = vectors.shape
    if n <= EXACT_SEARCH_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.train(vectors)
    if n:
        index.add(vectors)
    return index


def faiss_kind(n: int) -> str:
    return "flat-ip" if n <= EXACT_SEARCH_MAX else "hnsw32-sq8-ip"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_index(
    index_dir: Path,
    documents: Sequence[Document],
    passages: Sequence[Passage],
    vectors: np.ndarray,
    unit_counts: np.ndarray,
    bm25: BM25,
    compat: Compatibility,
    files: dict[str, dict[str, object]],
    background: tuple[np.ndarray, str] | None = None,
) -> Path:
    """Write a complete new version and make it current. Returns its path.

    ``passages`` must be grouped by document in the order of ``documents``;
    ``files`` maps each source file to its content hash and document ids.
    """
    import faiss

    if len(unit_counts) != len(passages) or vectors.shape != (int(unit_counts.sum()), compat.dim):
        raise ValueError(f"vectors {vectors.shape} do not match the units of {len(passages)} passages")
    index_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    tmp = index_dir / f".tmp-{stamp}-{os.getpid()}"
    tmp.mkdir()

    doc_index = {doc.doc_id: n for n, doc in enumerate(documents)}
    offsets = [0]
    passage_doc = np.zeros(len(passages), dtype=np.int32)
    counts = [0] * len(documents)
    with (tmp / "passages.jsonl").open("wb") as handle:
        for row, passage in enumerate(passages):
            line = (json.dumps(asdict(passage), ensure_ascii=False) + "\n").encode("utf-8")
            handle.write(line)
            offsets.append(offsets[-1] + len(line))
            passage_doc[row] = doc_index[passage.doc_id]
            counts[passage_doc[row]] += 1
        handle.flush()
        os.fsync(handle.fileno())
    np.save(tmp / "passage_offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(tmp / "passage_doc.npy", passage_doc)
    with (tmp / "documents.jsonl").open("w", encoding="utf-8") as handle:
        for doc, count in zip(documents, counts, strict=True):
            record = {
                **asdict(DocumentInfo(doc.doc_id, doc.title, doc.issuer, doc.year, doc.region, doc.source_file, count)),
                "items": [asdict(item) for item in doc.items],
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    np.save(tmp / "unit_offsets.npy", np.concatenate([[0], np.cumsum(unit_counts)]).astype(np.int64))
    faiss.write_index(make_faiss_index(np.ascontiguousarray(vectors, dtype=np.float32)), str(tmp / "faiss.index"))
    bm25.save(tmp)
    background_vectors, background_sha = background or (np.zeros((0, compat.dim), dtype=np.float32), "")
    np.save(tmp / "background.npy", np.ascontiguousarray(background_vectors, dtype=np.float32))

    checksums = {path.name: sha256_file(path) for path in sorted(tmp.iterdir())}
    manifest = {
        "format_version": FORMAT_VERSION,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "compatibility": asdict(compat),
        "passages": len(passages),
        "units": int(vectors.shape[0]),
        "documents": len(documents),
        "faiss": faiss_kind(int(vectors.shape[0])),
        "files": files,
        "background_sha256": background_sha,
        "checksums": checksums,
    }
    _write_bytes(tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
    _fsync_dir(tmp)

    version = index_dir / f"v-{stamp}-{os.getpid()}"
    os.rename(tmp, version)
    link = index_dir / f".current-{stamp}-{os.getpid()}"
    os.symlink(version.name, link)
    os.replace(link, index_dir / CURRENT)
    _fsync_dir(index_dir)
    clean_stale(index_dir)
    return version


def current_version(index_dir: Path) -> Path | None:
    link = index_dir / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    return index_dir / os.readlink(link) if link.is_symlink() else link


def clean_stale(index_dir: Path, keep_previous: int = 1) -> list[Path]:
    """Remove leftovers of killed builds and versions older than the previous one.

    A version newer than the current one never became current (its build was
    killed between renaming it and moving ``current``): it is a leftover too,
    not the previous version. (Builds hold ``build.BUILD_LOCK``, so no other
    build is about to make it current.)
    """
    removed: list[Path] = []
    if not index_dir.is_dir():
        return removed
    current = current_version(index_dir)
    if current is not None and current.is_dir():
        for path in index_dir.glob("v-*"):
            if path.is_dir() and path.name > current.name:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    for path in index_dir.iterdir():
        if path.name.startswith((".tmp-", ".current-")):
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    versions = sorted(
        p
        for p in index_dir.glob("v-*")
        if p.is_dir() and p not in removed and (current is None or p.name != current.name)
    )
    for path in versions[: max(len(versions) - keep_previous, 0)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


class Index:
    """A loaded, checked index version: passages, vectors, FAISS and BM25."""

    def __init__(self, path: Path, manifest: dict) -> None:  # type: ignore[type-arg]
        self.path = path
        self.manifest = manifest
        self._passages_file = open(path / "passages.jsonl", "rb")  # noqa: SIM115 - held for lazy reads
        self.offsets = np.load(path / "passage_offsets.npy")
        self.passage_doc = np.load(path / "passage_doc.npy")
        self.vectors = np.load(path / "vectors.npy", mmap_mode="r")
        self.unit_offsets = np.load(path / "unit_offsets.npy")
        # Passage row of every unit vector.
        self.unit_passage = np.repeat(np.arange(self.size, dtype=np.int32), np.diff(self.unit_offsets))
        self.documents: list[DocumentInfo] = []
        self._outline_lines: list[str] = []
        with (path / "documents.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                self._outline_lines.append(line)
                record.pop("items")
                self.documents.append(DocumentInfo(**record))
        self.doc_by_id = {doc.doc_id: n for n, doc in enumerate(self.documents)}
        self.bm25 = BM25.load(path)
        # Vectors of reference texts on topics outside the corpus (answerability).
        self.background = np.load(path / "background.npy")
        self._faiss = None
        self._cache: dict[int, Passage] = {}

    @classmethod
    def load(cls, index_dir: Path, compat: Compatibility | None = None, verify: bool = True) -> Index:
        """Load the current version of ``index_dir``, refusing anything that
        does not match ``compat`` or whose files fail their checksums."""
        version = current_version(index_dir)
        if version is None or not (version / MANIFEST).is_file():
            raise IndexMissingError(f"no index at {index_dir}: run `plansearch index`")
        try:
            manifest = json.loads((version / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexDamagedError(
                f"index manifest {version / MANIFEST} is unreadable: run `plansearch index --rebuild`"
            ) from exc
        if not isinstance(manifest, dict) or not isinstance(manifest.get("checksums"), dict):
            raise IndexDamagedError(
                f"index manifest {version / MANIFEST} is incomplete: run `plansearch index --rebuild`"
            )
        check_manifest(manifest, compat, version)
        if verify:
            for name, expected in manifest.get("checksums", {}).items():
                file = version / name
                if not file.is_file():
                    raise IndexDamagedError(f"index file {file} is missing: run `plansearch index --rebuild`")
                if sha256_file(file) != expected:
                    raise IndexDamagedError(f"index file {file} is damaged: run `plansearch index --rebuild`")
        try:
            index = cls(version, manifest)
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise IndexDamagedError(
                f"index at {version} cannot be read ({exc}): run `plansearch index --rebuild`"
            ) from exc
        if (
            len(index.offsets) != index.size + 1
            or len(index.unit_offsets) != index.size + 1
            or index.vectors.shape[0] != int(index.unit_offsets[-1])
            or index.bm25.n_docs != index.size
        ):
            raise IndexDamagedError(f"index at {version} is inconsistent: run `plansearch index --rebuild`")
        return index

    @property
    def size(self) -> int:
        return int(self.manifest["passages"])

    @property
    def compatibility(self) -> Compatibility:
        return Compatibility(**self.manifest["compatibility"])

    @property
    def built_at(self) -> str:
        return str(self.manifest["built_at"])

    @property
    def faiss(self):  # type: ignore[no-untyped-def]
        if self._faiss is None:
            import faiss

            self._faiss = faiss.read_index(str(self.path / "faiss.index"))
        return self._faiss

    def passage(self, row: int) -> Passage:
        cached = self._cache.get(row)
        if cached is None:
            if not 0 <= row < self.size:
                raise KeyError(row)
            start, end = int(self.offsets[row]), int(self.offsets[row + 1])
            self._passages_file.seek(start)
            cached = Passage(**json.loads(self._passages_file.read(end - start)))
            if len(self._cache) < 100_000:
                self._cache[row] = cached
        return cached

    def passages(self, rows: Sequence[int] | None = None) -> list[Passage]:
        return [self.passage(r) for r in (range(self.size) if rows is None else rows)]

    def unit_vectors(self, row: int) -> np.ndarray:
        """The unit vectors of passage ``row``: its whole text first, then its clauses."""
        return np.asarray(self.vectors[self.unit_offsets[row] : self.unit_offsets[row + 1]], dtype=np.float32)

    def document_rows(self, doc_id: str) -> np.ndarray:
        return np.flatnonzero(self.passage_doc == self.doc_by_id[doc_id])

    def outline(self, doc_id: str) -> dict:  # type: ignore[type-arg]
        """A document with its items, for reading an item in context."""
        return json.loads(self._outline_lines[self.doc_by_id[doc_id]])

    def file_passages(self, source_file: str) -> list[int]:
        docs = {n for n, doc in enumerate(self.documents) if doc.source_file == source_file}
        return [int(r) for r in np.flatnonzero(np.isin(self.passage_doc, list(docs)))]

    def close(self) -> None:
        self._passages_file.close()


def check_manifest(manifest: dict, compat: Compatibility | None, where: Path) -> None:  # type: ignore[type-arg]
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"index at {where} has format {manifest.get('format_version')}, this plansearch reads {FORMAT_VERSION}: "
            "run `plansearch index --rebuild`"
        )
    if compat is None:
        return
    built = manifest.get("compatibility", {})
    for field, expected in asdict(compat).items():
        if built.get(field) != expected:
            raise IndexMismatchError(
                f"index at {where} was built with {field}={built.get(field)!r}, "
                f"this plansearch uses {expected!r}: run `plansearch index --rebuild`"
            )
