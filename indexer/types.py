"""The small typed records that move between pipeline stages.

load -> ``LoadedFile`` -> clean -> ``LoadedFile`` -> structure -> ``Document``
(with ``Item``s) -> chunk -> ``Passage`` -> embed/index.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of a source file, in reading order.

    ``heading_level`` is a structure hint from the source format (Word heading
    styles, HTML <h1>-<h6>): 1 is a title or top heading, None is body text.
    """

    text: str
    heading_level: int | None = None


@dataclass(frozen=True)
class FileHints:
    """Metadata a page states about itself in lines that cleaning removes
    (标 题:…, 发布机构/来源:…, 发布时间:…), kept for the structure stage."""

    title: str | None = None
    issuer: str | None = None
    published: str | None = None  # as written, e.g. "2018-03-01"


@dataclass(frozen=True)
class LoadedFile:
    """A source file turned into paragraphs of text."""

    source_file: str  # file name relative to the corpus directory
    paragraphs: tuple[Paragraph, ...]
    content_hash: str  # sha256 of the raw bytes
    hints: FileHints = FileHints()


@dataclass(frozen=True)
class Item:
    """One addressable unit of a plan document.

    ``section``, ``item`` and ``subitem`` are the labels exactly as the
    document writes them ("二、深化教育改革…", "10." or "(五)", "1."), None where
    the document has none. ``kind`` says what the unit is: "item" (numbered),
    "lead" (an item's own text before its sub-points), "subitem", "box" (a 专栏
    box), or "preamble" (text before the first numbered item of a section).
    """

    section: str | None
    item: str | None
    subitem: str | None
    text: str
    kind: str = "item"
    # Heading of the item this unit belongs to (e.g. the lead sentence of an
    # item with sub-points), used to give sub-points their context.
    item_heading: str | None = None


@dataclass(frozen=True)
class Document:
    """One plan document: a file may hold several."""

    doc_id: str
    title: str
    issuer: str | None
    year: int | None
    region: str | None
    source_file: str
    items: tuple[Item, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Passage:
    """The unit that is embedded, indexed, retrieved and cited.

    ``text`` is what users see (the item's own text); ``embed_text`` starts
    with the heading path so that a passage carries its context into the
    vector and BM25 spaces. ``unit_key`` identifies the cited unit: passages
    split from one long item share it, so results can collapse them.
    """

    doc_id: str
    doc_title: str
    source_file: str
    year: int | None
    region: str | None
    issuer: str | None
    section: str | None
    item: str | None
    subitem: str | None
    citation: str
    text: str
    embed_text: str
    unit_key: str
    kind: str = "item"
    part: int = 0
