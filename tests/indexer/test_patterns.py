"""Tests for the numbering regex tables: each pattern alone, numerals, inline runs, glued labels."""

from __future__ import annotations

import re

import pytest

from indexer.patterns import (
    ARABIC,
    ARABIC_PAREN,
    BOX,
    CIRCLED,
    CN_PAREN,
    SECTION,
    cn_to_int,
    glued_label,
    inline_runs,
    label_number,
    match_label,
)


def _match(pattern: re.Pattern[str], text: str) -> tuple[str, str] | None:
    m = pattern.match(text)
    return (m.group("label"), m.group("num")) if m else None


# ------------------------------------------------------------------ SECTION


@pytest.mark.parametrize(
    ("text", "label", "num"),
    [
        ("一、完善育人体系,全面提升学生综合素养", "一、", "一"),
        ("十一、加强党的建设", "十一、", "十一"),
        ("二十、其他", "二十、", "二十"),
        ("  三、全力维护校园安全", "三、", "三"),
    ],
)
def test_section_matches(text: str, label: str, num: str) -> None:
    assert _match(SECTION, text) == (label, num)


@pytest.mark.parametrize("text", ["一是加强领导", "第一、二条", "(一)加强党建", "1.深入学习", "要点一、二"])
def test_section_rejects(text: str) -> None:
    assert SECTION.match(text) is None


# ------------------------------------------------------------------ ARABIC


@pytest.mark.parametrize(
    ("text", "label", "num"),
    [
        ("1.深入学习宣传贯彻党的二十大精神。", "1.", "1"),
        ("1、加强党的组织建设", "1、", "1"),
        ("1．全面加强党的建设", "1．", "1"),
        ("1. 深入学习贯彻习近平新时代中国特色社会主义思想", "1.", "1"),
        ("  27. 加强政风行风建设。", "27.", "27"),
        ("45.全县教育质量实现新提升。", "45.", "45"),
        ("16.继续推进校园改造工程。", "16.", "16"),
    ],
)
def test_arabic_matches(text: str, label: str, num: str) -> None:
    assert _match(ARABIC, text) == (label, num)


@pytest.mark.parametrize(
    "text",
    [
        "3.98亿元用于校舍建设",
        "2020.全面推进",
        "2020年是“十三五”规划的收官之年",
        "12345政务服务便民热线",
        "0728-4812345",
        "7.2万平米",
        "深入学习1.",
    ],
)
def test_arabic_rejects(text: str) -> None:
    assert ARABIC.match(text) is None


# ------------------------------------------------------------------ CN_PAREN / ARABIC_PAREN


@pytest.mark.parametrize(
    ("text", "label", "num"),
    [
        ("(一)深入学习习近平新时代中国特色社会主义思想", "(一)", "一"),
        ("（十五）全面加强教育系统党的建设", "（十五）", "十五"),
        ("(十一)提升教育治理水平", "(十一)", "十一"),
        ("（二十三）其他", "（二十三）", "二十三"),
    ],
)
def test_cn_paren_matches(text: str, label: str, num: str) -> None:
    assert _match(CN_PAREN, text) == (label, num)


@pytest.mark.parametrize("text", ["(1)落实", "(含分园)", "(市政府民生实事)", "一、总体要求"])
def test_cn_paren_rejects(text: str) -> None:
    assert CN_PAREN.match(text) is None


@pytest.mark.parametrize(
    ("text", "label", "num"),
    [("(1)落实晨午检制度", "(1)", "1"), ("（12）做好备案管理", "（12）", "12"), ("（3）抓好", "（3）", "3")],
)
def test_arabic_paren_matches(text: str, label: str, num: str) -> None:
    assert _match(ARABIC_PAREN, text) == (label, num)


@pytest.mark.parametrize("text", ["(一)加强", "(2019-2022)", "(2021", "(123)", "1.落实"])
def test_arabic_paren_rejects(text: str) -> None:
    assert ARABIC_PAREN.match(text) is None


# ------------------------------------------------------------------ CIRCLED / BOX


@pytest.mark.parametrize(("text", "num"), [("①加强领导", "①"), ("⑳最后一点", "⑳"), (" ⑤五", "⑤")])
def test_circled_matches(text: str, num: str) -> None:
    assert _match(CIRCLED, text) == (num, num)


def test_circled_rejects_other_text() -> None:
    assert CIRCLED.match("加强领导①") is None
    assert CIRCLED.match("1.加强") is None


@pytest.mark.parametrize(
    ("text", "label", "num"),
    [
        ("专栏8:教育信息化建设工程", "专栏8", "8"),
        ("专栏 12：学前教育提升工程", "专栏 12", "12"),
        ("专栏3 重点项目", "专栏3", "3"),
    ],
)
def test_box_matches(text: str, label: str, num: str) -> None:
    assert _match(BOX, text) == (label, num)


def test_box_rejects_plain_mention() -> None:
    assert BOX.match("详见专栏8") is None
    assert BOX.match("专栏:无编号") is None


def test_match_label_box_label_has_no_space() -> None:
    found = match_label("专栏 12：学前教育提升工程")
    assert found is not None
    assert (found.kind, found.label, found.number) == ("box", "专栏12", 12)


def test_match_label_kinds_and_offsets() -> None:
    found = match_label("  1. 深入学习")
    assert found is not None
    assert (found.kind, found.label, found.number, found.start) == ("arabic", "1.", 1, 2)
    assert "  1. 深入学习"[found.end :].strip() == "深入学习"
    found = match_label("（十一）大力推进教育信息化建设")
    assert found is not None
    assert (found.kind, found.label, found.number) == ("cn_paren", "（十一）", 11)
    assert match_label("（十一）x", kinds=("arabic",)) is None
    assert match_label("推进教育信息化建设") is None


# ------------------------------------------------------------------ numerals


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("一", 1),
        ("二", 2),
        ("九", 9),
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("二十一", 21),
        ("九十九", 99),
        ("一百", 100),
        ("一百零五", 105),
        ("二〇二〇", 2020),
    ],
)
def test_cn_to_int(text: str, value: int) -> None:
    assert cn_to_int(text) == value


@pytest.mark.parametrize("text", ["", "两", "十a", "第一"])
def test_cn_to_int_rejects(text: str) -> None:
    assert cn_to_int(text) is None


@pytest.mark.parametrize(
    ("label", "value"),
    [
        ("(五)", 5),
        ("（五）", 5),
        ("5.", 5),
        ("5、", 5),
        ("(5)", 5),
        ("⑤", 5),
        ("五、", 5),
        ("十一、", 11),
        ("(十一)", 11),
        ("专栏8", 8),
        ("二、深化教育改革,全面提高教育教学质量", 2),
    ],
)
def test_label_number(label: str, value: int) -> None:
    assert label_number(label) == value


@pytest.mark.parametrize("label", [None, "", "导语", "推进教育信息化"])
def test_label_number_none(label: str | None) -> None:
    assert label_number(label) is None


# ------------------------------------------------------------------ inline runs


def _labels(text: str, kind: str) -> list[tuple[str, int]]:
    return [(m.label, m.number) for m in inline_runs(text, kind)]


def test_inline_run_after_sentence_ends() -> None:
    text = "全面做好开学前后疫情防控。1.落实工作预案。2.做好物资储备;3.抓好线上教学。"
    run = inline_runs(text, "arabic")
    assert [(m.label, m.number) for m in run] == [("1.", 1), ("2.", 2), ("3.", 3)]
    # Offsets point at the markers; the body follows ``end``.
    assert text[run[0].start : run[0].end] == "1."
    assert text[run[1].end :].startswith("做好物资储备")


def test_inline_run_at_text_start_and_after_space() -> None:
    assert _labels("1.落实预案。 2.做好储备。", "arabic") == [("1.", 1), ("2.", 2)]


@pytest.mark.parametrize(
    "text",
    [
        "义务教育巩固率增长3.5%,达到97.8%。",
        "按照第2、3条执行。",
        "投入6804万元,实施59所学校、76个项目。",
        "总投资3.98亿元。",
    ],
)
def test_inline_run_ignores_numbers_in_sentences(text: str) -> None:
    assert inline_runs(text, "arabic") == []


def test_inline_run_tolerates_one_missing_number() -> None:
    text = "推进信息化。1.创新方式。2.组织竞赛。4.总结经验。5.落实举措。"
    assert [n for _, n in _labels(text, "arabic")] == [1, 2, 4, 5]


def test_inline_run_does_not_skip_two_numbers() -> None:
    text = "推进信息化。1.创新方式。2.组织竞赛。5.总结经验。"
    assert [n for _, n in _labels(text, "arabic")] == [1, 2]


def test_inline_run_must_start_at_one() -> None:
    assert inline_runs("推进信息化。2.组织竞赛。3.总结经验。", "arabic") == []
    # The first missing number is not tolerated either: the run has not started.
    assert inline_runs("推进信息化。2.组织竞赛。", "arabic") == []


def test_inline_run_first_parameter() -> None:
    assert [n for _, n in _labels("前文。3.第三点。4.第四点。", "arabic")] == []
    run = inline_runs("前文。3.第三点。4.第四点。", "arabic", first=3)
    assert [m.number for m in run] == [3, 4]


def test_inline_run_other_kinds() -> None:
    assert _labels("主要措施如下。①加强领导;②落实责任;③强化督导。", "circled") == [("①", 1), ("②", 2), ("③", 3)]
    assert _labels("主要措施。(1)加强领导;（2）落实责任。", "arabic_paren") == [("(1)", 1), ("（2）", 2)]
    assert inline_runs("见①。", "section") == []  # not an inline kind


# ------------------------------------------------------------------ glued labels


GLUED = "继续做好信访维稳、校车安全等各项工作,确保教育系统和谐稳定。16.继续推进校园改造工程。完成建设工作。"


def test_glued_label_found_for_next_number() -> None:
    found = glued_label(GLUED, "arabic", 16)
    assert found is not None
    assert (found.label, found.number) == ("16.", 16)
    assert GLUED[found.end :].startswith("继续推进校园改造工程")
    assert GLUED[: found.start].endswith("和谐稳定。")


def test_glued_label_not_for_other_numbers() -> None:
    assert glued_label(GLUED, "arabic", 17) is None
    assert glued_label(GLUED, "arabic", 15) is None


def test_glued_label_needs_a_sentence_end() -> None:
    assert glued_label("做好第16.继续推进工作。", "arabic", 16) is None
    assert glued_label("完成16.5万平米改造。", "arabic", 16) is None
    assert glued_label("16.继续推进校园改造工程。", "arabic", 16) is None  # at the start: not glued


def test_glued_label_other_kinds() -> None:
    found = glued_label("加强领导。(二)落实责任。", "cn_paren", 2)
    assert found is None  # cn_paren is never an inline kind
    found = glued_label("加强领导;(2)落实责任。", "arabic_paren", 2)
    assert found is not None and found.label == "(2)"
