"""Structure stage: a cleaned file -> its documents -> sections, items, sub-points.

The numbering vocabulary comes from ``indexer.patterns``; this module decides
what each marker means in one document:

* ``一、`` lines are section headings;
* the first other kind of marker that starts a paragraph is the item level
  ("1." in most 工作要点, "(一)" in file 003 and in 规划 texts); a different kind
  that starts a paragraph inside an item is its sub-point level;
* inside an item's paragraph, a run "1.…2.…" / "(1)…(2)…" / "①…②…" after a
  sentence end is a list of inline sub-points;
* an item number glued after the previous item's last sentence
  ("…。16.继续推进…") starts its own item when it continues the sequence;
* unnumbered paragraphs continue the unit before them; "专栏N" starts a box.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from indexer import patterns
from indexer.types import Document, Item, LoadedFile

# A title line names a kind of plan and is not a sentence.
TITLE_KEYWORDS = re.compile(r"(工作要点|要点|规划|计划|方案|意见|通知|纲要|实施办法|工作思路)")
TITLE_MAX_CHARS = 60
# "玉泉区人民政府办公室关于印发《…》的通知": issuer before 关于, title inside 《》.
ISSUANCE_LINE = re.compile(r"^(?P<issuer>[^《》]{2,30}?)关于(?:印发|转发|下发)?《(?P<title>[^》]+)》?")
YEAR = re.compile(r"(?<!\d)(19[5-9]\d|20\d\d)(?!\d)")
# A place name at the start of a title or issuer: 天门市, 庄浪县, 玉泉区, 河北省.
REGION = re.compile(r"^(?:\d{4}年)?(?P<region>[\u4e00-\u9fff]{1,8}?(?:自治区|自治州|省|市|县|区|州|旗|盟))")
# A region name that only anonymises ("某区", "全县") is not a region.
NOT_A_REGION = re.compile(r"^(某|全|本|我|各)")
# Unclosed "(2021" at the end of a truncated title.
TRAILING_OPEN_BRACKET = re.compile(r"[(（][^)）]*$")

SECTION_HEADING_MAX_CHARS = 80


@dataclass(frozen=True)
class DocMeta:
    """Overrides from ``corpus/<file>.meta.json``."""

    title: str | None = None
    issuer: str | None = None
    year: int | None = None
    region: str | None = None


def read_meta_sidecar(path: Path) -> list[DocMeta]:
    """``<file>.meta.json`` beside a source file: one object for the file's
    (first) document, or a list with one object per document in order."""
    sidecar = path.with_name(path.name + ".meta.json")
    if not sidecar.is_file():
        return []
    try:
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{sidecar.name}: not valid JSON ({exc})") from exc
    entries = raw if isinstance(raw, list) else [raw]
    metas = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"{sidecar.name}: expected an object or a list of objects")
        year = entry.get("year")
        metas.append(
            DocMeta(
                title=entry.get("title"),
                issuer=entry.get("issuer"),
                year=int(year) if year not in (None, "") else None,
                region=entry.get("region"),
            )
        )
    return metas


def is_title_line(text: str) -> bool:
    """A short line naming a plan, with no sentence punctuation."""
    text = text.strip()
    if not text or len(text) > TITLE_MAX_CHARS or patterns.match_label(text):
        return False
    if any(ch in text for ch in "。；;，,:："):
        return False
    return bool(TITLE_KEYWORDS.search(text))


def split_documents(paragraphs: list[str]) -> list[tuple[str | None, list[str]]]:
    """Cut a file's paragraphs at title lines that open a body of text.

    A title line followed directly by another title line is a page header
    (e.g. "…要点2篇" above "…要点1"), not a document of its own. Nor is a
    title-like line after which the numbering goes on ("…行动计划" between
    items 1. and 2.): a later document starts its numbering afresh.
    """
    candidates: list[int] = []
    for i, text in enumerate(paragraphs):
        if not is_title_line(text):
            continue
        following = paragraphs[i + 1] if i + 1 < len(paragraphs) else ""
        if not following or is_title_line(following):
            continue
        candidates.append(i)
    starts: list[int] = []
    for n, i in enumerate(candidates):
        end = candidates[n + 1] if n + 1 < len(candidates) else len(paragraphs)
        if starts and _continues_numbering(paragraphs[i + 1 : end]):
            continue
        starts.append(i)
    if not starts:
        return [(None, paragraphs)]
    documents: list[tuple[str | None, list[str]]] = []
    if starts[0] > 0:
        # Text before the first title (rare) stays with the first document.
        head = paragraphs[: starts[0]]
        head = [p for p in head if not is_title_line(p)]
    else:
        head = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(paragraphs)
        body = paragraphs[start + 1 : end]
        if n == 0:
            body = head + body
        documents.append((paragraphs[start].strip(), body))
    # A "document" with no numbered part (a repeated page title, a header
    # line) is folded into the next one.
    merged: list[tuple[str | None, list[str]]] = []
    carry: list[str] = []
    for n, (title, body) in enumerate(documents):
        has_structure = any(patterns.match_label(p) for p in body)
        if not has_structure and n + 1 < len(documents):
            carry.extend(body)
            continue
        merged.append((title, carry + body))
        carry = []
    return merged


def _continues_numbering(body: list[str]) -> bool:
    """Whether the first numbered paragraph of ``body`` is not a first one
    (1., 一、, (一), ①, 专栏1): the text goes on with an earlier numbering."""
    for text in body:
        label = patterns.match_label(text)
        if label:
            return label.number != 1
    return False


@dataclass
class _Unit:
    """An item being assembled: its label and paragraphs so far."""

    section: str | None
    item: str | None
    kind: str
    paragraphs: list[str] = field(default_factory=list)
    # Sub-points that start a paragraph of their own: (label, paragraphs).
    subitems: list[tuple[str, list[str]]] = field(default_factory=list)


class DocumentParser:
    """Parses one document's paragraphs into ``Item``s."""

    def __init__(self, paragraphs: list[str]) -> None:
        self.paragraphs = [p.strip() for p in paragraphs if p.strip()]
        self.item_kind = self._item_kind()

    def _item_kind(self) -> str | None:
        for text in self.paragraphs:
            label = patterns.match_label(text)
            if label and label.kind not in ("section", "box"):
                return label.kind
        return None

    def parse(self) -> list[Item]:
        units: list[_Unit] = []
        section: str | None = None
        current = _Unit(section=None, item=None, kind="preamble")
        units.append(current)
        for text in self.paragraphs:
            label = patterns.match_label(text)
            if label and label.kind == "section" and self._looks_like_heading(text):
                section = self._section_heading(text)
                rest = text[len(section) :].strip()
                current = _Unit(section=section, item=None, kind="preamble")
                units.append(current)
                if rest:
                    current.paragraphs.append(rest)
                continue
            if label and label.kind == "box":
                current = _Unit(section=section, item=label.label, kind="box", paragraphs=[text])
                units.append(current)
                continue
            if label and label.kind == self.item_kind:
                for label_text, body in self._split_glued(text, label):
                    current = _Unit(section=section, item=label_text, kind="item", paragraphs=[body])
                    units.append(current)
                continue
            if label and current.kind == "item" and label.kind != "section":
                # A different kind of marker starting a paragraph inside an
                # item: a sub-point on its own line.
                current.subitems.append((label.label, [text[label.end :].strip()]))
                continue
            if current.subitems:
                current.subitems[-1][1].append(text)
            else:
                current.paragraphs.append(text)
        items: list[Item] = []
        for unit in units:
            items.extend(self._unit_items(unit))
        return items

    @staticmethod
    def _looks_like_heading(text: str) -> bool:
        first_sentence = re.split(r"[。；;]", text, maxsplit=1)[0]
        return len(first_sentence) <= SECTION_HEADING_MAX_CHARS

    @staticmethod
    def _section_heading(text: str) -> str:
        """The heading as written; a body glued after it stays out."""
        if len(text) <= SECTION_HEADING_MAX_CHARS and not re.search(r"[。；;]", text.rstrip("。")):
            return text
        return re.split(r"(?<=[。；;])", text, maxsplit=1)[0]

    def _split_glued(self, text: str, label: patterns.Label) -> list[tuple[str, str]]:
        """An item paragraph, cut where the next item's number is glued on."""
        pieces: list[tuple[str, str]] = []
        current_label, body = label.label, text[label.end :].strip()
        number = label.number
        while True:
            if patterns.inline_runs(body, label.kind):
                # "1.…2.…" inside the item are sub-points, not glued items.
                break
            glued = patterns.glued_label(body, label.kind, number + 1)
            if glued is None:
                break
            pieces.append((current_label, body[: glued.start].strip()))
            current_label, body, number = glued.label, body[glued.end :].strip(), number + 1
        pieces.append((current_label, body))
        return pieces

    def _unit_items(self, unit: _Unit) -> list[Item]:
        text = "\n".join(p for p in unit.paragraphs if p)
        if unit.kind != "item":
            return [Item(unit.section, unit.item, None, text, kind=unit.kind)] if text else []
        if unit.subitems:
            heading = _first_sentence(text)
            items = [Item(unit.section, unit.item, None, text, kind="lead")] if text else []
            for label, body in unit.subitems:
                items.append(
                    Item(unit.section, unit.item, label, "\n".join(body), kind="subitem", item_heading=heading)
                )
            return items
        inline = self._inline_subpoints(text)
        if not inline:
            return [Item(unit.section, unit.item, None, text, kind="item")]
        lead = text[: inline[0].start].strip()
        heading = _first_sentence(lead) if lead else None
        items = [Item(unit.section, unit.item, None, lead, kind="lead")] if lead else []
        for n, marker in enumerate(inline):
            end = inline[n + 1].start if n + 1 < len(inline) else len(text)
            body = text[marker.end : end].strip()
            items.append(Item(unit.section, unit.item, marker.label, body, kind="subitem", item_heading=heading))
        return items

    def _inline_subpoints(self, text: str) -> list[patterns.Label]:
        for kind in patterns.INLINE_KINDS:
            if kind == self.item_kind:
                continue
            run = patterns.inline_runs(text, kind)
            if len(run) >= 2:
                return run
        return []


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[。；;！？!?])", text.strip(), maxsplit=1)[0]


def _title_and_issuer(title_line: str | None) -> tuple[str | None, str | None]:
    if not title_line:
        return None, None
    issuance = ISSUANCE_LINE.match(title_line)
    if issuance:
        title = TRAILING_OPEN_BRACKET.sub("", issuance.group("title")).strip()
        return title, issuance.group("issuer").strip()
    return title_line, None


def _region(*candidates: str | None) -> str | None:
    for text in candidates:
        if not text:
            continue
        m = REGION.match(text)
        if m and not NOT_A_REGION.match(m.group("region")):
            return m.group("region")
    return None


def _year(*candidates: str | None) -> int | None:
    for text in candidates:
        if text:
            m = YEAR.search(text)
            if m:
                return int(m.group(1))
    return None


def structure(file: LoadedFile, metas: list[DocMeta] | None = None) -> list[Document]:
    """Split a cleaned file into documents and parse each one."""
    paragraphs = [p.text for p in file.paragraphs]
    stem = Path(file.source_file).stem
    split = split_documents(paragraphs)
    if len(split) == 1 and split[0][0] is None and file.hints.title:
        split = [(file.hints.title, split[0][1])]
    documents = []
    for n, (title_line, body) in enumerate(split):
        title, issuer = _title_and_issuer(title_line)
        issuer = issuer or file.hints.issuer
        meta = (metas or [])[n] if n < len(metas or []) else DocMeta()
        title = meta.title or title or file.hints.title or stem
        issuer = meta.issuer or issuer
        year = meta.year or _year(title, title_line, file.hints.published)
        region = meta.region or _region(title, issuer)
        doc_id = stem if len(split) == 1 else f"{stem}-{n + 1}"
        items = DocumentParser(body).parse()
        documents.append(
            Document(
                doc_id=doc_id,
                title=title,
                issuer=issuer,
                year=year,
                region=region,
                source_file=file.source_file,
                items=tuple(items),
            )
        )
    return documents
