"""Load stage: turn one source file into paragraphs of text.

Supported: ``.txt`` (UTF-8, UTF-8/16/32 with BOM, GB18030/GBK/GB2312), ``.html``
/``.htm`` (main content only), ``.docx`` (body and tables, Word heading styles)
and text ``.pdf`` (hard-wrapped lines rejoined into paragraphs).

A bad file (empty, binary, unreadable, unparseable, a PDF without a text layer)
is skipped with exactly one warning on the ``plansearch`` logger naming the file
and the reason; it never raises, so one broken file cannot stop a corpus load.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import lxml.html
from lxml.html import HtmlElement

from indexer.patterns import match_label
from indexer.types import FileHints, LoadedFile, Paragraph

if TYPE_CHECKING:  # heavy parsers are imported only when a .docx/.pdf shows up
    from docx.document import Document as DocxDocument
    from docx.oxml.text.parfmt import CT_PPr
    from docx.text.paragraph import Paragraph as DocxParagraph
    from lxml.etree import _Element

log = logging.getLogger("plansearch")

SUPPORTED_SUFFIXES = (".txt", ".html", ".htm", ".docx", ".pdf")

# Sidecar files next to corpus documents (metadata, not documents).
SIDECAR_SUFFIX = ".meta.json"


class SkipFile(Exception):
    """Raised by a loader to skip a file; the message is the reason logged."""


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def load_file(path: Path, root: Path | None = None) -> LoadedFile | None:
    """Load one file; None (after one warning) if it cannot be used."""
    path = Path(path)
    source = _source_name(path, root)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        return _skip(path, "unsupported type")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _skip(path, f"cannot read: {exc.strerror or exc}")
    if not data.strip():
        return _skip(path, "empty file")
    try:
        paragraphs, hints = loader(data)
    except SkipFile as exc:
        return _skip(path, str(exc))
    except Exception as exc:  # any parser failure means "skip this file"
        return _skip(path, f"cannot read: {type(exc).__name__}: {exc}")
    if not paragraphs:
        return _skip(
            path,
            "empty file" if path.suffix.lower() in (".txt", ".html", ".htm") else "no text",
        )
    return LoadedFile(
        source_file=source,
        paragraphs=tuple(paragraphs),
        content_hash=hashlib.sha256(data).hexdigest(),
        hints=hints,
    )


def load_corpus(corpus_dir: Path) -> list[LoadedFile]:
    """Every supported file under ``corpus_dir`` (recursive, sorted by path).

    Hidden files/directories and ``*.meta.json`` sidecars are ignored; bad
    files are skipped with their warning and the rest still load.
    """
    corpus_dir = Path(corpus_dir)
    loaded: list[LoadedFile] = []
    for path in sorted(corpus_dir.rglob("*")):
        rel = path.relative_to(corpus_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not path.is_file() or path.name.endswith(SIDECAR_SUFFIX):
            continue
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        result = load_file(path, corpus_dir)
        if result is not None:
            loaded.append(result)
    return loaded


def _source_name(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass  # not under root: fall back to the bare name
    return path.name


def _skip(path: Path, reason: str) -> None:
    log.warning("skipped %s: %s", path, reason)


# --------------------------------------------------------------------------
# Bytes -> text
# --------------------------------------------------------------------------

# Longest BOM first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Declared charsets that real pages get wrong: GB18030 is a superset of both.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
}

# C0 control bytes that never occur in text (tab, LF, VT, FF, CR and ESC excluded).
_CONTROL_BYTES = bytes([*range(0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_MAX_CONTROL_RATIO = 0.02


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode document bytes, guessing the encoding; raises SkipFile for binary data.

    Order: BOM, the declared charset (HTML), BOM-less UTF-16, strict UTF-8,
    strict GB18030, then the best lossy guess -- never a UnicodeDecodeError.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    if declared:
        codec = _CHARSET_ALIASES.get(declared.lower(), declared.lower())
        try:
            return data.decode(codec)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong <meta charset> is common; fall back to guessing
    if b"\x00" in data:
        utf16 = _bomless_utf16(data)
        if utf16 is None:
            raise SkipFile("binary content")
        return utf16
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls > _MAX_CONTROL_RATIO * len(data):
        raise SkipFile("binary content")
    return _guess_decode(data)


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM, else None (binary).

    Both byte orders are tried; real text decodes almost entirely to
    plausible characters in one of them, binary data in neither.
    """
    if len(data) % 2:
        return None
    best: tuple[float, str] = (0.0, "")
    for codec in ("utf-16-le", "utf-16-be"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        score = sum(1 for ch in text if _plausible(ch)) / max(len(text), 1)
        best = max(best, (score, text))
    return best[1] if best[0] >= 0.9 else None


def _plausible(ch: str) -> bool:
    """A character that Chinese plan text is made of (ASCII, CJK, CJK punctuation)."""
    code = ord(ch)
    return (
        0x20 <= code < 0x7F
        or ch in "\t\n\r"
        or 0x2000 <= code < 0x2070  # general punctuation: “” … —
        or 0x3000 <= code < 0x3040  # CJK symbols and punctuation: 、。《》
        or 0x3400 <= code < 0xA000  # CJK unified ideographs (+ extension A)
        or 0xFF00 <= code < 0xFFF0  # full-width forms: ，：（）
        or 0x20000 <= code < 0x32000  # CJK extensions B-H
    )


def _guess_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    as_utf8 = data.decode("utf-8", errors="replace")
    bad_utf8 = as_utf8.count("\ufffd")
    good_utf8 = sum(1 for ch in as_utf8 if ord(ch) > 0x7F) - bad_utf8
    # GBK bytes almost never form valid UTF-8; mostly-valid UTF-8 with a few
    # damaged bytes is UTF-8 (GB18030 would "decode" it into mojibake).
    if good_utf8 >= 20 * bad_utf8:
        return as_utf8
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        pass
    as_gb = data.decode("gb18030", errors="replace")
    return as_gb if as_gb.count("\ufffd") < bad_utf8 else as_utf8


# Line separators other than LF, and invisible characters worth dropping.
_LINE_BREAKS = re.compile(r"\r\n|[\r\u2028\u2029\x0b\x0c\x85]")
_INVISIBLE = re.compile(r"[\ufeff\u200b\u200c\u200d\u2060\x00-\x08\x0e-\x1f\x7f]")


# No-break and typographic spaces: scraped pages are full of &nbsp;.
_ODD_SPACES = re.compile(r"[\xa0\u2000-\u200a\u202f\u205f]")


def text_to_paragraphs(text: str) -> list[Paragraph]:
    """One paragraph per non-blank line, surrounding (incl. ideographic) spaces stripped."""
    text = _INVISIBLE.sub("", _LINE_BREAKS.sub("\n", text))
    text = _ODD_SPACES.sub(" ", text)
    return [Paragraph(line.strip()) for line in text.split("\n") if line.strip()]


# --------------------------------------------------------------------------
# .txt
# --------------------------------------------------------------------------


def _load_txt(data: bytes) -> tuple[list[Paragraph], FileHints]:
    return text_to_paragraphs(decode_text(data)), FileHints()


# --------------------------------------------------------------------------
# .html / .htm
# --------------------------------------------------------------------------

# Elements that never hold the article text.
_HTML_DROP_TAGS = (
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "template",
    "svg",
    "canvas",
    "button",
    "select",
    "textarea",
    "object",
)
# class/id words of navigation chrome; substrings safe to match anywhere.
_CHROME_SUBSTRINGS = re.compile(
    r"breadcrumb|crumb|navbar|sidebar|footer|copyright|share|comment|menu|toolbar|pagination|"
    r"recommend|bdshare|navigation|contentinfo|banner|dqwz",  # dqwz: 当前位置 in pinyin initials (gov CMSs)
    re.IGNORECASE,
)
# Short words that would misfire as substrings ("inside", "topic"): whole tokens only.
_CHROME_TOKENS = re.compile(
    r"(?:^|[-_\s])(?:nav|side|foot|bread|position|location|pager|pages|related|links?|top|header)(?:$|[-_\s\d])",
    re.IGNORECASE,
)
_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "td",
        "th",
        "tr",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "caption",
        "section",
        "article",
        "main",
        "blockquote",
        "pre",
        "hr",
        "center",
        "address",
        "figure",
        "figcaption",
    ]
)
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
# Blocks that are one paragraph: their parent is the content container.
_PARAGRAPH_TAGS = frozenset(("p", "li", "dd", "dt", "blockquote", "pre", *_HEADING_TAGS))
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# Chinese sentence punctuation marks prose (navigation and link lists have none).
_PROSE_PUNCT = re.compile(r"[。，；！？、]|(?<=[\u4e00-\u9fff])[,;!?]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# Site suffixes in <title>: "天门市教育局2018年工作要点_天门市人民政府".
_TITLE_SEPARATORS = re.compile(r"\s*(?:[_|｜]|\s-\s|\s—\s|--)\s*")
# Source line breaks between Chinese characters are not word spaces.
_CJK_WRAP = re.compile(r"(?<=[^\x00-\x7f])[ \t\r\n]*\n[ \t\r\n]*(?=[^\x00-\x7f])")
_SPACES = re.compile(r"\s+")


def _load_html(data: bytes) -> tuple[list[Paragraph], FileHints]:
    match = _META_CHARSET.search(data[:4096])
    text = decode_text(data, match.group(1).decode("ascii", "replace") if match else None)
    # lxml refuses str input that still declares an encoding (XHTML prolog).
    text = _XML_DECLARATION.sub("", text, count=1)
    doc = lxml.html.document_fromstring(text)
    title_el = doc.find(".//title")
    page_title = _page_title(title_el.text_content() if title_el is not None else "")
    body = doc.find("body")
    if body is None:
        body = doc
    _strip_chrome(body)
    main = _main_node(body)
    paragraphs = _html_paragraphs(main)
    has_h1 = any(p.heading_level == 1 for p in paragraphs)
    if not has_h1 and page_title:
        # The article title often sits just outside the content block; take
        # it only if it matches <title>, so a logo in <h1> is not a title.
        for h1 in body.iter("h1"):
            h1_text = _squash(h1.text_content())
            if h1_text and (h1_text in page_title or page_title in h1_text):
                paragraphs.insert(0, Paragraph(h1_text, 1))
                has_h1 = True
                break
    hints = FileHints(title=page_title if not has_h1 and page_title else None)
    return paragraphs, hints


def _page_title(raw: str) -> str:
    parts = [p for p in _TITLE_SEPARATORS.split(_squash(raw)) if p.strip()]
    return parts[0].strip() if parts else ""


def _prose(el: HtmlElement) -> int:
    return len(_PROSE_PUNCT.findall(el.text_content()))


def _text_len(el: HtmlElement) -> int:
    return len(_SPACES.sub("", el.text_content()))


def _link_len(el: HtmlElement) -> int:
    return sum(_text_len(a) for a in el.iter("a"))


def _attached(el: HtmlElement, root: HtmlElement) -> bool:
    return any(ancestor is root for ancestor in el.iterancestors())


def _strip_chrome(body: HtmlElement) -> None:
    """Remove scripts, navigation, headers, footers and chrome-looking blocks in place.

    ``drop_tree`` keeps an element's tail text, which belongs to its parent.
    """
    for node in list(body.iter()):
        if not isinstance(node.tag, str):  # comments, processing instructions
            node.drop_tree()
    total = max(_prose(body), 1)
    for el in list(body.iter(*_HTML_DROP_TAGS)):
        if not _attached(el, body):
            continue
        if el.tag in ("header", "footer") and _inside_article(el) and _has_heading(el):
            continue  # <article><header><h1>title</h1></header>: keep the title
        if el.tag == "form" and _prose(el) > 0.5 * total:
            continue  # ASP.NET pages wrap the whole page in one <form>
        el.drop_tree()
    for el in list(body.iter()):
        if el is body or not _attached(el, body):
            continue
        attrs = " ".join((el.get("class") or "", el.get("id") or "", el.get("role") or "")).strip()
        if not attrs:
            continue
        if _CHROME_SUBSTRINGS.search(attrs):
            pass
        elif _CHROME_TOKENS.search(attrs):
            if _inside_article(el) and _has_heading(el):
                continue  # <article><div class="article-header"><h1>: the title block
        else:
            continue
        if _prose(el) > 0.5 * total:
            continue  # a wrapper of the article itself, whatever its class says
        el.drop_tree()


def _inside_article(el: HtmlElement) -> bool:
    return next(el.iterancestors("article", "main"), None) is not None


def _has_heading(el: HtmlElement) -> bool:
    return next(el.iter(*_HEADING_TAGS), None) is not None


def _main_node(body: HtmlElement) -> HtmlElement:
    """<article>/<main>/role=main if it holds most of the prose, else the densest block."""
    total = _prose(body)
    explicit = [el for el in body.iter() if el.tag in ("article", "main") or el.get("role") == "main"]
    if explicit:
        best = max(explicit, key=_prose)
        if total == 0 or _prose(best) >= 0.5 * total:
            return best
    if total == 0:
        return body
    # Score containers by the punctuation of the text they hold directly
    # (readability-style: the grandparent gets half, so wrappers don't win).
    scores: Counter[HtmlElement] = Counter()
    for el in body.iter():
        for owner, text in ((el, el.text), (el.getparent(), el.tail)):
            count = len(_PROSE_PUNCT.findall(text or ""))
            if not count or owner is None:
                continue
            block = owner
            while block is not None and block is not body and block.tag not in _BLOCK_TAGS:
                block = block.getparent()
            if block is None or block is body:
                continue
            container = block.getparent() if block.tag in _PARAGRAPH_TAGS else block
            if container is None:
                continue
            scores[container] += count
            grandparent = container.getparent()
            if grandparent is not None:
                scores[grandparent] += count / 2
    if not scores:
        return body
    best = scores.most_common(1)[0][0]
    # Climb while the parent only adds a little text that is neither prose nor
    # links: the title and date line above the body, not a navigation list.
    base_prose, base_len = _prose(best), _text_len(best)
    allowance = min(400, max(150, 0.25 * base_len))
    while best is not body and best.getparent() is not None:
        parent = best.getparent()
        step = _text_len(parent) - _text_len(best)
        step_links = _link_len(parent) - _link_len(best)
        if _prose(parent) > base_prose + 2 or _text_len(parent) - base_len > allowance or step_links > 0.5 * step:
            break
        best = parent
    return best


def _html_paragraphs(root: HtmlElement) -> list[Paragraph]:
    """Paragraphs from block elements and <br> breaks, in document order."""
    out: list[Paragraph] = []
    buffer: list[str] = []

    def flush(level: int | None = None) -> None:
        text = _squash("".join(buffer))
        buffer.clear()
        if text:
            out.append(Paragraph(text, level))

    def walk(el: HtmlElement) -> None:
        buffer.append(el.text or "")
        for child in el:
            tag = child.tag if isinstance(child.tag, str) else ""
            if tag == "br":
                flush()
            elif tag in _HEADING_TAGS:
                flush()
                walk(child)
                flush(_HEADING_TAGS[tag])
            elif tag == "pre":
                flush()
                for line in child.text_content().splitlines():
                    buffer.append(line)
                    flush()
            elif tag in _BLOCK_TAGS:
                flush()
                walk(child)
                flush()
            elif tag:
                walk(child)
            buffer.append(child.tail or "")  # text after the child belongs to el

    walk(root)
    flush()
    return out


def _squash(text: str) -> str:
    text = _INVISIBLE.sub("", text)
    return _SPACES.sub(" ", _CJK_WRAP.sub("", text)).strip()


# --------------------------------------------------------------------------
# .docx
# --------------------------------------------------------------------------

# Word heading style names, English or as WPS/Chinese Word stores them.
_DOCX_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*([1-9])$", re.IGNORECASE)
_DOCX_TITLE_STYLE = re.compile(r"^(?:title|标题)$", re.IGNORECASE)


def _load_docx(data: bytes) -> tuple[list[Paragraph], FileHints]:
    """Body paragraphs and table cells in order; headers/footers are other parts.

    Heading levels: "Title" -> 1 and "Heading N" -> N (Word's own outline
    level, the same scale as HTML h1-h6), so a document without a Title style
    keeps Heading 1 as its top level.
    """
    import docx

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise SkipFile("cannot read: not a .docx (zip) file")
    document = docx.Document(io.BytesIO(data))
    out: list[Paragraph] = []
    for par in _docx_paragraphs(document.element.body, document):
        level = _docx_heading_level(par)
        lines = [line.strip() for line in _INVISIBLE.sub("", par.text).split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            continue
        if level is not None:
            out.append(Paragraph(" ".join(lines), level))
        else:
            out.extend(Paragraph(line) for line in lines)  # soft line breaks split paragraphs
    return out, FileHints()


def _docx_paragraphs(element: _Element, parent: DocxDocument) -> Iterator[DocxParagraph]:
    """w:p elements in reading order, descending into tables (row by row) and content controls."""
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph as DocxParagraph

    for child in element.iterchildren():
        if child.tag == qn("w:p"):
            yield DocxParagraph(child, parent)
        elif child.tag == qn("w:tbl"):
            for row in child.iterchildren(qn("w:tr")):
                # Iterating w:tc (not row.cells) visits a merged cell once.
                for cell in row.iterchildren(qn("w:tc")):
                    yield from _docx_paragraphs(cell, parent)
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _docx_paragraphs(content, parent)


def _docx_heading_level(par: DocxParagraph) -> int | None:
    from docx.oxml.ns import qn

    style = getattr(par, "style", None)
    depth = 0
    while style is not None and depth < 10:  # follow "based on" to catch custom heading styles
        name = (style.name or "").strip()
        if m := _DOCX_HEADING_STYLE.match(name):
            return int(m.group(1))
        if _DOCX_TITLE_STYLE.match(name):
            return 1
        outline = _outline_level(style.element.find(qn("w:pPr")))
        if outline is not None:
            return outline
        style = style.base_style
        depth += 1
    return _outline_level(par._p.pPr)


def _outline_level(ppr: CT_PPr | _Element | None) -> int | None:
    from docx.oxml.ns import qn

    if ppr is None:
        return None
    node = ppr.find(qn("w:outlineLvl"))
    if node is None:
        return None
    try:
        value = int(node.get(qn("w:val")))
    except (TypeError, ValueError):
        return None
    return value + 1 if 0 <= value < 9 else None  # 9 means "body text"


# --------------------------------------------------------------------------
# .pdf
# --------------------------------------------------------------------------

# Page-number-only lines: "3", "- 3 -", "— 3 —", "第3页", "第 3 页 共 10 页", "3/10", "Page 3 of 10".
_PAGE_NUMBER = re.compile(
    r"^(?:[-—–_·\s]*\d{1,4}[-—–_·\s]*"
    r"|第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?"
    r"|共\s*\d{1,4}\s*页\s*第\s*\d{1,4}\s*页"
    r"|\d{1,4}\s*/\s*\d{1,4}"
    r"|page\s*\d{1,4}(?:\s*of\s*\d{1,4})?)$",
    re.IGNORECASE,
)
# A line ending like this ends a sentence (closing quotes/brackets may follow).
_SENTENCE_FINAL = re.compile(r"[。！？；：!?;:][”’」』)）】]*$")
_ANY_FINAL_PUNCT = re.compile(r"[。！？；：，、,!?;:][”’」』)）】]*$")
# pypdf puts spaces between individually placed CJK glyphs.
_CJK_GAP = re.compile(r"(?<=[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]) (?=[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef])")
_SHORT_LINE = 0.9  # of the typical line width: shorter lines may end a paragraph
_HEADING_LINE = 0.6  # of the typical line width: a short line without punctuation is a heading


def _load_pdf(data: bytes) -> tuple[list[Paragraph], FileHints]:
    from pypdf import PdfReader

    if b"%PDF" not in data[:1024]:
        raise SkipFile("cannot read: not a PDF file")
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            unlocked = reader.decrypt("")
        except Exception as exc:
            raise SkipFile(f"cannot read: encrypted ({exc})") from exc
        if not unlocked:
            raise SkipFile("cannot read: encrypted")
    pages: list[str] = []
    for page in reader.pages:
        try:
            pages.append(page.extract_text() or "")
        except Exception:  # one damaged page must not lose the others
            pages.append("")
    if not any(text.strip() for text in pages):
        raise SkipFile("no text layer")
    return pdf_paragraphs(pages), FileHints()


def pdf_paragraphs(pages: list[str]) -> list[Paragraph]:
    """Rejoin hard-wrapped page lines into paragraphs.

    A new paragraph starts at a blank line, at a line that begins with a
    numbering marker (一、 1. (一) (1) ① 专栏N), after a short heading line
    (no final punctuation), and after a line that ends a sentence (。！？；：)
    while being shorter than the page's typical full line. Page-number lines
    are dropped without breaking a paragraph, which may run on across pages.
    """
    page_lines = [[_CJK_GAP.sub("", line.strip()) for line in _INVISIBLE.sub("", text).splitlines()] for text in pages]
    page_lines = _drop_running_lines(page_lines)
    every = [line for lines in page_lines for line in lines if line and not _PAGE_NUMBER.match(line)]
    doc_typical = _typical_width(every)
    out: list[Paragraph] = []
    current: list[str] = []
    prev: str | None = None
    prev_typical = doc_typical

    def flush() -> None:
        if current:
            out.append(Paragraph(_join_lines(current)))
            current.clear()

    for lines in page_lines:
        body = [line for line in lines if line and not _PAGE_NUMBER.match(line)]
        typical = _typical_width(body) if len(body) >= 5 else doc_typical
        for line in lines:
            if not line:
                flush()
                prev = None
                continue
            if _PAGE_NUMBER.match(line):
                continue  # not a break: paragraphs run on across pages
            if prev is not None and _starts_paragraph(prev, line, prev_typical):
                flush()
            current.append(line)
            prev, prev_typical = line, typical
    flush()
    return out


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _typical_width(lines: list[str]) -> float:
    """The width of a full line: a high percentile, since last lines are short."""
    widths = sorted(_width(line) for line in lines)
    if not widths:
        return 0.0
    return float(widths[int(0.8 * (len(widths) - 1))])


def _is_heading_line(line: str, typical: float) -> bool:
    return _width(line) <= _HEADING_LINE * typical and not _ANY_FINAL_PUNCT.search(line)


def _starts_paragraph(prev: str, line: str, typical: float) -> bool:
    if match_label(line) is not None:
        return True
    if _is_heading_line(prev, typical):
        return True  # a title or unnumbered heading stands alone
    ends_sentence = bool(_SENTENCE_FINAL.search(prev))
    if ends_sentence and _width(prev) < _SHORT_LINE * typical:
        return True
    return ends_sentence and _is_heading_line(line, typical)


def _join_lines(lines: list[str]) -> str:
    text = lines[0]
    for line in lines[1:]:
        # Latin words wrapped across lines need their space back; Chinese doesn't.
        sep = " " if text[-1:].isascii() and text[-1:].isalnum() and line[:1].isascii() and line[:1].isalnum() else ""
        text += sep + line
    return text


def _drop_running_lines(page_lines: list[list[str]]) -> list[list[str]]:
    """Drop running headers/footers: the same first/last line on most pages.

    Digits are masked so "XX规划 3" and "XX规划 4" match; the first page keeps
    its copy, which is often the real title.
    """
    if len(page_lines) < 3:
        return page_lines

    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line)

    def edges(lines: list[str]) -> set[str]:
        body = [line for line in lines if line and not _PAGE_NUMBER.match(line)]
        return {key(line) for line in body[:1] + body[-1:]}

    counts: Counter[str] = Counter(k for lines in page_lines for k in edges(lines))
    running = {k for k, n in counts.items() if n >= max(3, 0.6 * len(page_lines))}
    if not running:
        return page_lines
    result = [page_lines[0]]
    for lines in page_lines[1:]:
        drop = edges(lines) & running
        result.append([line for line in lines if not (line and key(line) in drop)])
    return result


_LOADERS: dict[str, Callable[[bytes], tuple[list[Paragraph], FileHints]]] = {
    ".txt": _load_txt,
    ".html": _load_html,
    ".htm": _load_html,
    ".docx": _load_docx,
    ".pdf": _load_pdf,
}
