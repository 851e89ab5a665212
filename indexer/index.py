"""Index stage: the on-disk index, written atomically and loaded with checks.

Layout of an index directory ``DIR``::

    DIR/current -> v-20261122T110203-4242   (symlink, swapped atomically)
    DIR/v-…/manifest.json                    written last; sizes and checksums of the rest
    DIR/v-…/background.npy                   vectors of off-corpus reference texts
    DIR/v-…/seg-…/                           a segment: some documents, never changed
        passages.jsonl, passage_offsets.npy  one passage a line, read lazily by offset
        passage_doc.npy                      document (within the segment) of each passage
        documents.jsonl                      one document a line (title, year, …)
        outlines.jsonl, outline_offsets.npy  each document with its items, read lazily
        vectors.npy, unit_offsets.npy        unit vectors (whole passage, then each clause);
                                             passage i owns rows unit_offsets[i]:unit_offsets[i+1]
        faiss.index                          its unit vectors, exact or inverted file by size
        bm25*.json|npy                       BM25 postings (indexer.bm25)

Passages, units and documents are numbered across segments in order. A build
that only adds source files writes one new segment and hard-links the others
from the previous version, so adding a document costs the new document, not
the corpus; any other change writes a single fresh segment.

A new version is written into ``DIR/.tmp-…`` and renamed to ``v-…``; only
then does ``current`` move, by ``os.replace`` of a symlink. A build killed at
any moment leaves ``current`` pointing at the previous, complete version;
leftovers are removed by the next build.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.bm25 import BM25, Postings
from indexer.types import Document, Passage

FORMAT_VERSION = 2
CURRENT = "current"
MANIFEST = "manifest.json"
# Up to this many unit vectors, exact inner-product search (flat, 1.5 KB a
# unit, memory-mapped); above, an inverted file of 8-bit scalar-quantised
# vectors (384 bytes a unit, memory-mapped), whose candidates are re-scored
# exactly from vectors.npy. (Measured by bench.scale at 300k passages: 48-byte
# PQ codes reached recall@10 0.87 where 8-bit codes reach 0.96.)
EXACT_SEARCH_MAX = 250_000
# Inverted lists probed per query (all of them below this many). Recall of the
# dense retriever against exact scoring, bench.scale's synthetic vectors, 200
# candidate units: 0.956 at 900k units (1,024 lists), 0.970 at 3M units (2,048
# lists), where probing 256 lists gives 0.972 for 2.5x the scan time.
IVF_PROBES = 64
# More segments than this and a build merges them into one.
MAX_SEGMENTS = 16
SEGMENT_FILES = (
    "passages.jsonl",
    "passage_offsets.npy",
    "passage_doc.npy",
    "documents.jsonl",
    "outlines.jsonl",
    "outline_offsets.npy",
    "vectors.npy",
    "unit_offsets.npy",
    "faiss.index",
    *Postings.FILES,
)


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


def faiss_kind(n_units: int) -> str:
    if n_units <= EXACT_SEARCH_MAX:
        return "flat-ip"
    return f"ivf{ivf_lists(n_units)}-sq8-ip"


def ivf_lists(n_units: int) -> int:
    """About sqrt(n) inverted lists, a power of two."""
    return int(2 ** round(math.log2(max(math.sqrt(n_units), 64))))


def make_faiss_index(vectors: np.ndarray):  # type: ignore[no-untyped-def]
    """The FAISS index type for this many unit vectors (see EXACT_SEARCH_MAX)."""
    import faiss

    n, dim = vectors.shape
    if n <= EXACT_SEARCH_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        lists = ivf_lists(n)
        index = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dim), dim, lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        # 50 training vectors a list, a fixed sample so builds are repeatable.
        sample = np.random.default_rng(0).choice(n, size=min(n, 50 * lists), replace=False)
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    for start in range(0, n, 1 << 18):
        index.add(np.ascontiguousarray(vectors[start : start + (1 << 18)], dtype=np.float32))
    return index


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


@dataclass(frozen=True)
class SegmentInfo:
    """A segment as the manifest lists it."""

    name: str
    passages: int
    units: int
    documents: int


def write_segment(
    directory: Path,
    documents: Sequence[Document],
    passages: Sequence[Passage],
    vectors: np.ndarray,
    unit_counts: np.ndarray,
    postings: Postings,
    bm25_params: dict[str, float | str],
) -> SegmentInfo:
    """Write one segment. ``passages`` are grouped by document, in the order of ``documents``."""
    import faiss

    if len(unit_counts) != len(passages) or vectors.shape[0] != int(unit_counts.sum()):
        raise ValueError(f"vectors {vectors.shape} do not match the units of {len(passages)} passages")
    if postings.n_docs != len(passages):
        raise ValueError(f"BM25 postings cover {postings.n_docs} passages, not {len(passages)}")
    directory.mkdir(parents=True)
    doc_index = {doc.doc_id: n for n, doc in enumerate(documents)}
    offsets = np.zeros(len(passages) + 1, dtype=np.int64)
    passage_doc = np.zeros(len(passages), dtype=np.int32)
    counts = [0] * len(documents)
    with (directory / "passages.jsonl").open("wb") as handle:
        for row, passage in enumerate(passages):
            # vars(): the fields are plain values, and asdict's deep copy is slow at 1M passages.
            line = (json.dumps(vars(passage), ensure_ascii=False) + "\n").encode("utf-8")
            handle.write(line)
            offsets[row + 1] = offsets[row] + len(line)
            passage_doc[row] = doc_index[passage.doc_id]
            counts[passage_doc[row]] += 1
    np.save(directory / "passage_offsets.npy", offsets)
    np.save(directory / "passage_doc.npy", passage_doc)
    outline_offsets = np.zeros(len(documents) + 1, dtype=np.int64)
    with (directory / "documents.jsonl").open("wb") as infos, (directory / "outlines.jsonl").open("wb") as outlines:
        for n, (doc, count) in enumerate(zip(documents, counts, strict=True)):
            info = asdict(DocumentInfo(doc.doc_id, doc.title, doc.issuer, doc.year, doc.region, doc.source_file, count))
            infos.write((json.dumps(info, ensure_ascii=False) + "\n").encode("utf-8"))
            outline = {**info, "items": [vars(item) for item in doc.items]}
            line = (json.dumps(outline, ensure_ascii=False) + "\n").encode("utf-8")
            outlines.write(line)
            outline_offsets[n + 1] = outline_offsets[n] + len(line)
    np.save(directory / "outline_offsets.npy", outline_offsets)
    np.save(directory / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    np.save(directory / "unit_offsets.npy", np.concatenate([[0], np.cumsum(unit_counts)]).astype(np.int64))
    postings.save(directory, bm25_params)
    faiss.write_index(make_faiss_index(vectors), str(directory / "faiss.index"))
    for path in directory.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    return SegmentInfo(directory.name, len(passages), int(vectors.shape[0]), len(documents))


def _stamp() -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}"


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
    embedder: str = "",
) -> Path:
    """Write a complete new version of one segment and make it current. Returns its path.

    ``passages`` must be grouped by document in the order of ``documents``;
    ``files`` maps each source file to its content hash and document ids;
    ``embedder`` names what computed ``vectors`` (indexer.embed).
    """
    if len(bm25.segments) != 1:
        raise ValueError("write_index takes a one-segment BM25 (BM25.fit)")
    if vectors.ndim != 2 or vectors.shape[1] != compat.dim:
        raise ValueError(f"vectors {vectors.shape} are not of dimension {compat.dim}")
    tmp = _new_tmp(index_dir)
    segment = write_segment(tmp / f"seg-{_stamp()}", documents, passages, vectors, unit_counts,
                            bm25.segments[0], bm25.params)
    return _publish(index_dir, tmp, [segment], {}, compat, files, background, embedder)


def append_index(
    previous: Index,
    documents: Sequence[Document],
    passages: Sequence[Passage],
    vectors: np.ndarray,
    unit_counts: np.ndarray,
    tokens: Sequence[Sequence[str]],
    files: dict[str, dict[str, object]],
    background: tuple[np.ndarray, str] | None = None,
) -> Path:
    """A new version: the segments of ``previous`` (hard-linked, not copied)
    plus one new segment of these documents, embedded like ``previous``. Returns its path."""
    index_dir = previous.path.parent
    tmp = _new_tmp(index_dir)
    inherited = {}
    for info in previous.segment_infos:
        os.mkdir(tmp / info.name)
        for name in SEGMENT_FILES:
            os.link(previous.path / info.name / name, tmp / info.name / name)
            key = f"{info.name}/{name}"
            inherited[key] = previous.manifest["checksums"][key]
    added = []
    if passages:
        added.append(
            write_segment(
                tmp / f"seg-{_stamp()}", documents, passages, vectors, unit_counts,
                Postings.fit(tokens), previous.bm25.params,
            )
        )

    segments = [*previous.segment_infos, *added]
    return _publish(
        index_dir, tmp, segments, inherited, previous.compatibility, files, background, previous.embedder
    )


def _new_tmp(index_dir: Path) -> Path:
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f".tmp-{_stamp()}"
    tmp.mkdir()
    return tmp


def _publish(
    index_dir: Path,
    tmp: Path,
    segments: list[SegmentInfo],
    inherited: dict[str, str],
    compat: Compatibility,
    files: dict[str, dict[str, object]],
    background: tuple[np.ndarray, str] | None,
    embedder: str,
) -> Path:
    """Finish a version written into ``tmp``: manifest last, then rename and swap ``current``."""
    background_vectors, background_sha = background or (np.zeros((0, compat.dim), dtype=np.float32), "")
    np.save(tmp / "background.npy", np.ascontiguousarray(background_vectors, dtype=np.float32))
    names = sorted(
        path.relative_to(tmp).as_posix() for path in tmp.rglob("*") if path.is_file() and path.name != MANIFEST
    )
    checksums = {name: inherited.get(name) or sha256_file(tmp / name) for name in names}
    for name in names:
        if name not in inherited and "/" not in name:
            with (tmp / name).open("rb") as handle:
                os.fsync(handle.fileno())
    units = sum(s.units for s in segments)
    manifest = {
        "format_version": FORMAT_VERSION,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "compatibility": asdict(compat),
        "passages": sum(s.passages for s in segments),
        "units": units,
        "documents": sum(s.documents for s in segments),
        "segments": [asdict(s) for s in segments],
        "faiss": [faiss_kind(s.units) for s in segments],
        "files": files,
        "background_sha256": background_sha,
        "embedder": embedder,
        "sizes": {name: (tmp / name).stat().st_size for name in names},
        "checksums": checksums,
    }
    _write_bytes(tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
    for directory in [*(tmp / s.name for s in segments), tmp]:
        _fsync_dir(directory)

    version = index_dir / tmp.name.replace(".tmp-", "v-", 1)
    os.rename(tmp, version)
    link = index_dir / tmp.name.replace(".tmp-", ".current-", 1)
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


def _npy_layout(handle, dtype) -> tuple[tuple[int, int], int]:  # type: ignore[no-untyped-def]
    """Shape and data offset of a 2-D C-order .npy file, checked against its size."""
    npy = np.lib.format
    version = npy.read_magic(handle)
    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran, stored = read_header(handle)
    offset = handle.tell()
    complete = len(shape) == 2 and os.fstat(handle.fileno()).st_size == offset + shape[0] * shape[1] * stored.itemsize
    if not complete or fortran or stored != np.dtype(dtype):
        raise ValueError(f"{handle.name} is not a complete {np.dtype(dtype)} matrix")
    return (int(shape[0]), int(shape[1])), offset


class Segment:
    """One loaded segment: its passages, documents and unit vectors, read lazily."""

    def __init__(self, path: Path, faiss_kind: str) -> None:
        self.path = path
        self.faiss_kind = faiss_kind  # as written (see faiss_kind()), whatever the limits are now
        self.passage_offsets = np.load(path / "passage_offsets.npy")
        self.passage_doc = np.load(path / "passage_doc.npy")
        self.outline_offsets = np.load(path / "outline_offsets.npy")
        self.unit_offsets = np.load(path / "unit_offsets.npy")
        # Unit vectors are read with pread, not memory-mapped: at a million
        # passages they are GBs, and pages of a mapping would count (and stay)
        # in the serving process's resident memory; the page cache keeps the
        # hot ones all the same.
        self._vectors = open(path / "vectors.npy", "rb")  # noqa: SIM115 - held for reads
        self.vectors_shape, self._vectors_at = _npy_layout(self._vectors, np.float32)
        self._passages = open(path / "passages.jsonl", "rb")  # noqa: SIM115 - held for lazy reads
        self._faiss = None
        self._outlines = open(path / "outlines.jsonl", "rb")  # noqa: SIM115 - held for lazy reads

    @property
    def size(self) -> int:
        return int(self.passage_offsets.shape[0] - 1)

    @property
    def units(self) -> int:
        return self.vectors_shape[0]

    @property
    def faiss(self):  # type: ignore[no-untyped-def]
        if self._faiss is None:
            import faiss

            # Memory-mapped: pages are shared by every worker process serving this version.
            flat = self.faiss_kind == "flat-ip"
            flags = faiss.IO_FLAG_READ_ONLY | (faiss.IO_FLAG_MMAP_IFC if flat else faiss.IO_FLAG_MMAP)
            index = faiss.read_index(str(self.path / "faiss.index"), flags)
            if not flat:
                ivf = faiss.extract_index_ivf(index)
                ivf.nprobe = min(ivf.nlist, IVF_PROBES)
                # Probed lists are scanned in parallel: a single query uses every
                # core (105 -> 65 ms at 3M units on 2 cores).
                ivf.parallel_mode = 1
            self._faiss = index
        return self._faiss

    @staticmethod
    def _line(handle, offsets: np.ndarray, n: int) -> bytes:  # type: ignore[no-untyped-def]
        start, end = int(offsets[n]), int(offsets[n + 1])
        return os.pread(handle.fileno(), end - start, start)

    def unit_rows(self, start: int, end: int) -> np.ndarray:
        """Unit vectors ``start:end`` of this segment."""
        dim = self.vectors_shape[1]
        out = np.empty((end - start, dim), dtype=np.float32)
        view, offset, done = memoryview(out).cast("B"), self._vectors_at + start * dim * 4, 0
        while done < len(view):  # one pread returns at most ~2 GB
            read = os.preadv(self._vectors.fileno(), [view[done:]], offset + done)
            if read <= 0:
                raise OSError(f"{self.path / 'vectors.npy'} ended early")
            done += read
        return out

    def passage_line(self, row: int) -> bytes:
        return self._line(self._passages, self.passage_offsets, row)

    def outline_line(self, n: int) -> bytes:
        return self._line(self._outlines, self.outline_offsets, n)

    def close(self) -> None:
        self._passages.close()
        self._outlines.close()
        self._vectors.close()


class Index:
    """A loaded, checked index version: its segments, FAISS and BM25."""

    def __init__(self, path: Path, manifest: dict) -> None:  # type: ignore[type-arg]
        self.path = path
        self.manifest = manifest
        self.segment_infos = [SegmentInfo(**s) for s in manifest["segments"]]
        self.segments = [
            Segment(path / info.name, kind) for info, kind in zip(self.segment_infos, manifest["faiss"], strict=True)
        ]
        sizes = [s.size for s in self.segments]
        # First passage row of each segment (and the total at the end).
        self.segment_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # First unit row of each segment (and the total at the end).
        self.unit_start = np.cumsum([0] + [int(s.unit_offsets[-1]) for s in self.segments]).astype(np.int64)
        self.unit_offsets = np.concatenate(
            [[0]] + [s.unit_offsets[1:] + base for s, base in zip(self.segments, self.unit_start, strict=False)]
        ).astype(np.int64)
        # Passage row of every unit vector.
        self.unit_passage = np.repeat(np.arange(self.size, dtype=np.int32), np.diff(self.unit_offsets))
        self.documents: list[DocumentInfo] = []
        self._document_at: list[tuple[int, int]] = []  # (segment, line) of each document
        doc_starts = [0]
        for n, segment in enumerate(self.segments):
            with (segment.path / "documents.jsonl").open("rb") as handle:
                for line_no, line in enumerate(handle):
                    self.documents.append(DocumentInfo(**json.loads(line)))
                    self._document_at.append((n, line_no))
            doc_starts.append(len(self.documents))
        # Document (across segments) of every passage.
        self.passage_doc = np.concatenate(
            [np.zeros(0, dtype=np.int32)]
            + [s.passage_doc + doc_starts[n] for n, s in enumerate(self.segments)]
        ).astype(np.int32)
        self.doc_by_id = {doc.doc_id: n for n, doc in enumerate(self.documents)}
        self.bm25 = BM25.load_segments([s.path for s in self.segments])
        # Vectors of reference texts on topics outside the corpus (answerability).
        self.background = np.load(path / "background.npy")
        self._cache: dict[int, Passage] = {}

    @classmethod
    def load(cls, index_dir: Path, compat: Compatibility | None = None, verify: bool = True) -> Index:
        """Load the current version of ``index_dir``, refusing anything that
        does not match ``compat`` or whose files fail their checks (sizes
        always; checksums too with ``verify``)."""
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
        _check_files(version, manifest, checksums=verify)
        try:
            index = cls(version, manifest)
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise IndexDamagedError(
                f"index at {version} cannot be read ({exc}): run `plansearch index --rebuild`"
            ) from exc
        if (
            index.size != int(index.segment_start[-1])
            or index.units != int(index.unit_offsets[-1])
            or any(s.vectors_shape != (int(s.unit_offsets[-1]), index.compatibility.dim) for s in index.segments)
            or any(s.passage_doc.shape[0] != s.size for s in index.segments)
            or index.bm25.n_docs != index.size
        ):
            raise IndexDamagedError(f"index at {version} is inconsistent: run `plansearch index --rebuild`")
        return index

    def verify(self) -> None:
        """Check every file against its checksum (load checks only sizes without ``verify``)."""
        _check_files(self.path, self.manifest, checksums=True)

    @property
    def size(self) -> int:
        return int(self.manifest["passages"])

    @property
    def units(self) -> int:
        return int(self.manifest["units"])

    @property
    def compatibility(self) -> Compatibility:
        return Compatibility(**self.manifest["compatibility"])

    @property
    def built_at(self) -> str:
        return str(self.manifest["built_at"])

    @property
    def embedder(self) -> str:
        """What embedded the passages ("onnx-int8", …; "" if the builder did not say)."""
        return str(self.manifest.get("embedder", ""))

    def _locate(self, row: int) -> tuple[Segment, int]:
        if not 0 <= row < self.size:
            raise KeyError(row)
        n = int(np.searchsorted(self.segment_start, row, side="right")) - 1
        return self.segments[n], row - int(self.segment_start[n])

    def passage(self, row: int) -> Passage:
        cached = self._cache.get(row)
        if cached is None:
            segment, local = self._locate(row)
            cached = Passage(**json.loads(segment.passage_line(local)))
            if len(self._cache) < 100_000:
                self._cache[row] = cached
        return cached

    def passages(self, rows: Sequence[int] | None = None) -> list[Passage]:
        return [self.passage(r) for r in (range(self.size) if rows is None else rows)]

    def unit_vectors(self, row: int) -> np.ndarray:
        """The unit vectors of passage ``row``: its whole text first, then its clauses."""
        segment, local = self._locate(row)
        return segment.unit_rows(int(segment.unit_offsets[local]), int(segment.unit_offsets[local + 1]))

    def vectors_at(self, unit_ids: np.ndarray) -> np.ndarray:
        """The unit vectors of these (global) unit rows, in their order."""
        unit_ids = np.asarray(unit_ids, dtype=np.int64)
        out = np.empty((unit_ids.shape[0], self.compatibility.dim), dtype=np.float32)
        if unit_ids.size == 0:
            return out
        # One read per run of consecutive rows within a segment (a passage's units are one run).
        segment_of = np.searchsorted(self.unit_start, unit_ids, side="right") - 1
        breaks = np.flatnonzero((np.diff(unit_ids) != 1) | (np.diff(segment_of) != 0)) + 1
        for lo, hi in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [unit_ids.size]]), strict=True):
            n = int(segment_of[lo])
            first = int(unit_ids[lo] - self.unit_start[n])
            out[lo:hi] = self.segments[n].unit_rows(first, first + int(hi - lo))
        return out

    def document_rows(self, doc_id: str) -> np.ndarray:
        return np.flatnonzero(self.passage_doc == self.doc_by_id[doc_id])

    def outline(self, doc_id: str) -> dict:  # type: ignore[type-arg]
        """A document with its items, for reading an item in context."""
        segment, line = self._document_at[self.doc_by_id[doc_id]]
        return json.loads(self.segments[segment].outline_line(line))

    def file_passages(self, source_file: str) -> list[int]:
        docs = {n for n, doc in enumerate(self.documents) if doc.source_file == source_file}
        return [int(r) for r in np.flatnonzero(np.isin(self.passage_doc, list(docs)))]

    def close(self) -> None:
        for segment in self.segments:
            segment.close()


# Files this process has already checked: (device, inode, size, mtime) ->
# checksum. A new version hard-links the segments it keeps, so loading it
# re-hashes only its new files (seconds, not minutes, at a million passages).
_verified: dict[tuple[int, int, int, int], str] = {}


def _check_files(version: Path, manifest: dict, checksums: bool) -> None:  # type: ignore[type-arg]
    sizes = manifest.get("sizes", {})
    for name, expected in manifest["checksums"].items():
        file = version / name
        if not file.is_file():
            raise IndexDamagedError(f"index file {file} is missing: run `plansearch index --rebuild`")
        stat = file.stat()
        if stat.st_size != sizes.get(name):
            raise IndexDamagedError(f"index file {file} is damaged: run `plansearch index --rebuild`")
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if checksums and _verified.get(key) != expected:
            if sha256_file(file) != expected:
                raise IndexDamagedError(f"index file {file} is damaged: run `plansearch index --rebuild`")
            _verified[key] = expected


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
