"""A BM25 index over token lists, stored as term-major postings.

Postings (term -> documents, term frequencies) are kept raw; the BM25 weight
is computed at query time from them, the document-length norms and the
document frequencies. That keeps adding or removing documents a matter of
editing postings: nothing precomputed depends on the corpus size.

Two IDF variants: "lucene" (log(1 + (N - n + .5) / (n + .5)), never negative,
the default) and "okapi" (rank_bm25's BM25Okapi, with its epsilon floor), the
latter so tests can check scores against the reference implementation.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class BM25:
    """Term-major BM25 postings with a vocabulary."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, idf: str = "lucene", epsilon: float = 0.25) -> None:
        if idf not in ("lucene", "okapi"):
            raise ValueError(f"unknown idf variant {idf!r}")
        self.k1, self.b, self.idf_variant, self.epsilon = k1, b, idf, epsilon
        self.vocab: dict[str, int] = {}
        self.indptr = np.zeros(1, dtype=np.int64)
        self.doc_ids = np.zeros(0, dtype=np.int32)
        self.tfs = np.zeros(0, dtype=np.float32)
        self.doc_len = np.zeros(0, dtype=np.float32)
        self._idf: np.ndarray | None = None
        self._norm: np.ndarray | None = None

    @property
    def n_docs(self) -> int:
        return int(self.doc_len.shape[0])

    @classmethod
    def fit(cls, corpus_tokens: Sequence[Sequence[str]], **params: float | str) -> BM25:
        index = cls(**params)  # type: ignore[arg-type]
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[int] = []
        doc_len = np.zeros(len(corpus_tokens), dtype=np.float32)
        for doc, tokens in enumerate(corpus_tokens):
            doc_len[doc] = len(tokens)
            for term, count in Counter(tokens).items():
                rows.append(vocab.setdefault(term, len(vocab)))
                cols.append(doc)
                vals.append(count)
        term_ids = np.asarray(rows, dtype=np.int64)
        order = np.lexsort((np.asarray(cols, dtype=np.int64), term_ids))
        index.vocab = vocab
        index.doc_ids = np.asarray(cols, dtype=np.int32)[order]
        index.tfs = np.asarray(vals, dtype=np.float32)[order]
        index.indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.add.at(index.indptr, term_ids + 1, 1)
        index.indptr = np.cumsum(index.indptr)
        index.doc_len = doc_len
        return index

    def _prepare(self) -> None:
        n = max(self.n_docs, 1)
        df = np.diff(self.indptr).astype(np.float64)
        if self.idf_variant == "lucene":
            idf = np.log1p((n - df + 0.5) / (df + 0.5))
        else:
            idf = np.log((n - df + 0.5) / (df + 0.5))
            floor = self.epsilon * (idf.mean() if idf.size else 0.0)
            idf = np.where(idf < 0, floor, idf)
        self._idf = idf.astype(np.float32)
        avgdl = float(self.doc_len.mean()) if self.n_docs else 1.0
        self._norm = (self.k1 * (1 - self.b + self.b * self.doc_len / max(avgdl, 1e-9))).astype(np.float32)

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the query (0 where nothing matches)."""
        if self._idf is None or self._norm is None:
            self._prepare()
        assert self._idf is not None and self._norm is not None
        scores = np.zeros(self.n_docs, dtype=np.float32)
        for term in query_tokens:  # a repeated query term counts again, as in rank_bm25
            term_id = self.vocab.get(term)
            if term_id is None:
                continue
            lo, hi = self.indptr[term_id], self.indptr[term_id + 1]
            docs, tf = self.doc_ids[lo:hi], self.tfs[lo:hi]
            scores[docs] += self._idf[term_id] * tf * (self.k1 + 1) / (tf + self._norm[docs])
        return scores

    def top_k(self, query_tokens: Sequence[str], k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best documents with a positive score, best first.

        ``allowed`` is a boolean mask over documents (filters)."""
        scores = self.scores(query_tokens)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        k = min(k, positive.size)
        best = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(i), float(scores[i])) for i in best]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        params = {"k1": self.k1, "b": self.b, "idf": self.idf_variant, "epsilon": self.epsilon}
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (directory / "bm25.json").write_text(
            json.dumps({"params": params, "terms": terms}, ensure_ascii=False), encoding="utf-8"
        )
        np.save(directory / "bm25_indptr.npy", self.indptr)
        np.save(directory / "bm25_doc_ids.npy", self.doc_ids)
        np.save(directory / "bm25_tfs.npy", self.tfs)
        np.save(directory / "bm25_doc_len.npy", self.doc_len)

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> BM25:
        meta = json.loads((directory / "bm25.json").read_text(encoding="utf-8"))
        index = cls(**meta["params"])
        index.vocab = {term: i for i, term in enumerate(meta["terms"])}
        mode = "r" if mmap else None
        index.indptr = np.load(directory / "bm25_indptr.npy", mmap_mode=mode)
        index.doc_ids = np.load(directory / "bm25_doc_ids.npy", mmap_mode=mode)
        index.tfs = np.load(directory / "bm25_tfs.npy", mmap_mode=mode)
        index.doc_len = np.load(directory / "bm25_doc_len.npy")
        if index.indptr.shape[0] != len(index.vocab) + 1 or index.doc_ids.shape != index.tfs.shape:
            raise ValueError("BM25 postings do not match the vocabulary")
        # The offsets must cover the postings exactly: a truncated pair of
        # doc_ids/tfs files would otherwise be read as shorter posting lists.
        if int(index.indptr[0]) != 0 or int(index.indptr[-1]) != index.doc_ids.shape[0]:
            raise ValueError("BM25 posting offsets do not match the postings")
        if index.indptr.shape[0] > 1 and bool(np.any(np.diff(index.indptr) < 0)):
            raise ValueError("BM25 posting offsets are not in order")
        if index.doc_ids.size and (int(index.doc_ids.max()) >= index.n_docs or int(index.doc_ids.min()) < 0):
            raise ValueError("BM25 postings point past the last document")
        return index

    FILES = ("bm25.json", "bm25_indptr.npy", "bm25_doc_ids.npy", "bm25_tfs.npy", "bm25_doc_len.npy")
