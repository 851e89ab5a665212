"""Tests for the BM25 postings: scores against rank_bm25 and a brute-force formula, top_k, persistence."""

from __future__ import annotations

import json
import math
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from indexer.bm25 import BM25
from indexer.build import parse_file
from indexer.config import Settings
from indexer.tokenize import Tokenizer

CORPUS = Path(__file__).resolve().parents[2] / "corpus"

QUERIES = [
    "学校会组织所有孩子学游泳吗",
    "退休老人想继续学点东西,区里的成人学校能提供吗",
    "教师参加转学科培训",
    "教研员到附属学校带班上课",
    "校舍产权证明确权登记",
    "控辍保学 上门摸查 适龄儿童",
    "学校食堂公益性零利润",
    "减免普通高中建档立卡家庭经济困难学生学杂费",
    "学生意外伤害法律援助制度",
    "教师平均工资不低于当地公务员",
    "晨午检 通风消杀 错峰开学",
    "学生手机管理",
    "禁止向学生征订教辅资料",
    "危化品清点报废",
    "师德师风负面清单",
    "录播教室 同步课堂",
    "家庭教育促进法宣传",
    "县管校聘 区管校聘 改革",
    "学前三年毛入园率",
    "双减 课后服务 课后服务",  # a repeated term counts twice
    "校车安全 校园贷 近视防控",
    "人工智能 区块链 虚拟现实",
    "qwertyuiop 量子引力",  # nothing matches
]


@cache
def _corpus_tokens() -> tuple[tuple[str, ...], ...]:
    tokenizer = Tokenizer()
    texts: list[str] = []
    for path in sorted(CORPUS.glob("*.txt")):
        parsed = parse_file(path, CORPUS, Settings.from_env())
        assert parsed is not None
        texts.extend(p.embed_text for p in parsed[1])
    return tuple(tuple(tokens) for tokens in tokenizer.many(texts))


def _corpus() -> list[list[str]]:
    return [list(tokens) for tokens in _corpus_tokens()]


@cache
def _queries() -> tuple[tuple[str, ...], ...]:
    tokenizer = Tokenizer()
    return tuple(tuple(tokenizer(q)) for q in QUERIES)


def _lucene_brute_force(corpus: list[list[str]], query: list[str], k1: float, b: float) -> np.ndarray:
    n = len(corpus)
    avgdl = sum(len(doc) for doc in corpus) / n
    counts = [Counter(doc) for doc in corpus]
    scores = np.zeros(n)
    for term in query:
        df = sum(1 for c in counts if term in c)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for d, c in enumerate(counts):
            tf = c.get(term, 0)
            if tf:
                scores[d] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(corpus[d]) / avgdl))
    return scores


def test_seed_corpus_is_big_enough() -> None:
    corpus = _corpus()
    assert len(corpus) > 200
    assert all(corpus)
    assert sum(1 for q in _queries() if q) >= 20


@pytest.mark.parametrize(("k1", "b", "epsilon"), [(1.5, 0.75, 0.25), (1.2, 0.5, 0.1), (2.0, 1.0, 0.5)])
def test_okapi_matches_rank_bm25(k1: float, b: float, epsilon: float) -> None:
    corpus = _corpus()
    ours = BM25.fit(corpus, k1=k1, b=b, idf="okapi", epsilon=epsilon)
    reference = BM25Okapi(corpus, k1=k1, b=b, epsilon=epsilon)
    nonzero = 0
    for query in _queries():
        expected = reference.get_scores(list(query))
        got = ours.scores(query)
        assert got.shape == (len(corpus),)
        assert np.allclose(got, expected, rtol=1e-5, atol=1e-6), query
        nonzero += bool(np.any(expected != 0))
    assert nonzero >= 20


def test_okapi_floors_negative_idf_like_rank_bm25() -> None:
    # "教育" is in most passages of this small corpus: its raw Okapi IDF is negative.
    corpus = [["教育", "学校"], ["教育", "教师"], ["教育", "学生"], ["课程"]]
    ours = BM25.fit(corpus, idf="okapi")
    reference = BM25Okapi(corpus)
    for query in (["教育"], ["教育", "课程"], ["学校", "教育", "教育"]):
        assert np.allclose(ours.scores(query), reference.get_scores(query))
    assert ours.scores(["教育"])[0] > 0  # floored to epsilon * mean IDF, not negative


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (0.9, 0.4)])
def test_lucene_matches_brute_force(k1: float, b: float) -> None:
    corpus = _corpus()
    ours = BM25.fit(corpus, k1=k1, b=b)
    assert ours.idf_variant == "lucene"
    for query in _queries():
        assert np.allclose(ours.scores(query), _lucene_brute_force(corpus, list(query), k1, b), rtol=1e-5, atol=1e-6)


def test_lucene_scores_are_never_negative() -> None:
    corpus = [["教育", "学校"], ["教育", "教师"], ["教育", "学生"]]
    assert np.all(BM25.fit(corpus).scores(["教育"]) > 0)


def test_unknown_idf_variant() -> None:
    with pytest.raises(ValueError, match="idf"):
        BM25(idf="bm25+")


# --------------------------------------------------------------------------- top_k


def test_top_k_order() -> None:
    index = BM25.fit(_corpus())
    for query in _queries():
        scores = index.scores(query)
        top = index.top_k(query, 10)
        got = [s for _, s in top]
        assert got == sorted(got, reverse=True)
        assert all(s > 0 for s in got)
        assert len(top) == min(10, int(np.count_nonzero(scores > 0)))
        assert len({i for i, _ in top}) == len(top)
        for i, s in top:
            assert s == pytest.approx(float(scores[i]))
        if top:
            # Nothing left out scores above the last one returned.
            rest = np.delete(scores, [i for i, _ in top])
            assert not np.any(rest > got[-1])
            assert top[0][1] == pytest.approx(float(scores.max()))


def test_top_k_small_example() -> None:
    corpus = [["学校", "食堂"], ["学校"], ["食堂", "食堂", "管理"], ["教师"]]
    index = BM25.fit(corpus)
    top = index.top_k(["食堂"], 5)
    assert [i for i, _ in top] == [2, 0]
    assert index.top_k(["食堂"], 1) == top[:1]
    assert index.top_k(["学校", "食堂"], 2)[0][0] == 0


def test_top_k_allowed_mask() -> None:
    corpus = _corpus()
    index = BM25.fit(corpus)
    allowed = np.zeros(len(corpus), dtype=bool)
    allowed[::3] = True
    for query in _queries():
        top = index.top_k(query, 8, allowed=allowed)
        assert all(allowed[i] for i, _ in top)
        masked = np.where(allowed, index.scores(query), 0.0)
        assert len(top) == min(8, int(np.count_nonzero(masked > 0)))
        if top:
            assert top[0][1] == pytest.approx(float(masked.max()))
    none = np.zeros(len(corpus), dtype=bool)
    assert index.top_k(_queries()[0], 5, allowed=none) == []


def test_unknown_terms_and_empty_query() -> None:
    corpus = _corpus()
    index = BM25.fit(corpus)
    for query in ([], ["qwertyuiop"], ["", "不存在的词语组合"]):
        scores = index.scores(query)
        assert scores.shape == (len(corpus),)
        assert not np.any(scores)
        assert index.top_k(query, 10) == []
    # An unknown term next to a known one changes nothing.
    assert np.array_equal(index.scores(["食堂", "qwertyuiop"]), index.scores(["食堂"]))


def test_empty_index() -> None:
    index = BM25.fit([])
    assert index.n_docs == 0
    assert index.scores(["学校"]).shape == (0,)
    assert index.top_k(["学校"], 3) == []


# --------------------------------------------------------------------------- persistence


def _saved(tmp_path: Path, **params: float | str) -> tuple[BM25, Path]:
    index = BM25.fit(_corpus(), **params)
    directory = tmp_path / "bm25"
    index.save(directory)
    return index, directory


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("params", [{}, {"idf": "okapi", "k1": 1.2, "b": 0.6, "epsilon": 0.3}])
def test_save_load_round_trip(tmp_path: Path, mmap: bool, params: dict[str, float | str]) -> None:
    index, directory = _saved(tmp_path, **params)
    assert sorted(p.name for p in directory.iterdir()) == sorted(BM25.FILES)
    loaded = BM25.load(directory, mmap=mmap)
    assert (loaded.k1, loaded.b, loaded.idf_variant, loaded.epsilon) == (
        index.k1,
        index.b,
        index.idf_variant,
        index.epsilon,
    )
    assert loaded.vocab == index.vocab
    assert loaded.n_docs == index.n_docs
    if mmap:
        assert isinstance(loaded.segments[0].doc_ids, np.memmap)
    for query in _queries():
        assert np.array_equal(loaded.scores(query), index.scores(query))
        assert loaded.top_k(query, 5) == index.top_k(query, 5)


def test_vocabulary_with_non_ascii_terms_survives(tmp_path: Path) -> None:
    corpus = [["控辍保学", "ａｂｃ"], ["“双减”", "课后服务"]]
    index = BM25.fit(corpus)
    index.save(tmp_path)
    assert BM25.load(tmp_path).vocab == index.vocab


def _truncate(path: Path, keep: int | None = None) -> None:
    array = np.load(path)
    np.save(path, array[: array.shape[0] - 1 if keep is None else keep])


@pytest.mark.parametrize(
    "damage",
    [
        "doc_ids",  # one posting's document lost
        "tfs",
        "indptr",
        "doc_ids+tfs",  # both postings files cut alike: offsets point past them
        "doc_len",  # fewer documents than the postings name
        "terms",  # vocabulary shorter than the offsets
        "indptr_order",
    ],
)
def test_load_refuses_inconsistent_files(tmp_path: Path, damage: str) -> None:
    _, directory = _saved(tmp_path)
    if damage in ("doc_ids", "tfs", "indptr", "doc_len"):
        _truncate(directory / f"bm25_{damage}.npy")
    elif damage == "doc_ids+tfs":
        _truncate(directory / "bm25_doc_ids.npy")
        _truncate(directory / "bm25_tfs.npy")
    elif damage == "terms":
        meta = json.loads((directory / "bm25.json").read_text(encoding="utf-8"))
        meta["terms"] = meta["terms"][:-1]
        (directory / "bm25.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    else:
        indptr = np.load(directory / "bm25_indptr.npy")
        indptr[1], indptr[2] = indptr[2], indptr[1] - 1
        np.save(directory / "bm25_indptr.npy", indptr)
    with pytest.raises(ValueError):
        BM25.load(directory)


def test_load_refuses_negative_doc_ids(tmp_path: Path) -> None:
    _, directory = _saved(tmp_path)
    doc_ids = np.load(directory / "bm25_doc_ids.npy")
    doc_ids[0] = -1
    np.save(directory / "bm25_doc_ids.npy", doc_ids)
    with pytest.raises(ValueError):
        BM25.load(directory)


@pytest.mark.parametrize("idf", ["lucene", "okapi"])
def test_segments_score_as_one_corpus(tmp_path: Path, idf: str) -> None:
    """Documents split over segments (each saved and loaded on its own) score
    exactly as the same documents in one index: IDF and lengths span segments."""
    corpus = _corpus()
    whole = BM25.fit(corpus, idf=idf)
    cut = len(corpus) // 3
    parts = [corpus[:cut], corpus[cut : cut + 2], corpus[cut + 2 :]]
    for n, part in enumerate(parts):
        BM25.fit(part, idf=idf).save(tmp_path / str(n))
    split = BM25.load_segments([tmp_path / str(n) for n in range(len(parts))])
    assert split.n_docs == whole.n_docs
    assert split.idf() == pytest.approx(whole.idf())
    for query in _queries():
        assert np.allclose(split.scores(query), whole.scores(query), rtol=1e-6)
        assert [row for row, _ in split.top_k(query, 4)] == [row for row, _ in whole.top_k(query, 4)]
    grown = BM25.fit(corpus[:cut], idf=idf).add(corpus[cut:])
    for query in _queries():
        assert np.allclose(grown.scores(query), whole.scores(query), rtol=1e-6)


def test_empty_corpus_and_empty_documents() -> None:
    index = BM25.fit([])
    assert index.n_docs == 0 and index.top_k(["教育"], 3) == []
    index = BM25.fit([[], ["教育"], []])
    assert index.top_k(["教育"], 3) == [(1, pytest.approx(index.scores(["教育"])[1]))]
