"""Chunk stage: a document's items -> passages with their citation.

One passage per item (or per sub-point, for items that have them). An item
longer than the model's useful length is split at sentence boundaries into
overlapping passages that keep the item's citation.
"""

from __future__ import annotations

import re

from indexer import patterns
from indexer.types import Document, Item, Passage

# Split after sentence-final punctuation.
SENTENCE_BREAK = re.compile(r"(?<=[。；;！!？?])")
# Inside an over-long sentence, fall back to commas.
CLAUSE_BREAK = re.compile(r"(?<=[，,、])")
SECTION_CITATION_CHARS = 18
# Bump when structure or chunking changes what passages an index holds:
# indexes built by another version are rebuilt, not mixed.
CHUNKER_VERSION = "3"
# A clause shorter than this is merged with the next one before embedding:
# "加强驻村帮扶。" alone says too little to place it.
MIN_UNIT_CHARS = 12
# A sentence or ；-clause: the unit embedded here and the unit an answer is
# picked from (search.answer).
CLAUSE_END = re.compile(r"[^。；;！!？?\n]+[。；;！!？?]?")


def short_section(section: str | None) -> str | None:
    """A section heading shortened for display: "二、深化教育改革,全面提高…"."""
    if not section:
        return None
    if len(section) <= SECTION_CITATION_CHARS:
        return section
    return section[:SECTION_CITATION_CHARS] + "…"


def citation(document: Document, item: Item) -> str:
    """"《2023年全县教育工作要点》 二、抓好校园安全… 第10条" and the like."""
    parts = [f"《{document.title}》"]
    section = short_section(item.section)
    if section:
        parts.append(section)
    if item.kind == "box" and item.item:
        parts.append(item.text.split("\n", 1)[0][:30])
    elif item.item:
        parts.append(_label_citation(item.item, "条"))
    elif item.kind == "preamble":
        parts.append("导语")
    if item.subitem:
        parts.append(_label_citation(item.subitem, "点"))
    return " ".join(parts)


def _label_citation(label: str, unit: str) -> str:
    """Arabic labels read as "第7条"; bracketed Chinese ones stay as written."""
    found = patterns.match_label(label)
    if found and found.kind in ("arabic", "arabic_paren", "circled"):
        return f"第{found.number}{unit}"
    return label


def heading_path(document: Document, item: Item) -> str:
    """Title, section, item heading: the context a passage is embedded with."""
    parts = [document.title]
    if item.section:
        parts.append(item.section)
    if item.subitem and item.item_heading:
        parts.append(f"{item.item}{item.item_heading}")
    return " > ".join(parts)


def embedding_units(passage: Passage) -> list[str]:
    """The texts embedded for one passage: the whole passage with its heading
    path first, then each of its clauses on its own.

    A question usually matches one clause of an item ("学生手机管理" inside an
    item about 五项管理); a whole-item vector dilutes it. Dense retrieval
    scores a passage by its whole vector and its best clause (measured on the
    dev set: hit@5 0.84 -> 1.00 for dense retrieval).
    """
    units = [passage.embed_text]
    pending = ""
    for match in CLAUSE_END.finditer(passage.text):
        clause = (pending + match.group()).strip()
        if len(clause) < MIN_UNIT_CHARS:
            pending = clause
            continue
        pending = ""
        units.append(clause)
    if pending:
        if len(units) > 1:
            units[-1] += pending
        else:
            units.append(pending)
    return units


def split_sentences(text: str) -> list[str]:
    """Sentences in order; one that ends a paragraph keeps its "\n" so that
    re-joined windows keep the paragraph breaks."""
    sentences: list[str] = []
    for paragraph in text.split("\n"):
        pieces = [s for s in (p.strip() for p in SENTENCE_BREAK.split(paragraph)) if s]
        if pieces:
            pieces[-1] += "\n"
            sentences.extend(pieces)
    return sentences


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """A sentence as pieces of at most ``max_chars``, in order: whole if it
    fits, else cut at commas, else hard. A trailing paragraph break stays on
    the last piece (it is not text, so it never forces a cut of its own)."""
    body = sentence.rstrip()
    tail = sentence[len(body) :]
    if len(body) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    buffer = ""
    for clause in CLAUSE_BREAK.split(body):
        if len(buffer) + len(clause) <= max_chars:
            buffer += clause
            continue
        if len(clause) <= max_chars:  # cut at the comma
            pieces.append(buffer)
            buffer = clause
            continue
        # A clause that fits nowhere: cut hard.
        buffer += clause
        while len(buffer) > max_chars:
            pieces.append(buffer[:max_chars])
            buffer = buffer[max_chars:]
    if buffer:
        pieces.append(buffer)
    pieces[-1] += tail
    return pieces


def _pack(sentences: list[str], max_chars: int, overlap_chars: int) -> list[str]:
    """Greedy packing of sentences into windows of at most ``max_chars``, each
    window starting with the previous window's last sentences (up to
    ``overlap_chars``) so an answer spanning a cut is whole in one of them."""
    pieces: list[str] = []
    for sentence in sentences:
        pieces.extend(_split_long(sentence, max_chars))
    windows: list[list[str]] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        if current and size + len(piece) > max_chars:
            windows.append(current)
            overlap: list[str] = []
            kept = 0
            for prev in reversed(current):
                if kept + len(prev) > overlap_chars or kept + len(prev) + len(piece) > max_chars:
                    break
                overlap.insert(0, prev)
                kept += len(prev)
            current, size = overlap, kept
        current.append(piece)
        size += len(piece)
    if current:
        windows.append(current)
    return ["".join(w).strip() for w in windows]


def chunk(document: Document, max_chars: int = 360, overlap_chars: int = 60) -> list[Passage]:
    """Passages of one document, in reading order."""
    passages: list[Passage] = []
    for item in document.items:
        text = item.text.strip()
        if not text:
            continue
        cite = citation(document, item)
        path = heading_path(document, item)
        unit_key = "|".join(
            [document.doc_id, item.section or "", item.item or "", item.subitem or "", item.kind]
        )
        windows = [text] if len(text) <= max_chars else _pack(split_sentences(text), max_chars, overlap_chars)
        for part, window in enumerate(windows):
            passages.append(
                Passage(
                    doc_id=document.doc_id,
                    doc_title=document.title,
                    source_file=document.source_file,
                    year=document.year,
                    region=document.region,
                    issuer=document.issuer,
                    section=item.section,
                    item=item.item,
                    subitem=item.subitem,
                    citation=cite,
                    text=window,
                    embed_text=f"{path}\n{window}",
                    unit_key=unit_key,
                    kind=item.kind,
                    part=part,
                )
            )
    return passages
