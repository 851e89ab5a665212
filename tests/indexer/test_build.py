"""Incremental indexing: only what changed is parsed and embedded, the rest is reused byte for byte.

Most tests use a cheap deterministic embedder (vectors from a hash of the
text) over a temporary copy of the seed corpus, since what is tested is the
bookkeeping, not the vectors; one test builds with the real model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from indexer import build as build_module
from indexer.build import BUILD_LOCK, build_index, compatibility, corpus_files, parse_file
from indexer.chunk import embedding_units
from indexer.config import Settings
from indexer.embed import DIM
from indexer.index import Index, IndexDamagedError

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "corpus"
SEED_FILES = sorted(p.name for p in CORPUS.glob("*.txt"))
WITH_SIDECAR = "003_9ac541179e48cb99.txt"
# Two of the smaller seed files.
SMALL_FILES = ("001_b5818a88827ebf16.txt", "002_ccc843b0910a49b6.txt")


class HashEmbedder:
    """Deterministic unit vectors from a hash of the text; counts what it encodes."""

    name = "hash"
    dim = DIM

    def __init__(self) -> None:
        self.passages_encoded: list[str] = []

    @staticmethod
    def vector(text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        self.passages_encoded.extend(texts)
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, DIM), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vector("q " + t) for t in texts]) if texts else np.zeros((0, DIM), dtype=np.float32)


def copy_corpus(dest: Path, names: Sequence[str] = SEED_FILES) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(CORPUS / name, dest / name)
        sidecar = CORPUS / (name + ".meta.json")
        if sidecar.is_file():
            shutil.copyfile(sidecar, dest / sidecar.name)
    return dest


def settings_for(tmp: Path, corpus: Path, model_dir: Path | None = None) -> Settings:
    return Settings.from_env(environ={}, home=tmp / "home", corpus_dir=corpus, model_dir=model_dir)


def build(settings: Settings, embedder=None, **kwargs):  # type: ignore[no-untyped-def]
    lines: list[str] = []
    report = build_index(settings, progress=False, embedder=embedder or HashEmbedder(), say=lines.append, **kwargs)
    report.said = lines  # type: ignore[attr-defined]
    return report


def load(settings: Settings) -> Index:
    return Index.load(settings.resolved_index_dir, compatibility(settings))


def passage_key(index: Index, row: int) -> tuple[str, str, int, str]:
    p = index.passage(row)
    return (p.doc_id, p.unit_key, p.part, p.text)


def unit_bytes(index: Index) -> dict[tuple[str, str, int, str], tuple[str, bytes]]:
    """Every passage's unit vectors (as raw bytes) with the file it comes from."""
    return {
        passage_key(index, r): (index.passage(r).source_file, index.unit_vectors(r).tobytes())
        for r in range(index.size)
    }


def file_passage_counts(index: Index) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in index.documents:
        counts[doc.source_file] = counts.get(doc.source_file, 0) + doc.passage_count
    return counts


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A hash-embedded index of the whole seed corpus, built once; tests copy it."""
    root = tmp_path_factory.mktemp("baseline")
    corpus = copy_corpus(root / "corpus")
    settings = settings_for(root, corpus)
    report = build(settings)
    assert report.rebuild_reason is None and not report.up_to_date
    assert report.files_parsed == SEED_FILES
    return root


@pytest.fixture
def work(baseline: Path, tmp_path: Path) -> Settings:
    """A private copy of the baseline corpus and its index."""
    shutil.copytree(baseline / "corpus", tmp_path / "corpus")
    shutil.copytree(baseline / "home", tmp_path / "home", symlinks=True)
    return settings_for(tmp_path, tmp_path / "corpus")


def test_first_build_indexes_every_passage_with_its_units(work: Settings) -> None:
    index = load(work)
    try:
        assert sorted(index.manifest["files"]) == SEED_FILES
        expected_passages = []
        for path in corpus_files(work.corpus_dir):
            parsed = parse_file(path, work.corpus_dir, work)
            assert parsed is not None
            expected_passages.extend(parsed[1])
        assert index.passages() == expected_passages
        for row in (0, index.size // 2, index.size - 1):
            units = embedding_units(index.passage(row))
            assert np.array_equal(index.unit_vectors(row), np.stack([HashEmbedder.vector(u) for u in units]))
    finally:
        index.close()


def test_unchanged_corpus_is_up_to_date_and_embeds_nothing(work: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    before = load(work)
    version, size = before.path, before.size
    before.close()

    def no_model(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("an up-to-date build must not load the model")

    monkeypatch.setattr(build_module, "make_embedder", no_model)
    embedder = HashEmbedder()
    started = time.perf_counter()
    report = build_index(work, progress=False, embedder=embedder, say=lambda _line: None)
    assert time.perf_counter() - started < 10
    assert embedder.passages_encoded == []
    assert report.up_to_date
    assert report.passages_embedded == 0
    assert report.files_parsed == [] and report.files_removed == []
    assert report.passages == size
    assert report.version == version
    index = load(work)
    assert index.path == version
    index.close()


def test_another_passage_embedder_reembeds_everything(work: Settings) -> None:
    class OtherHashEmbedder(HashEmbedder):
        name = "other-hash"

    other = OtherHashEmbedder()
    report = build(work, embedder=other)
    assert report.rebuild_reason == (
        "passages were embedded by hash, this build uses other-hash: re-embedding everything"
    )
    assert report.passages_embedded == report.passages > 200
    index = load(work)
    try:
        assert index.embedder == "other-hash"
    finally:
        index.close()
    again = build(work, embedder=OtherHashEmbedder())
    assert again.up_to_date and again.rebuild_reason is None


def test_modified_file_reembeds_only_its_passages(work: Settings) -> None:
    before = load(work)
    old = unit_bytes(before)
    before.close()
    target = work.corpus_dir / "002_ccc843b0910a49b6.txt"
    text = target.read_text(encoding="utf-8")
    target.write_text(
        text.rstrip("\n") + "\n\n（九）加强校园周边交通安全管理，完善上下学时段护学岗制度。\n", encoding="utf-8"
    )

    embedder = HashEmbedder()
    report = build(work, embedder)
    assert not report.up_to_date and report.rebuild_reason is None
    assert report.files_parsed == [target.name]

    index = load(work)
    try:
        counts = file_passage_counts(index)
        assert report.passages_embedded == counts[target.name]
        assert report.passages == index.size == sum(counts.values())
        target_rows = index.file_passages(target.name)
        # Each distinct unit text of the file once (overlapping windows share clauses).
        units = [u for r in target_rows for u in embedding_units(index.passage(r))]
        assert sorted(embedder.passages_encoded) == sorted(set(units)) and len(set(units)) < len(units)
        assert any("护学岗" in index.passage(r).text for r in target_rows)
        new = unit_bytes(index)
        others_old = {k: v for k, v in old.items() if v[0] != target.name}
        others_new = {k: v for k, v in new.items() if v[0] != target.name}
        assert others_new == others_old  # every other file: same passages, byte-identical vectors
    finally:
        index.close()


def test_added_file_is_the_only_one_parsed(work: Settings, tmp_path: Path) -> None:
    added = work.corpus_dir / "sub" / "005_added.txt"
    added.parent.mkdir()
    shutil.copyfile(CORPUS / "001_b5818a88827ebf16.txt", added)
    text = added.read_text(encoding="utf-8").replace("天门市", "潜江市")
    added.write_text(text, encoding="utf-8")
    before = load(work)
    old = unit_bytes(before)
    before.close()

    report = build(work)
    assert report.files_parsed == ["sub/005_added.txt"]
    assert report.files == len(SEED_FILES) + 1
    index = load(work)
    try:
        counts = file_passage_counts(index)
        assert counts["sub/005_added.txt"] == report.passages_embedded > 0
        assert {k: v for k, v in unit_bytes(index).items() if v[0] != "sub/005_added.txt"} == old
        assert any(doc.source_file == "sub/005_added.txt" and "潜江市" in doc.title for doc in index.documents)
    finally:
        index.close()


def test_removed_file_drops_its_documents_and_passages(work: Settings) -> None:
    gone = "000_699d69580ee34bfa.txt"
    before = load(work)
    old = unit_bytes(before)
    old_size, gone_count = before.size, file_passage_counts(before)[gone]
    before.close()
    (work.corpus_dir / gone).unlink()

    report = build(work)
    assert report.files_removed == [gone]
    assert report.files_parsed == [] and report.passages_embedded == 0
    index = load(work)
    try:
        assert index.size == old_size - gone_count == report.passages
        assert gone not in index.manifest["files"]
        assert all(doc.source_file != gone for doc in index.documents)
        assert all(index.passage(r).source_file != gone for r in range(index.size))
        assert index.bm25.n_docs == index.size
        assert unit_bytes(index) == {k: v for k, v in old.items() if v[0] != gone}
    finally:
        index.close()


def test_sidecar_change_reparses_that_file(work: Settings) -> None:
    sidecar = work.corpus_dir / (WITH_SIDECAR + ".meta.json")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    meta["region"] = "河北省沧州市"
    meta["issuer"] = "沧州市教育局"
    sidecar.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    report = build(work)
    assert report.files_parsed == [WITH_SIDECAR]
    index = load(work)
    try:
        docs = [d for d in index.documents if d.source_file == WITH_SIDECAR]
        assert [(d.region, d.issuer) for d in docs] == [("河北省沧州市", "沧州市教育局")]
        assert report.passages_embedded == docs[0].passage_count
        assert {index.passage(r).region for r in index.file_passages(WITH_SIDECAR)} == {"河北省沧州市"}
    finally:
        index.close()


def test_rebuild_reembeds_everything_and_says_why(work: Settings) -> None:
    before = load(work)
    version, size = before.path, before.size
    before.close()
    embedder = HashEmbedder()
    report = build(work, embedder, rebuild=True)
    assert report.rebuild_reason is not None and "rebuild" in report.rebuild_reason
    assert any(report.rebuild_reason in line for line in report.said)
    assert report.passages_embedded == report.passages == size
    assert report.files_parsed == SEED_FILES
    assert report.version is not None and report.version != version
    index = load(work)
    assert index.path == report.version
    index.close()


def test_chunker_version_change_rebuilds_everything(work: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "CHUNKER_VERSION", "test-next")
    report = build(work)
    assert report.rebuild_reason is not None
    assert "chunker_version" in report.rebuild_reason and "test-next" in report.rebuild_reason
    assert any("chunker_version" in line for line in report.said)
    assert report.files_parsed == SEED_FILES
    assert report.passages_embedded == report.passages > 200
    index = load(work)  # with the patched compatibility
    assert index.compatibility.chunker_version == "test-next"
    index.close()
    # ... and a second build with the same code is up to date again.
    assert build(work).up_to_date


def test_bad_files_are_skipped_and_the_rest_indexed(tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path / "corpus", SMALL_FILES)
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "blank.txt").write_bytes(b"  \n\n \t\n")
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf \x00\xff\x00")
    settings = settings_for(tmp_path, corpus)

    report = build(settings)
    assert sorted(report.files_skipped) == ["binary.txt", "blank.txt", "broken.pdf", "empty.txt"]
    assert report.files_parsed == list(SMALL_FILES)
    index = load(settings)
    try:
        assert set(file_passage_counts(index)) == set(SMALL_FILES)
        assert index.size == report.passages == report.passages_embedded > 0
    finally:
        index.close()
    # Unchanged bad files do not make every later build re-parse and rewrite the index.
    again = build(settings)
    assert again.up_to_date and again.passages_embedded == 0 and again.files_parsed == []


def test_missing_corpus_dir_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-corpus"
    settings = settings_for(tmp_path, missing)
    with pytest.raises(FileNotFoundError, match=r"corpus directory .*no-such-corpus.* does not exist"):
        build(settings)
    assert not (settings.resolved_index_dir / "current").exists()


def test_a_second_build_waits_for_the_first(work: Settings) -> None:
    """Builds of one index directory are serialised (a concurrent one would delete the other's work)."""
    import fcntl
    import threading

    lock = (work.resolved_index_dir / BUILD_LOCK).open("a+b")
    fcntl.flock(lock, fcntl.LOCK_EX)  # "another build" holds the directory
    said: list[str] = []
    reports = []
    thread = threading.Thread(
        target=lambda: reports.append(
            build_index(work, rebuild=True, progress=False, embedder=HashEmbedder(), say=said.append)
        )
    )
    thread.start()
    try:
        thread.join(timeout=1.5)
        assert thread.is_alive() and not reports
        assert any("another build" in line and "waiting" in line for line in said)
        assert not any(work.resolved_index_dir.glob(".tmp-*"))
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        thread.join(timeout=60)
    assert reports and reports[0].passages_embedded == reports[0].passages > 200


def test_real_model_incremental_build(tmp_path: Path, seed_settings: Settings, seed_index: Path) -> None:
    """The real pipeline, on a copy of the session's seed index: the stored vectors are the model's,
    and a change re-embeds only its file."""
    from indexer.embed import make_embedder

    corpus = copy_corpus(tmp_path / "corpus")
    shutil.copytree(seed_index, tmp_path / "home" / "index", symlinks=True)
    settings = settings_for(tmp_path, corpus, seed_settings.resolved_model_dir)

    started = time.perf_counter()
    first = build_index(settings, progress=False, say=lambda _line: None)
    assert first.up_to_date and first.passages_embedded == 0
    assert time.perf_counter() - started < 10

    index = load(settings)
    old = unit_bytes(index)
    # The stored units are what the configured embedder gives for embedding_units, first unit = whole passage.
    embedder = make_embedder(settings.passage_embedder, settings.resolved_model_dir, settings.embed_batch_size)
    assert index.embedder == settings.passage_embedder == embedder.name
    # int8 quantises activations per call: a unit embedded in another batch moves by up to ~0.0015.
    same = 0.998 if embedder.name.endswith("int8") else 0.999
    for row in (0, index.size // 2, index.size - 1):
        units = embedding_units(index.passage(row))
        stored = index.unit_vectors(row)
        assert stored.shape == (len(units), DIM)
        assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-4)
        fresh = embedder.encode_passages(units)
        assert np.min(np.sum(fresh * stored, axis=1)) > same
    index.close()

    changed = corpus / SMALL_FILES[1]
    changed.write_text(
        changed.read_text(encoding="utf-8") + "\n7.加快推进智慧校园建设，实现千兆光纤进校园。\n", "utf-8"
    )
    second = build_index(settings, progress=False, say=lambda _line: None)
    assert second.files_parsed == [SMALL_FILES[1]] and second.rebuild_reason is None
    assert second.embed_seconds > 0
    index = load(settings)
    try:
        assert second.passages_embedded == file_passage_counts(index)[SMALL_FILES[1]] < index.size // 4
        new = unit_bytes(index)
        assert {k: v for k, v in new.items() if v[0] != SMALL_FILES[1]} == {
            k: v for k, v in old.items() if v[0] != SMALL_FILES[1]
        }
        # Unchanged passages of the re-embedded file get (numerically) the same vectors again.
        again = [key for key, (source, _blob) in new.items() if source == SMALL_FILES[1] and key in old]
        assert len(again) >= sum(source == SMALL_FILES[1] for source, _blob in old.values()) - 2
        for key in again:
            a = np.frombuffer(new[key][1], dtype=np.float32).reshape(-1, DIM)
            b = np.frombuffer(old[key][1], dtype=np.float32).reshape(-1, DIM)
            assert np.min(np.sum(a * b, axis=1)) > same
    finally:
        index.close()


def _scores_by_passage(index: Index, query: str) -> dict[tuple[str, str, int, str], float]:
    from indexer.tokenize import Tokenizer

    scores = index.bm25.scores(Tokenizer()(query))
    return {passage_key(index, r): float(scores[r]) for r in range(index.size)}


def test_added_file_is_a_new_segment_linked_to_the_old_ones(work: Settings) -> None:
    before = load(work)
    old_segment = before.path / before.segment_infos[0].name
    before.close()
    shutil.copyfile(CORPUS / SMALL_FILES[0], work.corpus_dir / "added.txt")
    embedder = HashEmbedder()
    report = build(work, embedder)
    assert report.files_parsed == ["added.txt"] and report.rebuild_reason is None
    index = load(work)
    try:
        names = [info.name for info in index.segment_infos]
        assert len(names) == 2 and names[0] == old_segment.name
        # The old segment is the same files (hard links), not a copy.
        for name in ("vectors.npy", "passages.jsonl", "bm25_doc_ids.npy", "faiss.index"):
            assert (index.path / names[0] / name).stat().st_ino == (old_segment / name).stat().st_ino
        added = index.segment_infos[1]
        assert added.passages == file_passage_counts(index)["added.txt"] == report.passages_embedded
        assert index.size == report.passages
        # Only the new file was embedded, each distinct unit text once.
        new_units = {u for r in index.file_passages("added.txt") for u in embedding_units(index.passage(r))}
        assert sorted(embedder.passages_encoded) == sorted(new_units) and len(new_units) <= added.units
        assert [segment.faiss.ntotal for segment in index.segments] == [info.units for info in index.segment_infos]
        # Rows of the new file come last; the new file's passages and documents are readable.
        rows = index.file_passages("added.txt")
        assert rows == list(range(index.size - added.passages, index.size))
        assert {index.passage(r).source_file for r in rows} == {"added.txt"}
        doc = next(d for d in index.documents if d.source_file == "added.txt")
        assert index.outline(doc.doc_id)["doc_id"] == doc.doc_id
        for row in (rows[0], rows[-1]):
            units = embedding_units(index.passage(row))
            assert np.array_equal(index.unit_vectors(row), np.stack([HashEmbedder.vector(u) for u in units]))
        index.verify()
    finally:
        index.close()


def test_appended_index_scores_like_a_full_rebuild(work: Settings, tmp_path: Path) -> None:
    shutil.copyfile(CORPUS / SMALL_FILES[1], work.corpus_dir / "added.txt")
    build(work)
    appended = load(work)
    fresh_settings = settings_for(tmp_path / "fresh", work.corpus_dir)
    build(fresh_settings)
    fresh = load(fresh_settings)
    try:
        assert len(appended.segment_infos) == 2 and len(fresh.segment_infos) == 1
        # BM25 statistics (document frequencies, average length) span the segments.
        for query in ("义务教育 课后服务", "学生 体质 健康 监测", "教师 培训"):
            assert _scores_by_passage(appended, query) == pytest.approx(_scores_by_passage(fresh, query), rel=1e-5)
        assert unit_bytes(appended) == unit_bytes(fresh)
    finally:
        appended.close()
        fresh.close()


def test_a_changed_or_removed_file_rewrites_one_segment(work: Settings) -> None:
    shutil.copyfile(CORPUS / SMALL_FILES[0], work.corpus_dir / "added.txt")
    build(work)
    assert len(load(work).segment_infos) == 2
    (work.corpus_dir / "added.txt").unlink()
    report = build(work)
    assert report.files_removed == ["added.txt"] and report.passages_embedded == 0
    index = load(work)
    try:
        assert len(index.segment_infos) == 1
        assert "added.txt" not in file_passage_counts(index)
    finally:
        index.close()


def test_many_segments_are_merged(work: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "MAX_SEGMENTS", 3)
    counts = []
    for n in range(4):
        shutil.copyfile(CORPUS / SMALL_FILES[n % 2], work.corpus_dir / f"added-{n}.txt")
        report = build(work)
        assert report.files_parsed == [f"added-{n}.txt"]
        index = load(work)
        counts.append(len(index.segment_infos))
        index.close()
    assert counts == [2, 3, 1, 2]


def test_added_file_to_a_damaged_index_is_refused_at_load(work: Settings) -> None:
    """A damaged old segment is linked, not hidden: the new version fails its checksum too."""
    index = load(work)
    vectors = index.path / index.segment_infos[0].name / "vectors.npy"
    index.close()
    data = bytearray(vectors.read_bytes())
    data[-8:] = b"\x00" * 8
    vectors.write_bytes(bytes(data))
    shutil.copyfile(CORPUS / SMALL_FILES[0], work.corpus_dir / "added.txt")
    build(work)
    with pytest.raises(IndexDamagedError):
        load(work)
    # The next full rebuild repairs it.
    (work.corpus_dir / "added.txt").unlink()
    report = build(work)
    assert report.rebuild_reason and "unusable" in report.rebuild_reason
    load(work).close()


def test_dense_search_spans_the_segments(work: Settings, tmp_path: Path) -> None:
    from search.retrieve import DenseRetriever

    shutil.copyfile(CORPUS / SMALL_FILES[1], work.corpus_dir / "added.txt")
    build(work)
    appended = load(work)
    fresh_settings = settings_for(tmp_path / "fresh", work.corpus_dir)
    build(fresh_settings)
    fresh = load(fresh_settings)
    try:
        added_rows = set(appended.file_passages("added.txt"))
        for text in ("义务教育 课后服务", "学生 体质 健康 监测", "教师 培训", "学前教育"):
            query = HashEmbedder.vector("q " + text)
            ours = [(passage_key(appended, r), s) for r, s in DenseRetriever(appended).search(query, 10)]
            theirs = [(passage_key(fresh, r), s) for r, s in DenseRetriever(fresh).search(query, 10)]
            assert [key for key, _ in ours] == [key for key, _ in theirs]
            assert [s for _, s in ours] == pytest.approx([s for _, s in theirs])
        # A passage of the new file is found by its own vector in the new segment (tied with
        # the identical passage of the file it was copied from).
        row = max(added_rows)
        own = appended.unit_vectors(row)[0]
        assert row in [r for r, _ in DenseRetriever(appended).search(own, 2)]
    finally:
        appended.close()
        fresh.close()

