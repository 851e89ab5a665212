"""A BM25 index over token lists, stored as term-major postings in segments.

A segment (``Postings``) holds the raw postings of some documents (term ->
documents, term frequencies), their lengths and its own vocabulary, and is
never changed once written. ``BM25`` scores over a sequence of segments as
over one corpus: document frequencies, the average length and so the IDFs
are summed across segments at load time, and each segment's documents follow
the previous segment's. So adding documents writes one new small segment;
nothing precomputed depends on the corpus size.

Two IDF variants: "lucene" (log(1 + (N - n + .5) / (n + .5)), never negative,
the default) and "okapi" (rank_bm25's BM25Okapi, with its epsilon floor), the
latter so tests can check scores against the reference implementation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class Postings:
    """One segment's term-major postings with its vocabulary."""

    FILES = ("bm25.json", "bm25_indptr.npy", "bm25_doc_ids.npy", "bm25_tfs.npy", "bm25_doc_len.npy")

    def __init__(
        self,
        terms: list[str],
        indptr: np.ndarray,
        doc_ids: np.ndarray,
        tfs: np.ndarray,
        doc_len: np.ndarray,
        params: dict[str, float | str] | None = None,
    ) -> None:
        self.terms = terms
        self.indptr, self.doc_ids, self.tfs, self.doc_len = indptr, doc_ids, tfs, doc_len
        self.params = params or {}

    @property
    def n_docs(self) -> int:
        return int(self.doc_len.shape[0])

    @classmethod
    def fit(cls, corpus_tokens: Sequence[Sequence[str]]) -> Postings:
        vocab: dict[str, int] = {}
        lengths = np.fromiter((len(tokens) for tokens in corpus_tokens), dtype=np.int64, count=len(corpus_tokens))
        term_ids = np.fromiter(
            (vocab.setdefault(term, len(vocab)) for tokens in corpus_tokens for term in tokens),
            dtype=np.int64,
            count=int(lengths.sum()),
        )
        docs = np.repeat(np.arange(len(corpus_tokens), dtype=np.int64), lengths)
        # One key per (term, document), sorted term-major: np.unique gives the
        # postings in order and the term frequencies as counts.
        keys, counts = np.unique(term_ids * max(len(corpus_tokens), 1) + docs, return_counts=True)
        n = max(len(corpus_tokens), 1)
        posting_terms = keys // n
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.add.at(indptr, posting_terms + 1, 1)
        return cls(
            terms=list(vocab),
            indptr=np.cumsum(indptr),
            doc_ids=(keys % n).astype(np.int32),
            tfs=counts.astype(np.float32),
            doc_len=lengths.astype(np.float32),
        )

    def save(self, directory: Path, params: dict[str, float | str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "bm25.json").write_text(
            json.dumps({"params": params, "terms": self.terms}, ensure_ascii=False), encoding="utf-8"
        )
        np.save(directory / "bm25_indptr.npy", self.indptr)
        np.save(directory / "bm25_doc_ids.npy", self.doc_ids)
        np.save(directory / "bm25_tfs.npy", self.tfs)
        np.save(directory / "bm25_doc_len.npy", self.doc_len)

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> Postings:
        meta = json.loads((directory / "bm25.json").read_text(encoding="utf-8"))
        mode = "r" if mmap else None
        postings = cls(
            terms=list(meta["terms"]),
            indptr=np.load(directory / "bm25_indptr.npy", mmap_mode=mode),
            doc_ids=np.load(directory / "bm25_doc_ids.npy", mmap_mode=mode),
            tfs=np.load(directory / "bm25_tfs.npy", mmap_mode=mode),
            doc_len=np.load(directory / "bm25_doc_len.npy"),
            params=meta.get("params", {}),
        )
        postings.check()
        return postings

    def check(self) -> None:
        """Refuse postings whose files do not fit together (truncated or edited)."""
        if self.indptr.shape[0] != len(self.terms) + 1 or self.doc_ids.shape != self.tfs.shape:
            raise ValueError("BM25 postings do not match the vocabulary")
        # The offsets must cover the postings exactly: a truncated pair of
        # doc_ids/tfs files would otherwise be read as shorter posting lists.
        if int(self.indptr[0]) != 0 or int(self.indptr[-1]) != self.doc_ids.shape[0]:
            raise ValueError("BM25 posting offsets do not match the postings")
        if self.indptr.shape[0] > 1 and bool(np.any(np.diff(self.indptr) < 0)):
            raise ValueError("BM25 posting offsets are not in order")
        if self.doc_ids.size and (int(self.doc_ids.max()) >= self.n_docs or int(self.doc_ids.min()) < 0):
            raise ValueError("BM25 postings point past the last document")


class BM25:
    """BM25 scoring over one or more postings segments, as one corpus."""

    def __init__(
        self,
        segments: Sequence[Postings] = (),
        k1: float = 1.5,
        b: float = 0.75,
        idf: str = "lucene",
        epsilon: float = 0.25,
    ) -> None:
        if idf not in ("lucene", "okapi"):
            raise ValueError(f"unknown idf variant {idf!r}")
        self.k1, self.b, self.idf_variant, self.epsilon = k1, b, idf, epsilon
        self.segments = list(segments)
        self.vocab: dict[str, int] = {}
        # Per segment: global term id -> that segment's term id (-1: absent).
        self._local: list[np.ndarray] = []
        self._base = np.zeros(len(self.segments) + 1, dtype=np.int64)
        self._idf: np.ndarray | None = None
        self._norm: np.ndarray | None = None
        self._join()

    @property
    def params(self) -> dict[str, float | str]:
        return {"k1": self.k1, "b": self.b, "idf": self.idf_variant, "epsilon": self.epsilon}

    @property
    def n_docs(self) -> int:
        return int(self._base[-1])

    def _join(self) -> None:
        for segment in self.segments:
            for term in segment.terms:
                self.vocab.setdefault(term, len(self.vocab))
        for n, segment in enumerate(self.segments):
            local = np.full(len(self.vocab), -1, dtype=np.int64)
            local[[self.vocab[t] for t in segment.terms]] = np.arange(len(segment.terms))
            self._local.append(local)
            self._base[n + 1] = self._base[n] + segment.n_docs

    @classmethod
    def fit(cls, corpus_tokens: Sequence[Sequence[str]], **params: float | str) -> BM25:
        return cls([Postings.fit(corpus_tokens)], **params)  # type: ignore[arg-type]

    def add(self, corpus_tokens: Sequence[Sequence[str]]) -> BM25:
        """This index with the documents of ``corpus_tokens`` appended, as a new segment."""
        return BM25([*self.segments, Postings.fit(corpus_tokens)], **self.params)  # type: ignore[arg-type]

    def _prepare(self) -> None:
        n = max(self.n_docs, 1)
        df = np.zeros(len(self.vocab), dtype=np.float64)
        for segment, local in zip(self.segments, self._local, strict=True):
            present = local >= 0
            df[present] += np.diff(segment.indptr)[local[present]]
        if self.idf_variant == "lucene":
            idf = np.log1p((n - df + 0.5) / (df + 0.5))
        else:
            idf = np.log((n - df + 0.5) / (df + 0.5))
            floor = self.epsilon * (idf.mean() if idf.size else 0.0)
            idf = np.where(idf < 0, floor, idf)
        self._idf = idf.astype(np.float32)
        doc_len = np.concatenate([s.doc_len for s in self.segments]) if self.segments else np.zeros(0)
        avgdl = float(doc_len.mean()) if self.n_docs else 1.0
        self._norm = (self.k1 * (1 - self.b + self.b * doc_len / max(avgdl, 1e-9))).astype(np.float32)

    def idf(self) -> dict[str, float]:
        """IDF of every term in the vocabulary."""
        if self._idf is None:
            self._prepare()
        assert self._idf is not None
        return {term: float(self._idf[i]) for term, i in self.vocab.items()}

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
            for n, segment in enumerate(self.segments):
                local = int(self._local[n][term_id])
                if local < 0:
                    continue
                lo, hi = segment.indptr[local], segment.indptr[local + 1]
                docs = segment.doc_ids[lo:hi] + self._base[n]
                tf = segment.tfs[lo:hi]
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
        """Save a one-segment index (a segment of an index directory)."""
        if len(self.segments) != 1:
            raise ValueError(f"save writes one segment; this index has {len(self.segments)}")
        self.segments[0].save(directory, self.params)

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> BM25:
        return cls.load_segments([directory], mmap=mmap)

    @classmethod
    def load_segments(cls, directories: Sequence[Path], mmap: bool = True) -> BM25:
        segments = [Postings.load(directory, mmap=mmap) for directory in directories]
        params = segments[0].params if segments else {}
        return cls(segments, **params)  # type: ignore[arg-type]

    FILES = Postings.FILES
