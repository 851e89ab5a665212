"""e5 token ids without loading e5's whole vocabulary.

``tokenizer.json`` (``indexer.model``) holds 250,002 Unigram pieces; building
them into a ``tokenizers`` model takes 0.5 s, half of a cold ``plansearch
search``, and 0.2 s more to free. A text can only ever be cut into pieces made
of its own characters, so a Unigram model over just those pieces builds the
same Viterbi lattice and gives the same ids (tested against the full
tokenizer). ``PieceTokenizer`` keeps such a model for the characters it has
seen so far and grows it when a text brings new ones: a question needs ~150
pieces (11 ms to find), the seed corpus ~10,000 (60 ms).

Files, written beside the ONNX graphs by ``write_files``: ``pieces.txt`` (one
piece a line, in id order), ``piece_scores.npy`` and ``tokenizer_base.json``
(the tokenizer with a one-piece vocabulary: normaliser, pre-tokeniser).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PIECES = "onnx/pieces.txt"
SCORES = "onnx/piece_scores.npy"
BASE = "onnx/tokenizer_base.json"
FILES = (PIECES, SCORES, BASE)
METASPACE = "\u2581"
MAX_GROWTHS = 3


def write_files(tokenizer_json: dict[str, Any], folder: Path) -> None:
    """Split a Unigram ``tokenizer.json`` (as a dict) into the three files above."""
    model = tokenizer_json["model"]
    pieces = [piece for piece, _ in model["vocab"]]
    if any("\n" in piece for piece in pieces):
        raise ValueError("a piece holds a newline: pieces.txt cannot list it")
    (folder / PIECES).parent.mkdir(parents=True, exist_ok=True)
    (folder / PIECES).write_text("\n".join(pieces) + "\n", encoding="utf-8")
    np.save(folder / SCORES, np.asarray([score for _, score in model["vocab"]], dtype=np.float64))
    unk = model["unk_id"]
    # The piece model is built per character set; <s> and </s> (the post-processor's
    # own ids) and the truncation stay as they are.
    base = {**tokenizer_json, "model": {**model, "vocab": [[pieces[unk], model["vocab"][unk][1]]], "unk_id": 0}}
    (folder / BASE).write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")


class PieceTokenizer:
    """Token ids of texts, equal to those of the folder's ``tokenizer.json``."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        # All pieces as one text, one a line, so that a regular expression
        # finds the ones made of given characters in a single pass (11 ms).
        self._vocab_text = (folder / PIECES).read_text(encoding="utf-8")
        self._pieces = self._vocab_text.split("\n")[:-1]
        self._scores = np.load(folder / SCORES)
        lengths = np.fromiter((len(piece) + 1 for piece in self._pieces), dtype=np.int64, count=len(self._pieces))
        self._line_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self._tokenizer = Tokenizer.from_file(str(folder / BASE))
        self.unk = self._pieces.index(self._tokenizer.id_to_token(0))
        self._covered: set[str] = set()
        self._global_ids = np.asarray([self.unk], dtype=np.int64)  # local id -> id in the full vocabulary
        self._growths = 0
        self.complete = False  # every piece loaded
        self._lock = threading.Lock()

    def _characters(self, texts: Sequence[str]) -> set[str]:
        """Every character the pieces of ``texts`` can hold: the normalised text, spaces as "▁"."""
        normalizer = self._tokenizer.normalizer
        found: set[str] = {METASPACE}
        for text in texts:
            found.update(normalizer.normalize_str(text))
        found.discard(" ")
        return found

    def load_all(self) -> None:
        """Every piece, once (0.5 s): from then on no text makes the model grow."""
        from tokenizers import models

        with self._lock:
            if self.complete:
                return
            self._tokenizer.model = models.Unigram(list(zip(self._pieces, self._scores.tolist(), strict=True)),
                                                   self.unk, False)
            self._global_ids = np.arange(len(self._pieces), dtype=np.int64)
            self.complete = True
            # The model holds every piece now: the lists to pick from are not needed again (45 MB).
            self._vocab_text, self._pieces, self._line_starts = "", [], np.zeros(0, dtype=np.int64)

    def _grow(self, characters: set[str]) -> None:
        """A piece model over every piece made only of ``characters`` (and those seen before)."""
        from tokenizers import models

        self._growths += 1
        self._covered |= characters
        allowed = "".join(re.escape(c) for c in sorted(self._covered))
        starts = [m.start() for m in re.finditer(f"^[{allowed}]+$", self._vocab_text, re.MULTILINE)]
        ids = np.searchsorted(self._line_starts, starts)
        ids = np.concatenate([[self.unk], ids[ids != self.unk]])  # local id 0 is <unk>, as in the base file
        vocab = [(self._pieces[i], float(self._scores[i])) for i in ids.tolist()]
        self._tokenizer.model = models.Unigram(vocab, 0, False)
        self._global_ids = ids

    def ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The token ids of each text, as int64 arrays."""
        if not texts:
            return []
        if not self.complete and self._growths >= MAX_GROWTHS:
            self.load_all()
        with self._lock:  # the model is swapped when it grows
            if not self.complete:
                characters = self._characters(texts)
                if not characters <= self._covered:
                    self._grow(characters)
            encodings = self._tokenizer.encode_batch(list(texts))
            global_ids = self._global_ids
        out = []
        for encoding in encodings:
            ids = np.asarray(encoding.ids, dtype=np.int64)
            special = np.asarray(encoding.special_tokens_mask, dtype=bool)  # <s>, </s>: already global
            out.append(np.where(special, ids, global_ids[np.where(special, 0, ids)]))
        return out

    @property
    def pieces_loaded(self) -> int:
        return len(self._global_ids)
