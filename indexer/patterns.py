"""Regex tables for Chinese plan-document numbering, in one place.

Plan documents number their parts with a small, fixed vocabulary:

    一、 二、 …            section headings                 SECTION
    1. 1、 1． 1 .         items (Arabic)                   ARABIC
    (一) （一）           items (Chinese numeral in brackets) CN_PAREN
    (1) （1）             sub-points                        ARABIC_PAREN
    ① ② …               sub-points                        CIRCLED
    专栏8:…              boxes                             BOX

Every pattern is anchored at the start of a paragraph; ``inline_runs`` finds
the same markers inside a paragraph, where a run "1.…2.…3.…" follows the end
of a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CN_DIGITS = "零〇一二三四五六七八九"
# 零 and 〇 are both zero, so a digit's value is not its index in CN_DIGITS.
_CN_DIGIT_VALUES = {"零": 0, "〇": 0, **{ch: n for n, ch in enumerate("一二三四五六七八九", start=1)}}
CN_NUMERAL = "[零〇一二三四五六七八九十百]{1,4}"
CIRCLED_NUMBERS = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"

# Sentence-final punctuation: a glued or inline number may only follow these.
SENTENCE_END = "。；;！!？?"

# Named patterns. Each captures the label exactly as written in group "label"
# and the number inside it in group "num".
SECTION = re.compile(rf"^\s*(?P<label>(?P<num>{CN_NUMERAL})\s*[、，,])")
# "1." but not "3.98亿元" or "2020.": at most 3 digits, not followed by a digit.
ARABIC = re.compile(r"^\s*(?P<label>(?P<num>\d{1,3})\s?[.．、](?!\d))")
CN_PAREN = re.compile(rf"^\s*(?P<label>[(（](?P<num>{CN_NUMERAL})[)）])")
ARABIC_PAREN = re.compile(r"^\s*(?P<label>[(（](?P<num>\d{1,2})[)）])")
CIRCLED = re.compile(rf"^\s*(?P<label>(?P<num>[{CIRCLED_NUMBERS}]))")
BOX = re.compile(r"^\s*(?P<label>专栏\s*(?P<num>\d{1,3}))\s*[:：]?")

LABEL_PATTERNS: dict[str, re.Pattern[str]] = {
    "section": SECTION,
    "arabic": ARABIC,
    "cn_paren": CN_PAREN,
    "arabic_paren": ARABIC_PAREN,
    "circled": CIRCLED,
    "box": BOX,
}

# Markers that may start an inline run of sub-points inside a paragraph.
INLINE_KINDS = ("arabic", "arabic_paren", "circled")
_INLINE_PATTERNS: dict[str, re.Pattern[str]] = {
    "arabic": re.compile(r"(?P<label>(?P<num>\d{1,2})[.．、](?!\d))"),
    "arabic_paren": re.compile(r"(?P<label>[(（](?P<num>\d{1,2})[)）])"),
    "circled": re.compile(rf"(?P<label>(?P<num>[{CIRCLED_NUMBERS}]))"),
}


@dataclass(frozen=True)
class Label:
    """A numbering marker found at a position in a paragraph."""

    kind: str  # a key of LABEL_PATTERNS
    label: str  # as written, e.g. "（十一）"
    number: int
    start: int  # offset of the label in the paragraph
    end: int  # offset just after the label (and any separator)


def cn_to_int(text: str) -> int | None:
    """Chinese numeral (一 … 九十九, 百) to int; None if it is not one."""
    if not text:
        return None
    if all(ch in CN_DIGITS for ch in text):  # 二〇二〇-style digit strings
        return int("".join(str(_CN_DIGIT_VALUES[ch]) for ch in text))
    total, current = 0, 0
    for ch in text:
        if ch in CN_DIGITS:
            current = _CN_DIGIT_VALUES[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


def _number(kind: str, raw: str) -> int | None:
    if kind in ("arabic", "arabic_paren", "box"):
        return int(raw)
    if kind == "circled":
        return CIRCLED_NUMBERS.index(raw) + 1
    return cn_to_int(raw)


def match_label(text: str, kinds: tuple[str, ...] | None = None) -> Label | None:
    """The numbering marker at the start of a paragraph, if any."""
    for kind in kinds or tuple(LABEL_PATTERNS):
        m = LABEL_PATTERNS[kind].match(text)
        if m is None:
            continue
        number = _number(kind, m.group("num"))
        if number is None:
            continue
        label = m.group("label")
        if kind == "box":
            label = label.replace(" ", "")
        return Label(kind, label.strip(), number, m.start("label"), m.end())
    return None


def label_number(label: str | None) -> int | None:
    """The number a label stands for, whatever its style: "(五)" and "5." -> 5."""
    if not label:
        return None
    found = match_label(label)
    return found.number if found else None


def inline_runs(text: str, kind: str, first: int = 1) -> list[Label]:
    """Markers of one kind inside ``text`` that count first, first+1, … in order.

    A marker counts only at the start of the text or right after sentence-final
    punctuation (or a space), so "增长3.5%" or "第2、3条" never start a sub-point.
    """
    pattern = _INLINE_PATTERNS.get(kind)
    if pattern is None:
        return []
    found: list[Label] = []
    expected = first
    for m in pattern.finditer(text):
        start = m.start("label")
        if start > 0 and text[start - 1] not in SENTENCE_END and not text[start - 1].isspace():
            continue
        number = _number(kind, m.group("num"))
        # Once a run has started, tolerate one missing number: scraped pages
        # drop sub-points ("…2.…。4.…" in file 003) more often than they invent them.
        if number != expected and not (found and number == expected + 1):
            continue
        found.append(Label(kind, m.group("label"), number, start, m.end()))
        expected = number + 1
    return found


def glued_label(text: str, kind: str, number: int) -> Label | None:
    """A marker for item ``number`` glued after a sentence end inside ``text``.

    Scraped pages lose line breaks, so "…改造任务。16.继续推进…" holds two
    items; only the number that continues the sequence is taken.
    """
    if kind not in _INLINE_PATTERNS:
        return None
    for m in _INLINE_PATTERNS[kind].finditer(text):
        start = m.start("label")
        if start == 0 or text[start - 1] not in SENTENCE_END:
            continue
        if _number(kind, m.group("num")) == number:
            return Label(kind, m.group("label"), number, start, m.end())
    return None
