"""Tests for the structure stage: the seed corpus parsed end to end, the gold labels, synthetic layouts."""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from indexer.build import parse_file
from indexer.config import Settings
from indexer.patterns import label_number
from indexer.structure import DocMeta, read_meta_sidecar, split_documents, structure
from indexer.types import Document, FileHints, Item, LoadedFile, Paragraph, Passage

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"
DEV_SET = Path("/work/shared/eval/dev.jsonl")

F000 = "000_699d69580ee34bfa.txt"
F001 = "001_b5818a88827ebf16.txt"
F002 = "002_ccc843b0910a49b6.txt"
F003 = "003_9ac541179e48cb99.txt"
F004 = "004_a2a3b87c571a2f00.txt"


@cache
def _parsed(name: str) -> tuple[tuple[Document, ...], tuple[Passage, ...]]:
    parsed = parse_file(CORPUS / name, CORPUS, Settings.from_env())
    assert parsed is not None, f"{name} was skipped"
    documents, passages = parsed
    return tuple(documents), tuple(passages)


def _documents(name: str) -> tuple[Document, ...]:
    return _parsed(name)[0]


def _passages(name: str) -> tuple[Passage, ...]:
    return _parsed(name)[1]


def _numbered(document: Document) -> list[Item]:
    """Items that carry an item label and are the item itself (not its sub-points)."""
    return [it for it in document.items if it.item is not None and it.kind in ("item", "lead")]


def _numbers(items: list[Item]) -> list[int | None]:
    return [label_number(it.item) for it in items]


def _section_of(document: Document) -> dict[int, int | None]:
    """Item number -> the number of its section heading."""
    found: dict[int, int | None] = {}
    for it in _numbered(document):
        number = label_number(it.item)
        assert number is not None
        assert number not in found, f"item {number} appears twice in {document.doc_id}"
        found[number] = label_number(it.section)
    return found


def _layout(ranges: dict[int, range]) -> dict[int, int]:
    """Section number -> item numbers under it, inverted to item -> section."""
    return {item: section for section, items in ranges.items() for item in items}


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


# =========================================================================== seed corpus


def test_000_holds_two_documents() -> None:
    docs = _documents(F000)
    assert [d.title for d in docs] == ["2020年某区教育工作要点1", "2020年某区教育工作要点2"]
    assert len({d.doc_id for d in docs}) == 2
    assert all(d.year == 2020 for d in docs)
    # "某区" anonymises: it is not a region.
    assert all(d.region is None for d in docs)


def test_000_first_document_items_and_sections() -> None:
    doc = _documents(F000)[0]
    assert _numbers(_numbered(doc)) == list(range(1, 33))
    expected = _layout(
        {
            1: range(1, 5),
            2: range(5, 15),
            3: range(15, 18),
            4: range(18, 20),
            5: range(20, 25),
            6: range(25, 28),
            7: range(28, 30),
            8: range(30, 33),
        }
    )
    assert _section_of(doc) == expected
    sections = {it.section for it in doc.items if it.section}
    assert "一、完善育人体系,全面提升学生综合素养" in sections
    assert "八、抓好文明城区创建,全面提升教育系统安全文明水平" in sections
    # The text before the first section is the document's preamble.
    assert doc.items[0].kind == "preamble" and doc.items[0].section is None
    assert doc.items[0].text.startswith("2020年是“十三五”规划的收官之年")


def test_000_first_document_continuation_paragraph() -> None:
    doc = _documents(F000)[0]
    item10 = next(it for it in _numbered(doc) if label_number(it.item) == 10)
    lines = item10.text.split("\n")
    assert len(lines) == 2
    assert lines[0].startswith("深化课程与教材、教学与评价改革。")
    assert lines[1].startswith("落实市教委等九部门联合印发的减负增效措施")
    item11 = next(it for it in _numbered(doc) if label_number(it.item) == 11)
    assert item11.text.startswith("加大教育信息化建设力度。")


def test_000_second_document_items_and_glued_item() -> None:
    doc = _documents(F000)[1]
    items = _numbered(doc)
    assert _numbers(items) == list(range(1, 20))
    expected = _layout({1: range(1, 3), 2: range(3, 5), 3: range(5, 12), 4: range(12, 15), 5: range(15, 20)})
    assert _section_of(doc) == expected
    by_number = {label_number(it.item): it for it in items}
    # "…确保教育系统和谐稳定。16.继续推进校园改造工程。…" holds two items.
    assert by_number[15].text.endswith("确保教育系统和谐稳定。")
    assert "16." not in by_number[15].text and "校园改造" not in by_number[15].text
    assert by_number[16].item == "16."
    assert by_number[16].text.startswith("继续推进校园改造工程")
    assert by_number[16].section == by_number[15].section
    assert by_number[17].text.startswith("推进预算绩效管理工作")


def test_000_second_document_continuation_lines() -> None:
    doc = _documents(F000)[1]
    by_number = {label_number(it.item): it for it in _numbered(doc)}
    lines = by_number[9].text.split("\n")
    assert len(lines) == 4
    assert lines[0].startswith("特殊教育优中提质。")
    assert lines[1].startswith("优化整合所公办特殊教育学校")
    assert lines[3].startswith("深化“一生一案”")
    assert by_number[10].text.startswith("民办教育加强监管。")
    assert "探索深化校外培训机构“放管服”改革" in by_number[18].text
    assert "探索深化校外培训机构" not in by_number[19].text


def test_001_items_title_issuer_year() -> None:
    (doc,) = _documents(F001)
    assert doc.title == "天门市教育局2018年工作要点"
    assert doc.issuer == "天门市教育局"
    assert doc.year == 2018
    assert doc.region == "天门市"
    items = _numbered(doc)
    assert _numbers(items) == list(range(1, 28))
    assert all(it.item == f"{n}." for n, it in enumerate(items, start=1))
    assert _section_of(doc) == _layout({1: range(1, 6), 2: range(6, 18), 3: range(18, 20), 4: range(20, 28)})
    # "1. 深入学习…": the space after the label is not part of the text.
    assert items[0].text.startswith("深入学习贯彻习近平新时代中国特色社会主义思想")
    # Portal chrome is not in any item.
    assert not any("扫一扫" in it.text or "版权所有" in it.text for it in doc.items)


def test_002_title_issuer_items_and_box() -> None:
    (doc,) = _documents(F002)
    assert doc.title == "玉泉区教育事业发展“十四五”规划"
    assert doc.issuer == "玉泉区人民政府办公室"
    assert doc.region == "玉泉区"
    items = _numbered(doc)
    assert [it.item for it in items] == ["(十一)", "(十二)", "(十三)"]
    assert _numbers(items) == [11, 12, 13]
    assert all(it.section is None for it in doc.items)
    boxes = [it for it in doc.items if it.kind == "box"]
    assert len(boxes) == 1
    box = boxes[0]
    assert box.item == "专栏8"
    assert box.text.startswith("专栏8:教育信息化建设工程")
    # The box holds its four paragraphs and nothing of the next item.
    assert "实施全员应用能力提升行动" in box.text
    assert "创客创新科技建设活动" in box.text
    assert "全面推进依法治教" not in box.text
    by_label = {it.item: it for it in items}
    assert "完善学生意外伤害法律援助制度" in by_label["(十一)"].text
    assert "提高学校安防体系建设水平" in by_label["(十一)"].text
    assert by_label["(十二)"].text.startswith("深化教育综合改革")
    assert "实施教师区管校聘" in by_label["(十二)"].text
    assert "坚持正确的党建方向" in by_label["(十三)"].text
    # The box comes before (十一) in reading order.
    order = [it.item for it in doc.items if it.item]
    assert order.index("专栏8") < order.index("(十一)")


F003_SUBPOINTS = {
    1: [1, 2, 3, 4],
    2: [1, 2, 3, 4, 5, 6, 7],
    3: [1, 2, 3, 4],
    4: [1, 2, 3, 4],
    5: [1, 2, 3, 4, 5],
    6: [1, 2, 3, 4, 5],
    7: [1, 2, 3, 4, 5, 6],
    8: [1, 2, 3, 4, 5, 6, 7, 8],
    9: [1, 2, 3, 4, 5, 6, 7, 8],
    10: [1, 2, 3, 4],
    11: [1, 2, 4, 5, 6, 7, 8],  # the page lost sub-point 3
    12: [1, 2, 3],
    13: [1, 2, 3, 4],
    14: [1, 2, 3, 4],
    15: [1, 2, 3, 4, 5, 6],
}


def test_003_title_from_meta_sidecar() -> None:
    (doc,) = _documents(F003)
    assert doc.title == "沧州市2020年教育工作要点"
    assert doc.year == 2020
    assert doc.region == "沧州市"


def test_003_items_under_each_section() -> None:
    (doc,) = _documents(F003)
    by_section: dict[int | None, list[int | None]] = {}
    for it in _numbered(doc):
        by_section.setdefault(label_number(it.section), []).append(label_number(it.item))
    assert by_section == {2: list(range(1, 11)), 3: list(range(1, 16)), 4: list(range(1, 6))}
    assert all(it.item and it.item.startswith("(") for it in _numbered(doc))
    # Section 一、 has no numbered items: its text is a preamble.
    first = [it for it in doc.items if label_number(it.section) == 1]
    assert first and all(it.kind == "preamble" for it in first)


def test_003_subpoints_of_section_three() -> None:
    (doc,) = _documents(F003)
    found: dict[int, list[int]] = {}
    for it in doc.items:
        if it.kind != "subitem":
            continue
        assert label_number(it.section) == 3, it
        found.setdefault(label_number(it.item) or 0, []).append(label_number(it.subitem) or 0)
    assert found == F003_SUBPOINTS
    # Items under 二、 and 四、 have no sub-points.
    for it in doc.items:
        if label_number(it.section) in (2, 4):
            assert it.kind == "item" and it.subitem is None


def test_003_leads_and_subpoint_texts() -> None:
    (doc,) = _documents(F003)
    items = [it for it in doc.items if label_number(it.section) == 3 and label_number(it.item) == 1]
    lead, *subs = items
    assert lead.kind == "lead" and lead.subitem is None
    assert lead.text == "全面做好开学前后新冠肺炎疫情防控。"
    assert [s.subitem for s in subs] == ["1.", "2.", "3.", "4."]
    assert subs[0].text.startswith("落实《关于切实做好新冠肺炎疫情防控")
    assert subs[-1].text == "开展爱国卫生运动。"
    # Sub-points carry their item's heading for context, and no label inside their text.
    assert all(s.item_heading == "全面做好开学前后新冠肺炎疫情防控。" for s in subs)
    assert not any(re.match(r"\d+\.", s.text) for s in subs)
    eleven = [it for it in doc.items if label_number(it.section) == 3 and label_number(it.item) == 11]
    by_sub = {label_number(it.subitem): it for it in eleven if it.kind == "subitem"}
    assert by_sub[2].text.endswith("组织参加省第六届竞赛。")
    assert by_sub[4].text.startswith("总结网络学习空间经验")


def test_004_items_issuer_year() -> None:
    (doc,) = _documents(F004)
    assert doc.title == "2023年全县教育工作要点"
    assert doc.issuer == "庄浪县教育局"
    assert doc.year == 2023
    items = _numbered(doc)
    assert _numbers(items) == list(range(1, 46))
    expected = _layout(
        {
            1: range(1, 5),
            2: range(5, 11),
            3: range(11, 13),
            4: range(13, 16),
            5: range(16, 21),
            6: range(21, 30),
            7: range(30, 40),
            8: range(40, 46),
        }
    )
    assert _section_of(doc) == expected


@pytest.mark.parametrize("name", [F000, F001, F002, F003, F004])
def test_units_are_identified_by_their_whole_path(name: str) -> None:
    """Numbering restarts per section (003) and per document (000): the
    unit key and citation of a unit are unique only with the whole path."""
    first_parts = [p for p in _passages(name) if p.part == 0]
    keys = [p.unit_key for p in first_parts]
    assert len(keys) == len(set(keys))
    citations = [(p.citation, p.kind) for p in first_parts]
    assert len(citations) == len(set(citations))


def test_restarting_numbers_differ_by_path() -> None:
    passages = [p for p in _passages(F003) if p.item == "(一)" and p.subitem is None and p.part == 0]
    assert sorted(label_number(p.section) or 0 for p in passages) == [2, 3, 4]
    assert len({p.unit_key for p in passages}) == 3
    docs = [p for p in _passages(F000) if p.item == "1." and p.part == 0]
    assert len(docs) == 2 and docs[0].doc_id != docs[1].doc_id and docs[0].unit_key != docs[1].unit_key


@pytest.mark.parametrize("name", [F000, F001, F002, F003, F004])
def test_passages_cover_every_item(name: str) -> None:
    """No item text is lost between structure and chunk."""
    documents, passages = _parsed(name)
    joined = _norm("".join(p.text for p in passages))
    for doc in documents:
        for it in doc.items:
            for sentence in re.split(r"(?<=[。；;])", it.text):
                if _norm(sentence):
                    assert _norm(sentence) in joined


# =========================================================================== gold labels


def _gold_entries() -> list[tuple[str, dict[str, str | None]]]:
    if not DEV_SET.is_file():
        return []
    entries = []
    for line in DEV_SET.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        for n, gold in enumerate(record["gold"]):
            entries.append((f"{record['id']}-{n}", gold))
    return entries


GOLD = _gold_entries()


def test_dev_set_is_present() -> None:
    if not DEV_SET.is_file():
        pytest.skip(f"{DEV_SET} not available")
    assert len(GOLD) >= 40


@pytest.mark.parametrize(("gold_id", "gold"), GOLD, ids=[g[0] for g in GOLD])
def test_gold_snippet_in_a_passage_with_the_gold_labels(gold_id: str, gold: dict[str, str | None]) -> None:
    snippet = _norm(gold["answer_snippet"] or "")
    assert snippet
    passages = _passages(str(gold["file"]))
    holding = [p for p in passages if snippet in _norm(p.text)]
    assert holding, f"{gold_id}: no passage of {gold['file']} contains {gold['answer_snippet']!r}"

    def labels(section: str | None, item: str | None, subitem: str | None) -> tuple[int | None, ...]:
        # Section by its leading number; "" and None both mean "none".
        return (label_number(section or None), label_number(item or None), label_number(subitem or None))

    want = labels(gold["section"], gold["item"], gold["subitem"])
    # A label that is present must have a number (else None == None would pass vacuously).
    for raw, number in zip((gold["section"], gold["item"], gold["subitem"]), want, strict=True):
        assert (number is None) == (not raw), f"{gold_id}: label {raw!r} has no number"
    got = [labels(p.section, p.item, p.subitem) for p in holding]
    assert want in got, f"{gold_id}: want {want}, passages holding the snippet have {got}"
    if gold.get("doc_title"):
        matching = [p for p in holding if labels(p.section, p.item, p.subitem) == want]
        assert gold["doc_title"] in {p.doc_title for p in matching}


# =========================================================================== synthetic documents


def _file(*texts: str, hints: FileHints | None = None, name: str = "syn.txt") -> LoadedFile:
    return LoadedFile(
        source_file=name,
        paragraphs=tuple(Paragraph(t) for t in texts),
        content_hash="0" * 64,
        hints=hints or FileHints(),
    )


def _rows(document: Document) -> list[tuple[str | None, str | None, str | None, str, str]]:
    return [(it.section, it.item, it.subitem, it.kind, it.text) for it in document.items]


def test_cn_paren_items_with_line_start_subpoints() -> None:
    (doc,) = structure(
        _file(
            "某县2021年教育工作要点",
            "一、总体要求",
            "(一)加强党的建设。全面加强党的领导。",
            "(1)落实主体责任;",
            "(2)加强队伍建设。",
            "继续开展培训。",
            "(二)推进教育改革。",
            "二、保障措施",
            "(一)加大投入。",
        )
    )
    assert doc.title == "某县2021年教育工作要点" and doc.year == 2021
    sec1, sec2 = "一、总体要求", "二、保障措施"
    assert _rows(doc) == [
        (sec1, "(一)", None, "lead", "加强党的建设。全面加强党的领导。"),
        (sec1, "(一)", "(1)", "subitem", "落实主体责任;"),
        # An unnumbered paragraph after a sub-point continues that sub-point.
        (sec1, "(一)", "(2)", "subitem", "加强队伍建设。\n继续开展培训。"),
        (sec1, "(二)", None, "item", "推进教育改革。"),
        (sec2, "(一)", None, "item", "加大投入。"),
    ]
    assert {it.item_heading for it in doc.items if it.kind == "subitem"} == {"加强党的建设。"}


def test_arabic_items_with_circled_inline_subpoints() -> None:
    (doc,) = structure(
        _file(
            "某县2021年教育工作方案",
            "一、主要任务",
            "1.加强党的建设。①落实主体责任;②加强队伍建设;③强化督导检查。",
            "2.推进改革。深化评价改革。",
        )
    )
    sec = "一、主要任务"
    assert _rows(doc) == [
        (sec, "1.", None, "lead", "加强党的建设。"),
        (sec, "1.", "①", "subitem", "落实主体责任;"),
        (sec, "1.", "②", "subitem", "加强队伍建设;"),
        (sec, "1.", "③", "subitem", "强化督导检查。"),
        (sec, "2.", None, "item", "推进改革。深化评价改革。"),
    ]
    assert [label_number(it.subitem) for it in doc.items if it.subitem] == [1, 2, 3]


def test_inline_numbers_that_are_not_a_run_stay_in_the_text() -> None:
    (doc,) = structure(_file("某县2021年教育工作要点", "一、主要任务", "1.推进建设。投资3.5亿元,完成第2、3期工程。"))
    assert _rows(doc) == [("一、主要任务", "1.", None, "item", "推进建设。投资3.5亿元,完成第2、3期工程。")]


def test_box() -> None:
    (doc,) = structure(
        _file(
            "某区教育事业发展规划",
            "(一)推进教育信息化",
            "建设智慧校园。",
            "专栏 3：信息化建设工程",
            "建设专递课堂。",
            "建设智慧学校示范校。",
            "(二)提升治理水平",
            "推进依法治教。",
        )
    )
    assert _rows(doc) == [
        (None, "(一)", None, "item", "推进教育信息化\n建设智慧校园。"),
        (None, "专栏3", None, "box", "专栏 3：信息化建设工程\n建设专递课堂。\n建设智慧学校示范校。"),
        (None, "(二)", None, "item", "提升治理水平\n推进依法治教。"),
    ]


def test_section_heading_with_glued_body() -> None:
    (doc,) = structure(
        _file(
            "某县2022年教育工作要点",
            "一、总体要求。坚持立德树人,办好人民满意的教育。",
            "1.加强党建。",
            "二、主要任务",
            "1.推进改革。",
        )
    )
    assert _rows(doc) == [
        ("一、总体要求。", None, None, "preamble", "坚持立德树人,办好人民满意的教育。"),
        ("一、总体要求。", "1.", None, "item", "加强党建。"),
        ("二、主要任务", "1.", None, "item", "推进改革。"),
    ]


def test_long_numbered_sentence_is_not_a_section_heading() -> None:
    long_sentence = "一、" + "加" * 90 + "。"
    (doc,) = structure(_file("某县2022年教育工作要点", "1.加强党建。", long_sentence))
    assert all(it.section is None for it in doc.items)
    assert doc.items[-1].text == "加强党建。\n" + long_sentence


def test_document_without_numbering_is_one_preamble() -> None:
    (doc,) = structure(_file("全县教育工作取得新成效。", "学校办学条件持续改善。", name="dir/plain.txt"))
    assert doc.doc_id == "plain"
    assert doc.title == "plain"  # nothing better: the file stem
    assert doc.source_file == "dir/plain.txt"
    assert _rows(doc) == [(None, None, None, "preamble", "全县教育工作取得新成效。\n学校办学条件持续改善。")]


def test_document_without_numbering_takes_page_hints() -> None:
    hints = FileHints(title="某县教育工作总结", issuer="某县教育局", published="2021-01-02")
    (doc,) = structure(_file("全县教育工作取得新成效。", hints=hints))
    assert (doc.title, doc.issuer, doc.year) == ("某县教育工作总结", "某县教育局", 2021)
    assert [it.kind for it in doc.items] == ["preamble"]


def test_two_documents_in_one_file() -> None:
    docs = structure(
        _file(
            "示范文两篇教育工作要点",  # page header: a title above a title
            "甲市2020年教育工作要点",
            "一、总体要求",
            "1.加强党建。",
            "乙县2021年教育工作要点",
            "今年的总体要求是办好教育。",
            "一、主要任务",
            "1.推进改革。",
            "2.深化评价。",
        )
    )
    assert [d.doc_id for d in docs] == ["syn-1", "syn-2"]
    assert [d.title for d in docs] == ["甲市2020年教育工作要点", "乙县2021年教育工作要点"]
    assert [d.year for d in docs] == [2020, 2021]
    assert [d.region for d in docs] == ["甲市", "乙县"]
    assert _rows(docs[0]) == [("一、总体要求", "1.", None, "item", "加强党建。")]
    assert _rows(docs[1]) == [
        (None, None, None, "preamble", "今年的总体要求是办好教育。"),
        ("一、主要任务", "1.", None, "item", "推进改革。"),
        ("一、主要任务", "2.", None, "item", "深化评价。"),
    ]


def test_title_like_line_inside_the_numbering_is_not_a_new_document() -> None:
    docs = structure(
        _file(
            "某县2021年教育工作要点",
            "一、主要任务",
            "1.推进学前教育。扩大普惠资源。",
            "学前教育普及普惠行动计划",
            "新建幼儿园10所。",
            "2.推进义务教育。",
        )
    )
    assert len(docs) == 1
    assert [label_number(it.item) for it in docs[0].items] == [1, 2]
    assert "学前教育普及普惠行动计划\n新建幼儿园10所。" in docs[0].items[0].text


def test_split_documents_folds_a_header_without_numbering() -> None:
    split = split_documents(["某县2020年工作要点", "这是一段说明。", "某县2020年教育工作要点", "一、任务", "1.推进。"])
    assert [title for title, _ in split] == ["某县2020年教育工作要点"]
    assert split[0][1] == ["这是一段说明。", "一、任务", "1.推进。"]


def test_meta_overrides_in_structure() -> None:
    docs = structure(
        _file("某县2021年教育工作要点", "一、主要任务", "1.推进改革。"),
        [DocMeta(title="某县2021年教育工作要点(修订)", issuer="某县教育局", year=2022, region="某省某县")],
    )
    (doc,) = docs
    assert doc.title == "某县2021年教育工作要点(修订)"
    assert (doc.issuer, doc.year, doc.region) == ("某县教育局", 2022, "某省某县")


# --------------------------------------------------------------------------- sidecars through parse_file


TWO_DOCS = "\n\n".join(
    [
        "甲市2020年教育工作要点",
        "一、总体要求",
        "1.加强党的建设,全面加强党的领导。",
        "乙县2021年教育工作要点",
        "一、主要任务",
        "1.推进教育改革,深化评价改革。",
    ]
)


def _write(tmp_path: Path, text: str, meta: object | None = None, raw_meta: str | None = None) -> Path:
    path = tmp_path / "plan.txt"
    path.write_text(text, encoding="utf-8")
    sidecar = tmp_path / "plan.txt.meta.json"
    if meta is not None:
        sidecar.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    elif raw_meta is not None:
        sidecar.write_text(raw_meta, encoding="utf-8")
    return path


def _parse(path: Path) -> tuple[list[Document], list[Passage]]:
    parsed = parse_file(path, path.parent, Settings.from_env())
    assert parsed is not None
    return parsed


def test_sidecar_object_overrides_first_document(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "1.推进教育改革。\n2.深化评价改革。\n",
        {"title": "丙市2019年教育工作要点", "issuer": "丙市教育局", "year": 2019, "region": "丙市"},
    )
    documents, passages = _parse(path)
    (doc,) = documents
    assert (doc.title, doc.issuer, doc.year, doc.region) == ("丙市2019年教育工作要点", "丙市教育局", 2019, "丙市")
    assert [label_number(it.item) for it in doc.items] == [1, 2]
    assert all(p.doc_title == "丙市2019年教育工作要点" and p.year == 2019 for p in passages)
    assert passages[0].citation == "《丙市2019年教育工作要点》 第1条"


def test_sidecar_list_form_for_two_documents(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        TWO_DOCS,
        [{"title": "甲市2020年教育工作要点(正式)", "issuer": "甲市教育局"}, {"year": "2022", "region": "乙县"}],
    )
    documents, _ = _parse(path)
    assert [d.title for d in documents] == ["甲市2020年教育工作要点(正式)", "乙县2021年教育工作要点"]
    assert [d.issuer for d in documents] == ["甲市教育局", None]
    assert [d.year for d in documents] == [2020, 2022]
    assert [d.region for d in documents] == ["甲市", "乙县"]


def test_sidecar_shorter_list_leaves_later_documents_alone(tmp_path: Path) -> None:
    path = _write(tmp_path, TWO_DOCS, [{"title": "第一篇"}])
    documents, _ = _parse(path)
    assert [d.title for d in documents] == ["第一篇", "乙县2021年教育工作要点"]


def test_without_sidecar(tmp_path: Path) -> None:
    path = _write(tmp_path, TWO_DOCS)
    assert read_meta_sidecar(path) == []
    documents, _ = _parse(path)
    assert [d.title for d in documents] == ["甲市2020年教育工作要点", "乙县2021年教育工作要点"]


def test_read_meta_sidecar_rejects_bad_json(tmp_path: Path) -> None:
    path = _write(tmp_path, TWO_DOCS, raw_meta="{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_meta_sidecar(path)
    path = _write(tmp_path, TWO_DOCS, meta=["a title"])
    with pytest.raises(ValueError, match="expected an object"):
        read_meta_sidecar(path)


def test_bad_sidecar_is_ignored_by_parse_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, TWO_DOCS, raw_meta="{not json")
    documents, _ = _parse(path)
    assert [d.title for d in documents] == ["甲市2020年教育工作要点", "乙县2021年教育工作要点"]
    assert any("plan.txt" in r.getMessage() for r in caplog.records if r.name == "plansearch")


def test_seed_sidecar_is_read() -> None:
    metas = read_meta_sidecar(CORPUS / F003)
    assert metas == [DocMeta(title="沧州市2020年教育工作要点", issuer=None, year=2020, region="沧州市")]
