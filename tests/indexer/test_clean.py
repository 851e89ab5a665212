"""Tests for the clean stage: boilerplate families, hints, repeat rules, seed corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.clean import boilerplate_kind, clean, collapse_repeated_sentences
from indexer.load import load_file
from indexer.patterns import match_label
from indexer.types import FileHints, LoadedFile, Paragraph

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
SEED_FILES = sorted(CORPUS.glob("*.txt"))

BODY_1 = "2018年全市教育工作的总体要求是:深入学习贯彻党的十九大精神,以立德树人为根本任务。"
BODY_2 = "1.深入学习贯彻党的十九大精神。组织多形式、全覆盖的学习培训。"


def _file(*texts: str, hints: FileHints | None = None) -> LoadedFile:
    return LoadedFile(
        source_file="t.txt",
        paragraphs=tuple(Paragraph(t) for t in texts),
        content_hash="0" * 64,
        hints=hints or FileHints(),
    )


def _texts(file: LoadedFile) -> list[str]:
    return [p.text for p in file.paragraphs]


# --------------------------------------------------------------- boilerplate

BOILERPLATE = [
    ("breadcrumb", "当前位置:以智范文网>范文大全 > 主题教育 >"),
    ("breadcrumb", "您当前的位置:首页 / 政府信息公开 / 部门 / 市教育局 / 规划信息"),
    ("breadcrumb", "位置: 高中网 > 玉泉区 > 正文"),
    ("breadcrumb", "您的位置：首页 » 教育动态"),
    ("breadcrumb", "首页 > 新闻中心 > 通知公告"),
    ("qr_prompt", "扫一扫在手机上查看当前页面"),
    ("qr_prompt", "扫一扫在手机打开当前页"),
    ("copyright", "版权所有:天门市人民政府天门市人民政府办公室主管天门市政务服务和大数据管理局主办"),
    ("copyright", "Copyright © 2023 某某区教育局 All Rights Reserved"),
    ("registration", "政府网站标识码:4290060001鄂ICP备05005537号-1鄂公网安备42900602000138号"),
    ("registration", "京ICP备12345678号"),
    ("hotline", "12345政务服务便民热线【12345(市内)、0728-4812345(市外)】"),
    ("prev_next", "上一篇:关于做好2023年春季开学工作的通知"),
    ("prev_next", "下一篇：没有了"),
    ("pagination", "上一页  [1] [2] [3] [4] [5] [6] 下一页"),
    ("pagination", "共6页"),
    ("pagination", "首页 上一页 1 2 3 下一页 尾页"),
    ("page_tools", "字体: [大][中][小]"),
    ("page_tools", "• 字体: [ ] [ ] [ ]"),
    ("page_tools", "【打印本页】【关闭窗口】"),
    ("page_tools", "• 分享:"),
    ("meta", "时间:2022-12-15 13:45:06 来源:以智范文网"),
    ("meta", "发布时间:2018-03-01 00:00"),
    ("meta", "2023/8/9 19:06:20 点击:"),
    ("meta", "• 时间:2023-04-19 11:13"),
    ("meta", "• 浏览次数:"),
    ("meta", "• 来源:庄浪县教育局"),
    ("meta", "阅读量：1024"),
    ("meta_table", "索 引 号 MB1A08302/2020-23214 主题分类 其他"),
    ("meta_table", "发布机构 天门市教育局 文 号"),
    ("meta_table", "标 题: 天门市教育局2018年工作要点"),
]


@pytest.mark.parametrize(("kind", "line"), BOILERPLATE)
def test_each_boilerplate_family_is_removed(kind: str, line: str) -> None:
    assert boilerplate_kind(line) == kind
    assert _texts(clean(_file(BODY_1, line, BODY_2))) == [BODY_1, BODY_2]


CONTENT = [
    "一、指导思想和总体思路",
    "(十一)提升教育治理水平",
    "专栏8:教育信息化建设工程",
    "1.深入学习宣传贯彻党的二十大精神。",
    "2020年某区教育工作要点1",
    "玉泉区人民政府办公室关于印发《玉泉区教育事业发展“十四五”规划(2021",
    "天门市教育局2018年工作要点",
    "2023年全县教育工作要点",
    "推行“扫一扫”亮码入校,做好校园疫情防控。",  # a phrase inside a sentence of prose
    "时间安排:2023年3月至6月,分三个阶段推进。",
    "加强知识产权教育," + "引导师生尊重版权所有者的合法权益," * 8 + "营造良好氛围。",
    "2021年12月30日",  # a signing date is not a page timestamp
]


@pytest.mark.parametrize("line", CONTENT)
def test_content_is_not_boilerplate(line: str) -> None:
    assert boilerplate_kind(line) is None
    assert _texts(clean(_file(line))) == [line]


def test_related_block_and_its_headlines_are_removed() -> None:
    cleaned = clean(
        _file(
            BODY_1,
            "猜你喜欢",
            "推荐图文",
            "周口冒名上大学事件后续:一人等真相一人被调查",
            "矿中高中女子棒球队全国大赛崭露头角",
            "最新图文",
            "建水实验中学一本上线2542人",
        )
    )
    assert _texts(cleaned) == [BODY_1]


def test_related_block_ends_at_plan_text() -> None:
    cleaned = clean(_file(BODY_1, "相关阅读", "某校举行春季运动会", "二、主要任务", BODY_2))
    assert _texts(cleaned) == [BODY_1, "二、主要任务", BODY_2]


# --------------------------------------------------------------------- hints


def test_hints_from_metadata_table() -> None:
    cleaned = clean(
        _file(
            "索 引 号 MB1A08302/2020-23214 主题分类 其他",
            "发布机构 天门市教育局 文 号",
            "标 题: 天门市教育局2018年工作要点",
            "天门市教育局2018年工作要点",
            "发布时间:2018-03-01 00:00",
            BODY_1,
        )
    )
    assert cleaned.hints == FileHints("天门市教育局2018年工作要点", "天门市教育局", "2018-03-01")
    assert _texts(cleaned) == ["天门市教育局2018年工作要点", BODY_1]


def test_title_field_without_colon() -> None:
    assert clean(_file("标 题 玉泉区教育事业发展规划", BODY_1)).hints.title == "玉泉区教育事业发展规划"


def test_website_source_is_not_an_issuer() -> None:
    for line in ("时间:2022-12-15 13:45:06 来源:以智范文网", "来源：范文大全", "来源:中国政府网站"):
        hints = clean(_file(line, BODY_1)).hints
        assert hints.issuer is None, line
    assert clean(_file("时间:2022-12-15 13:45:06 来源:以智范文网")).hints.published == "2022-12-15"


def test_source_line_gives_issuer_and_dated_bar_gives_date() -> None:
    hints = clean(_file("• 时间:2023-04-19 11:13", "• 浏览次数:", "• 来源:庄浪县教育局", BODY_1)).hints
    assert hints == FileHints(None, "庄浪县教育局", "2023-04-19")
    assert clean(_file("2023/8/9 19:06:20 点击:", BODY_1)).hints.published == "2023/8/9"


def test_issuing_body_wins_over_source() -> None:
    hints = clean(_file("来源:市政府办公室", "发布机构:天门市教育局", BODY_1)).hints
    assert hints.issuer == "天门市教育局"


def test_page_hints_override_loader_title_and_keep_the_rest() -> None:
    loaded = FileHints(title="页面标题", issuer="装载器机构", published="2020-01-01")
    assert clean(_file(BODY_1, hints=loaded)).hints == loaded
    stated = clean(_file("标 题: 文件标题", BODY_1, hints=loaded)).hints
    assert stated == FileHints("文件标题", "装载器机构", "2020-01-01")


# ------------------------------------------------------------------- repeats

S1 = "2020年是全面建成小康社会、实现第一个百年奋斗目标的决胜之年。"
S2 = "全市教育系统要科学把握教育改革发展的大势大局,进一步解放思想、转变作风。"


def test_verbatim_repeat_keeps_the_first() -> None:
    assert _texts(clean(_file(BODY_1, BODY_2, "二、主要任务", BODY_1))) == [BODY_1, BODY_2, "二、主要任务"]
    # A repeated title right under itself (004's page) collapses too.
    assert _texts(clean(_file("2023年全县教育工作要点", "2023年全县教育工作要点", BODY_1))) == [
        "2023年全县教育工作要点",
        BODY_1,
    ]


def test_very_short_repeats_such_as_table_cells_are_kept() -> None:
    texts = ["项目", "是", "是", "100%", "100%"]
    assert _texts(clean(_file(*texts))) == texts


def test_short_heading_repeated_far_apart_is_kept() -> None:
    # Two documents in one file may share a heading; only long copies are global.
    texts = ["一、主要任务", BODY_1, "二、保障措施", BODY_2, "要点2", "一、主要任务"]
    assert _texts(clean(_file(*texts))) == texts


def test_sentence_repeated_back_to_back_is_collapsed() -> None:
    assert collapse_repeated_sentences(S1 + S1 + S2) == S1 + S2
    assert collapse_repeated_sentences(S1 + S2 + S1 + S2) == S1 + S2
    assert collapse_repeated_sentences(S1 + S2 + S1) == S1 + S2 + S1  # not back to back
    assert collapse_repeated_sentences("是的。是的。") == "是的。是的。"  # too short to be a glitch
    assert _texts(clean(_file(S1 + S1 + S2))) == [S1 + S2]


@pytest.mark.parametrize("ellipsis", ["...", "…", "……"])
def test_truncated_copy_with_ellipsis_is_dropped(ellipsis: str) -> None:
    full = S1 + S2
    teaser = full[:40] + ellipsis
    assert _texts(clean(_file(teaser, BODY_1, BODY_2, "二、主要任务", full))) == [
        BODY_1,
        BODY_2,
        "二、主要任务",
        full,
    ]


def test_truncated_paragraph_without_a_full_copy_is_kept() -> None:
    teaser = S1 + "全市教育系统要..."
    assert _texts(clean(_file(teaser, BODY_1))) == [teaser, BODY_1]


def test_strict_prefix_of_a_nearby_paragraph_is_dropped() -> None:
    assert _texts(clean(_file(S1, S1 + S2, BODY_1))) == [S1 + S2, BODY_1]
    assert _texts(clean(_file(S1 + S2, S1))) == [S1 + S2]


def test_short_or_distant_prefix_is_kept() -> None:
    heading = "推进智慧校园建设"  # < 20 chars: a heading, not a copy
    assert _texts(clean(_file(heading, heading + "。实施智慧校园建设行动。"))) == [
        heading,
        heading + "。实施智慧校园建设行动。",
    ]
    far = [S1, "一、甲", "二、乙", "三、丙", "四、丁", S1 + S2]
    assert _texts(clean(_file(*far))) == far


def test_damaged_opening_three_times_leaves_one_full_copy() -> None:
    full = S1 + S2 + "努力开创教育事业新局面。"
    damaged = S1 + S1 + S2[:20] + "..."
    assert _texts(clean(_file(damaged, S1, full, "一、指导思想"))) == [full, "一、指导思想"]


def test_clean_is_pure_and_idempotent() -> None:
    original = _file("当前位置:首页 > 正文", BODY_1, BODY_1)
    cleaned = clean(original)
    assert len(original.paragraphs) == 3
    assert clean(cleaned) == cleaned
    assert cleaned.source_file == original.source_file and cleaned.content_hash == original.content_hash


def test_heading_levels_survive() -> None:
    file = LoadedFile("t.html", (Paragraph("一、总体要求", 2), Paragraph(BODY_1)), "0" * 64)
    assert clean(file).paragraphs == file.paragraphs


# ---------------------------------------------------------------- seed files

# Phrases of portal chrome seen in the seed files; none may survive cleaning.
MARKERS = (
    "当前位置",
    "您当前的位置",
    "位置:",
    "扫一扫",
    "版权所有",
    "ICP备",
    "公网安备",
    "网站标识码",
    "便民热线",
    "上一页",
    "下一页",
    "猜你喜欢",
    "推荐图文",
    "最新图文",
    "周口冒名上大学",
    "建水实验中学",
    "浏览次数",
    "点击:",
    "字体:",
    "分享:",
    "索 引 号",
    "主题分类",
    "发布机构",
    "标 题",
    "发布时间",
    "时间:",
    "来源:",
    "•",
)

TITLES = {
    "000": ["2020年某区教育工作要点1", "2020年某区教育工作要点2"],
    "001": ["天门市教育局2018年工作要点"],
    "002": ["玉泉区人民政府办公室关于印发《玉泉区教育事业发展“十四五”规划(2021"],
    "003": [],
    "004": ["2023年全县教育工作要点"],
}

HINTS = {
    "000": FileHints(None, None, "2022-12-15"),
    "001": FileHints("天门市教育局2018年工作要点", "天门市教育局", "2018-03-01"),
    "002": FileHints(None, None, "2023/8/9"),
    "003": FileHints(None, None, None),
    "004": FileHints(None, "庄浪县教育局", "2023-04-19"),
}


def _seed(path: Path) -> tuple[LoadedFile, LoadedFile]:
    loaded = load_file(path, CORPUS)
    assert loaded is not None
    return loaded, clean(loaded)


def test_seed_corpus_is_present() -> None:
    assert [p.name[:3] for p in SEED_FILES] == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name[:3])
def test_seed_file_has_no_boilerplate_left(path: Path) -> None:
    _, cleaned = _seed(path)
    for par in cleaned.paragraphs:
        assert boilerplate_kind(par.text) is None, par.text
        for marker in MARKERS:
            assert marker not in par.text, (marker, par.text)


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name[:3])
def test_seed_file_keeps_titles_and_every_numbered_paragraph(path: Path) -> None:
    loaded, cleaned = _seed(path)
    texts = _texts(cleaned)
    for title in TITLES[path.name[:3]]:
        assert texts.count(title) == 1, title
    numbered = [p.text for p in loaded.paragraphs if match_label(p.text)]
    assert [t for t in texts if match_label(t)] == numbered
    for heading in ("一、指导思想和总体思路", "(十一)提升教育治理水平", "专栏8:教育信息化建设工程"):
        if heading in [p.text for p in loaded.paragraphs]:
            assert heading in texts


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name[:3])
def test_seed_file_hints(path: Path) -> None:
    _, cleaned = _seed(path)
    assert cleaned.hints == HINTS[path.name[:3]]


def test_seed_003_repeated_opening_appears_once() -> None:
    (path,) = [p for p in SEED_FILES if p.name.startswith("003")]
    loaded, cleaned = _seed(path)
    opening = "2020年是全面建成小康社会、实现第一个百年奋斗目标的决胜之年"
    assert sum(p.text.startswith(opening) for p in loaded.paragraphs) == 3
    texts = _texts(cleaned)
    assert "".join(texts).count(opening) == 1
    assert texts[0].startswith(opening)
    assert texts[0].endswith("努力开创教育事业新局面。")
    assert texts[1] == "一、指导思想和总体思路"


def test_seed_004_title_repeated_under_meta_bar_appears_once() -> None:
    (path,) = [p for p in SEED_FILES if p.name.startswith("004")]
    _, cleaned = _seed(path)
    texts = _texts(cleaned)
    assert texts[0] == "2023年全县教育工作要点"
    assert texts.count("2023年全县教育工作要点") == 1
    assert texts[1].startswith("2023年是全面深入学习贯彻落实党的二十大精神的首要之年")


def test_seed_002_ends_before_pagination_and_headline_lists() -> None:
    (path,) = [p for p in SEED_FILES if p.name.startswith("002")]
    _, cleaned = _seed(path)
    assert cleaned.paragraphs[-1].text.endswith("切实抓好教育系统党")
