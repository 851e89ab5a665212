"""Tests for the chunk stage: one passage per unit, citations, splitting of long items."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest

from indexer.chunk import chunk, citation, heading_path, short_section, split_sentences
from indexer.types import Document, Item, Passage

TITLE = "2023年全县教育工作要点"
SECTION = "二、抓好校园安全保障,营造和谐稳定的教育发展环境"
SHORT = "二、抓好校园安全保障,营造和谐稳定的…"


def _doc(*items: Item, title: str = TITLE) -> Document:
    return Document(
        doc_id="004",
        title=title,
        issuer="庄浪县教育局",
        year=2023,
        region="庄浪县",
        source_file="004.txt",
        items=items,
    )


def _sentence(n: int, length: int, end: str = "。") -> str:
    """A sentence of exactly ``length`` characters, distinct per ``n``."""
    head = f"第{n}句"
    return head + "文" * (length - len(head) - 1) + end


def _strip_overlaps(parts: list[str]) -> str:
    """Concatenate split parts, dropping each part's leading overlap: the
    longest run of whole sentences that ends the previous part."""
    text = parts[0]
    for prev, part in pairwise(parts):
        prev_sentences = [s.strip() for s in split_sentences(prev)]
        part_sentences = [s.strip() for s in split_sentences(part)]
        overlap = 0
        for k in range(min(len(prev_sentences), len(part_sentences)), 0, -1):
            if prev_sentences[-k:] == part_sentences[:k]:
                overlap = len("".join(part_sentences[:k]))
                break
        text += part[overlap:]
    return text


def _nows(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --------------------------------------------------------------------------- one passage per unit


def test_one_passage_per_item_and_subpoint() -> None:
    doc = _doc(
        Item(None, None, None, "2023年是关键一年。", kind="preamble"),
        Item(SECTION, "10.", None, "切实加强学校财务管理。严格落实管理办法。"),
        Item("三、重点工作", "(一)", None, "全面做好疫情防控。", kind="lead"),
        Item("三、重点工作", "(一)", "1.", "落实工作预案。", kind="subitem", item_heading="全面做好疫情防控。"),
        Item("三、重点工作", "(一)", "2.", "做好物资储备。", kind="subitem", item_heading="全面做好疫情防控。"),
    )
    passages = chunk(doc)
    assert [(p.section, p.item, p.subitem, p.kind, p.part) for p in passages] == [
        (None, None, None, "preamble", 0),
        (SECTION, "10.", None, "item", 0),
        ("三、重点工作", "(一)", None, "lead", 0),
        ("三、重点工作", "(一)", "1.", "subitem", 0),
        ("三、重点工作", "(一)", "2.", "subitem", 0),
    ]
    assert [p.text for p in passages] == [it.text for it in doc.items]
    assert len({p.unit_key for p in passages}) == len(passages)
    for p in passages:
        assert (p.doc_id, p.doc_title, p.source_file, p.year, p.region, p.issuer) == (
            "004",
            TITLE,
            "004.txt",
            2023,
            "庄浪县",
            "庄浪县教育局",
        )


def test_empty_items_produce_nothing() -> None:
    doc = _doc(
        Item(SECTION, "1.", None, ""),
        Item(SECTION, "2.", None, "  \n "),
        Item(SECTION, "3.", None, "加强安全教育。"),
    )
    passages = chunk(doc)
    assert [p.item for p in passages] == ["3."]
    assert chunk(_doc()) == []


# --------------------------------------------------------------------------- citations


def test_citation_arabic_item() -> None:
    item = Item(SECTION, "10.", None, "切实加强学校财务管理。")
    assert citation(_doc(), item) == f"《{TITLE}》 {SHORT} 第10条"


def test_citation_subpoint() -> None:
    item = Item("三、重点工作", "(八)", "6.", "健全工资长效联动机制。", kind="subitem")
    assert citation(_doc(), item) == f"《{TITLE}》 三、重点工作 (八) 第6点"
    circled = Item("三、重点工作", "3.", "②", "加强队伍建设。", kind="subitem")
    assert citation(_doc(), circled) == f"《{TITLE}》 三、重点工作 第3条 第2点"
    paren = Item(None, "(一)", "（12）", "做好备案。", kind="subitem")
    assert citation(_doc(), paren) == f"《{TITLE}》 (一) 第12点"


def test_citation_cn_paren_item_without_section() -> None:
    item = Item(None, "(十一)", None, "提升教育治理水平")
    assert citation(_doc(), item) == f"《{TITLE}》 (十一)"


def test_citation_preamble_and_box() -> None:
    assert citation(_doc(), Item(None, None, None, "总体要求。", kind="preamble")) == f"《{TITLE}》 导语"
    assert citation(_doc(), Item("一、总体思路", None, None, "以习近平…为指导。", kind="preamble")) == (
        f"《{TITLE}》 一、总体思路 导语"
    )
    box = Item(None, "专栏8", None, "专栏8:教育信息化建设工程\n实施全员应用能力提升行动。", kind="box")
    assert citation(_doc(), box) == f"《{TITLE}》 专栏8:教育信息化建设工程"


def test_short_section() -> None:
    assert short_section(None) is None
    assert short_section("三、重点工作") == "三、重点工作"
    assert short_section(SECTION) == SHORT
    assert len(short_section(SECTION) or "") == 19


# --------------------------------------------------------------------------- heading path and text


def test_embed_text_starts_with_heading_path_and_text_is_own_text() -> None:
    item = Item(SECTION, "10.", None, "切实加强学校财务管理。")
    (p,) = chunk(_doc(item))
    assert p.text == "切实加强学校财务管理。"
    assert p.embed_text == f"{TITLE} > {SECTION}\n切实加强学校财务管理。"
    assert p.embed_text.startswith(heading_path(_doc(), item))


def test_embed_text_of_subpoint_carries_item_heading() -> None:
    item = Item("三、重点工作", "(一)", "2.", "做好物资储备。", kind="subitem", item_heading="全面做好疫情防控。")
    (p,) = chunk(_doc(item))
    assert p.text == "做好物资储备。"
    assert p.embed_text == f"{TITLE} > 三、重点工作 > (一)全面做好疫情防控。\n做好物资储备。"


def test_embed_text_without_section() -> None:
    (p,) = chunk(_doc(Item(None, None, None, "总体要求。", kind="preamble")))
    assert p.embed_text == f"{TITLE}\n总体要求。"


# --------------------------------------------------------------------------- long items


def test_split_sentences_keeps_paragraph_breaks() -> None:
    assert split_sentences("甲。乙;丙！丁？\n戊。") == ["甲。", "乙;", "丙！", "丁？\n", "戊。\n"]
    assert split_sentences("") == []
    assert "".join(split_sentences("甲。乙\n丙。")).strip() == "甲。乙\n丙。"


def _long_passages(text: str, max_chars: int, overlap: int) -> list[Passage]:
    doc = _doc(Item(SECTION, "7.", None, text))
    return chunk(doc, max_chars=max_chars, overlap_chars=overlap)


def test_long_item_split_at_sentence_boundaries() -> None:
    enders = "。；！？"
    text = "".join(_sentence(n, 40, enders[n % 4]) for n in range(20))  # 800 chars
    parts = _long_passages(text, max_chars=200, overlap=60)
    assert len(parts) > 3
    for p in parts:
        assert len(p.text) <= 200
        assert p.text[-1] in enders  # every part ends at a sentence end
        assert p.text.startswith("第")  # and starts at a sentence start
    assert [p.part for p in parts] == list(range(len(parts)))
    assert len({p.citation for p in parts}) == 1
    assert len({p.unit_key for p in parts}) == 1
    assert parts[0].citation == f"《{TITLE}》 {SHORT} 第7条"
    for p in parts:
        assert p.embed_text == f"{TITLE} > {SECTION}\n{p.text}"
        assert (p.section, p.item, p.subitem, p.kind) == (SECTION, "7.", None, "item")


def test_long_item_parts_overlap_by_last_sentence() -> None:
    text = "".join(_sentence(n, 40) for n in range(20))
    parts = [p.text for p in _long_passages(text, max_chars=200, overlap=60)]
    for prev, part in pairwise(parts):
        last = split_sentences(prev)[-1].strip()
        assert len(last) <= 60
        assert part.startswith(last)
        # Only one 40-char sentence fits a 60-char budget.
        assert not part.startswith(split_sentences(prev)[-2].strip())
    rebuilt = parts[0] + "".join(part[40:] for part in parts[1:])
    assert rebuilt == text


def test_long_item_overlap_of_several_short_sentences() -> None:
    text = "".join(_sentence(n, 15) for n in range(40))
    parts = [p.text for p in _long_passages(text, max_chars=100, overlap=40)]
    for prev, part in pairwise(parts):
        sentences = [s.strip() for s in split_sentences(prev)]
        # Two 15-char sentences fit a 40-char budget, three do not.
        assert part.startswith("".join(sentences[-2:]))
        assert not part.startswith("".join(sentences[-3:]))
        assert len(part) <= 100
    assert _strip_overlaps(parts) == text


def test_no_overlap_when_last_sentence_exceeds_budget() -> None:
    text = "".join(_sentence(n, 80) for n in range(6))
    parts = [p.text for p in _long_passages(text, max_chars=200, overlap=60)]
    assert parts == [text[:160], text[160:320], text[320:]]
    assert "".join(parts) == text


def test_long_item_with_paragraphs_reassembles() -> None:
    paragraphs = ["".join(_sentence(10 * p + n, 30) for n in range(5)) for p in range(4)]
    text = "\n".join(paragraphs)
    parts = [p.text for p in _long_passages(text, max_chars=120, overlap=40)]
    assert all(len(p) <= 120 for p in parts)
    assert all(p == p.strip() and p for p in parts)
    assert _nows(_strip_overlaps(parts)) == _nows(text)


def test_single_over_long_sentence_is_hard_split() -> None:
    text = "甲" * 1000 + "。"
    parts = [p.text for p in _long_passages(text, max_chars=360, overlap=60)]
    assert [len(p) for p in parts] == [360, 360, 281]
    assert "".join(parts) == text
    assert len({p.unit_key for p in _long_passages(text, 360, 60)}) == 1


def test_over_long_sentence_is_cut_at_commas_first() -> None:
    clauses = [f"第{n}分句" + "文" * 45 + "," for n in range(10)]  # 50 chars each
    text = "".join(clauses)[:-1] + "。"
    parts = [p.text for p in _long_passages(text, max_chars=120, overlap=30)]
    assert all(len(p) <= 120 for p in parts)
    assert all(p.endswith((",", "。")) for p in parts)
    assert "".join(parts) == text


def test_over_long_sentence_keeps_order_after_a_short_clause() -> None:
    text = "短句," + "甲" * 800 + "。"
    parts = [p.text for p in _long_passages(text, max_chars=360, overlap=60)]
    assert all(len(p) <= 360 for p in parts)
    assert parts[0].startswith("短句,")
    assert "".join(parts) == text


@pytest.mark.parametrize("after", ["", "\n丙丙。"])
@pytest.mark.parametrize("length", [360, 361, 720, 721])
def test_sentence_of_max_length_before_paragraph_break(length: int, after: str) -> None:
    """A sentence that fills whole parts: the paragraph break after it must
    not make a part of its own (an empty or overlap-only passage)."""
    body = "".join(chr(0x4E00 + i) for i in range(length - 1))  # no punctuation, no repeats
    text = "乙乙。\n" + body + "。" + after
    parts = [p.text for p in _long_passages(text, max_chars=360, overlap=60)]
    assert all(p.strip() for p in parts)
    assert all(len(p) <= 360 for p in parts)
    assert len(parts) == len(set(parts))
    assert _nows("".join(parts)) == _nows(text)


def test_short_item_is_never_split() -> None:
    text = "".join(_sentence(n, 40) for n in range(9))  # 360 chars
    parts = _long_passages(text, max_chars=360, overlap=60)
    assert [p.text for p in parts] == [text]
