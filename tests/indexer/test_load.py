"""Tests for the load stage: every format, every encoding, bad files skipped."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import docx
import pytest
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from indexer.load import SUPPORTED_SUFFIXES, load_corpus, load_file, pdf_paragraphs
from indexer.types import Paragraph

# "𠮷" (U+20BB7) is outside GBK: only GB18030's four-byte range encodes it.
RARE_CHAR = "𠮷"
LINES = [
    "2023年全县教育工作要点",
    "一、坚持“一个统领”,加强党对教育事业的全面领导",
    f"1.深入学习宣传贯彻党的二十大精神。{RARE_CHAR}字也要保留。",
]
TEXT = "\n".join(LINES) + "\n"


def _texts(paragraphs: tuple[Paragraph, ...] | list[Paragraph]) -> list[str]:
    return [p.text for p in paragraphs]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "plansearch" and r.levelno == logging.WARNING]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- .txt


def test_txt_gb18030_with_char_outside_gbk(tmp_path: Path) -> None:
    with pytest.raises(UnicodeEncodeError):
        RARE_CHAR.encode("gbk")
    data = TEXT.encode("gb18030")
    loaded = load_file(_write(tmp_path, "gb.txt", data))
    assert loaded is not None
    assert _texts(loaded.paragraphs) == LINES
    assert loaded.content_hash == hashlib.sha256(data).hexdigest()
    assert loaded.source_file == "gb.txt"


def test_txt_gb2312(tmp_path: Path) -> None:
    text = "天门市教育局2018年工作要点\n一、提高政治站位\n"
    loaded = load_file(_write(tmp_path, "gb2312.txt", text.encode("gb2312")))
    assert loaded is not None
    assert _texts(loaded.paragraphs) == ["天门市教育局2018年工作要点", "一、提高政治站位"]


def test_txt_utf8_bom_crlf_and_indentation(tmp_path: Path) -> None:
    raw = "\ufeff" + "标题\r\n\r\n\u3000\u3000正文第一段。  \r\n\xa0\xa0正文第二段。\r旧式换行。\n"
    loaded = load_file(_write(tmp_path, "bom.txt", raw.encode("utf-8")))
    assert loaded is not None
    assert _texts(loaded.paragraphs) == ["标题", "正文第一段。", "正文第二段。", "旧式换行。"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_txt_utf16_and_utf32(tmp_path: Path, codec: str) -> None:
    # "utf-16"/"utf-32" write a BOM; the -le/-be variants have none.
    loaded = load_file(_write(tmp_path, f"{codec}.txt", TEXT.encode(codec)))
    assert loaded is not None
    assert _texts(loaded.paragraphs) == LINES


def test_txt_undecodable_bytes_do_not_crash(tmp_path: Path) -> None:
    data = "教育工作要点。".encode() + b"\x80\xfe\xc3(" + "第二句完好。\n第二行。".encode()
    loaded = load_file(_write(tmp_path, "broken.txt", data))
    assert loaded is not None
    first, second = _texts(loaded.paragraphs)
    assert first.startswith("教育工作要点。") and first.endswith("第二句完好。")
    assert "\ufffd" in first
    assert second == "第二行。"


def test_txt_gbk_with_damaged_byte_still_decodes_as_chinese(tmp_path: Path) -> None:
    data = "加强党的组织建设。".encode("gbk") + b"\xff" + "严格党的组织生活。".encode("gbk")
    loaded = load_file(_write(tmp_path, "gbk.txt", data))
    assert loaded is not None
    text = loaded.paragraphs[0].text
    assert text.startswith("加强党的组织建设。") and text.endswith("严格党的组织生活。")


# ------------------------------------------------------------- bad files, corpus


def test_load_corpus_skips_bad_files_with_one_warning_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    _write(corpus, "b_good.txt", TEXT.encode())
    _write(corpus, "sub/a_nested.txt", "子目录文件。\n".encode("gb18030"))
    _write(corpus, "empty.txt", b"")
    _write(corpus, "blank.txt", b"  \r\n\t\n")
    _write(corpus, "binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00" + bytes(range(256)))
    _write(corpus, "fake.docx", "不是压缩包".encode())
    _write(corpus, ".hidden.txt", b"")  # hidden: ignored, no warning
    _write(corpus, ".git/objects.txt", b"")  # inside a hidden directory
    _write(corpus, "b_good.meta.json", b"{}")  # sidecar
    _write(corpus, "notes.md", b"")  # unsupported suffix: not a corpus file
    with caplog.at_level(logging.WARNING, logger="plansearch"):
        loaded = load_corpus(corpus)
    assert [f.source_file for f in loaded] == ["b_good.txt", "sub/a_nested.txt"]
    assert _texts(loaded[0].paragraphs) == LINES
    warnings = _warnings(caplog)
    assert len(warnings) == 4
    expected = {
        "empty.txt": "empty file",
        "blank.txt": "empty file",
        "binary.txt": "binary content",
        "fake.docx": "cannot read",
    }
    for name, reason in expected.items():
        (message,) = [w for w in warnings if name in w]
        assert message.startswith("skipped ") and reason in message


def test_load_file_unsupported_and_unreadable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="plansearch"):
        assert load_file(_write(tmp_path, "plan.xyz", b"text")) is None
        assert load_file(tmp_path / "missing.txt") is None
        assert load_file(_write(tmp_path, "dir.txt/inner.txt", b"x").parent) is None  # a directory
    warnings = _warnings(caplog)
    assert len(warnings) == 3
    assert "plan.xyz" in warnings[0] and "unsupported type" in warnings[0]
    assert "missing.txt" in warnings[1] and "cannot read" in warnings[1]
    assert "dir.txt" in warnings[2] and "cannot read" in warnings[2]


def test_source_file_is_relative_to_root(tmp_path: Path) -> None:
    path = _write(tmp_path, "a/b/c.txt", b"x")
    assert load_file(path, tmp_path).source_file == "a/b/c.txt"
    assert load_file(path, tmp_path / "elsewhere").source_file == "c.txt"
    assert load_file(path).source_file == "c.txt"
    assert SUPPORTED_SUFFIXES == (".txt", ".html", ".htm", ".docx", ".pdf")


# --------------------------------------------------------------------------- html

PAGE = """<!DOCTYPE html>
<html><head>
<meta http-equiv="Content-Type" content="text/html; charset=gb2312">
<title>天门市教育局2018年工作要点_天门市人民政府</title>
<style>.c {{ color: red; }} /* 样式，不是正文。 */</style>
<script>var s = "脚本里的文字，不是正文。";</script>
</head><body>
<div class="top"><a href="/">首页</a> | <a href="/en">English</a></div>
<nav><ul><li>首页</li><li>新闻中心</li><li>政务公开</li></ul></nav>
<div class="breadcrumb">当前位置：<a>首页</a> &gt; <a>政务公开</a> &gt; 正文</div>
<div class="wrap">
 <div class="list"><ul><li><a>关于开展某某活动的通知</a></li><li><a>某某局召开工作会议</a></li></ul></div>
 <div class="con">
  <h1>天门市教育局2018年工作要点</h1>
  <div class="info">发布时间：2018-03-01　来源：天门市教育局</div>
  <div class="TRS_Editor">
   <p>　　2018年全市教育工作的总体要求是：深入学习贯彻党的十九大精神，以立德树人为根本任务，
   加快推进教育现代化。</p>
   <h2>一、提高政治站位，切实加强党对教育工作的全面领导</h2>
   <p>1. 深入学习贯彻党的十九大精神。组织多形式、全覆盖的学习培训。</p>
   <p>2. 加强党的组织建设。严格党的组织生活。<br>3. 加强党风廉政建设。严格履行“一岗双责”。</p>
   <h3>（一）专项行动</h3>
   <table><tr><td>项目名称</td><td>目标任务，年底完成。</td></tr></table>
   <!-- 注释，不是正文。 -->
  </div>
 </div>
</div>
<div id="share-box">分享到：微信，微博，QQ空间。</div>
<footer>版权所有：天门市人民政府。主办：天门市人民政府办公室。</footer>
</body></html>
"""

PAGE_PARAGRAPHS = [
    Paragraph("天门市教育局2018年工作要点", 1),
    Paragraph("发布时间：2018-03-01 来源：天门市教育局"),
    Paragraph("2018年全市教育工作的总体要求是：深入学习贯彻党的十九大精神，以立德树人为根本任务，加快推进教育现代化。"),
    Paragraph("一、提高政治站位，切实加强党对教育工作的全面领导", 2),
    Paragraph("1. 深入学习贯彻党的十九大精神。组织多形式、全覆盖的学习培训。"),
    Paragraph("2. 加强党的组织建设。严格党的组织生活。"),
    Paragraph("3. 加强党风廉政建设。严格履行“一岗双责”。"),
    Paragraph("（一）专项行动", 3),
    Paragraph("项目名称"),
    Paragraph("目标任务，年底完成。"),
]


def test_html_keeps_only_main_text_in_order_with_heading_levels(tmp_path: Path) -> None:
    path = _write(tmp_path, "page.html", PAGE.format().encode("gb18030"))
    loaded = load_file(path)
    assert loaded is not None
    assert list(loaded.paragraphs) == PAGE_PARAGRAPHS
    joined = "".join(_texts(loaded.paragraphs))
    for chrome in ("脚本", "样式", "新闻中心", "当前位置", "某某局召开", "分享到", "版权所有", "注释", "English"):
        assert chrome not in joined
    assert loaded.hints.title is None  # the body has its own <h1>


def test_html_article_element_and_title_hint(tmp_path: Path) -> None:
    page = """<html><head><meta charset="utf-8"><title>某区教育工作要点 - 某区教育局</title></head><body>
    <header><div class="logo">某区教育局</div><nav>首页 新闻</nav></header>
    <main><article>
      <p class="meta">时间：2020-01-02 来源：某区教育局</p>
      <p>总体要求。坚持立德树人，深化改革。</p>
      <h2>一、完善育人体系</h2>
      <ul><li>1.推进德育一体化建设。</li><li>2.提升体育水平。</li></ul>
      <div class="share">分享到：微信</div>
      <section class="comment-list"><p>网友评论：写得好，赞。很好，支持。</p></section>
    </article></main>
    <aside>热门文章，推荐。列表，内容。</aside>
    <footer>版权所有 某区</footer></body></html>"""
    loaded = load_file(_write(tmp_path, "a.htm", page.encode()))
    assert loaded is not None
    assert list(loaded.paragraphs) == [
        Paragraph("时间：2020-01-02 来源：某区教育局"),
        Paragraph("总体要求。坚持立德树人，深化改革。"),
        Paragraph("一、完善育人体系", 2),
        Paragraph("1.推进德育一体化建设。"),
        Paragraph("2.提升体育水平。"),
    ]
    # No <h1> anywhere: the <title>, minus the site suffix, becomes the hint.
    assert loaded.hints.title == "某区教育工作要点"


def test_html_without_content_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    page = "<html><head><script>var a = 1;</script></head><body><nav>首页</nav></body></html>"
    with caplog.at_level(logging.WARNING, logger="plansearch"):
        assert load_file(_write(tmp_path, "nav.html", page.encode())) is None
    (message,) = _warnings(caplog)
    assert "nav.html" in message


# --------------------------------------------------------------------------- docx


def _docx_bytes() -> bytes:
    document = docx.Document()
    section = document.sections[0]
    section.header.paragraphs[0].text = "页眉文字不应出现"
    section.footer.paragraphs[0].text = "页脚第1页不应出现"
    document.add_heading("天门市教育局2018年工作要点", level=0)  # "Title" style
    document.add_paragraph("2018年全市教育工作的总体要求是:深入学习贯彻党的十九大精神。")
    document.add_heading("一、提高政治站位", level=1)
    document.add_heading("(一)加强党的建设", level=2)
    document.add_paragraph("1.深入学习贯彻党的十九大精神。")
    document.add_paragraph("")  # empty paragraphs are dropped
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate(table.rows):
        for c, cell in enumerate(row.cells):
            cell.text = f"单元格{r}{c}"
    document.add_paragraph("2.加强党风廉政建设。")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_headings_body_tables_no_header_footer(tmp_path: Path) -> None:
    loaded = load_file(_write(tmp_path, "plan.docx", _docx_bytes()))
    assert loaded is not None
    assert list(loaded.paragraphs) == [
        Paragraph("天门市教育局2018年工作要点", 1),  # Title -> 1
        Paragraph("2018年全市教育工作的总体要求是:深入学习贯彻党的十九大精神。"),
        Paragraph("一、提高政治站位", 1),  # Heading 1 -> 1
        Paragraph("(一)加强党的建设", 2),  # Heading 2 -> 2
        Paragraph("1.深入学习贯彻党的十九大精神。"),
        Paragraph("单元格00"),
        Paragraph("单元格01"),
        Paragraph("单元格10"),
        Paragraph("单元格11"),
        Paragraph("2.加强党风廉政建设。"),
    ]
    joined = "".join(_texts(loaded.paragraphs))
    assert "页眉" not in joined and "页脚" not in joined


# --------------------------------------------------------------------------- pdf

PDF_FONT = "STSong-Light"


def _pdf_bytes(pages: list[list[str]]) -> bytes:
    """A text PDF: one drawString per line, i.e. hard-wrapped like a real PDF."""
    pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    for lines in pages:
        pdf.setFont(PDF_FONT, 12)
        y = 780.0
        for line in lines:
            pdf.drawString(60, y, line)
            y -= 20
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def test_pdf_hard_wrapped_lines_become_paragraphs(tmp_path: Path) -> None:
    page1 = [
        "天门市教育局2018年工作要点",  # short heading line
        "2018年全市教育工作的总体要求是:深入学习贯彻党的十九大",
        "和市第八次党代会精神,以立德树人为根本任务。以高质量发",  # full line: no break
        "展为根本要求,加快推进教育现代化。",  # short + "。": paragraph ends
        "一、提高政治站位,切实加强党的全面领导",  # numbering marker
        "1. 深入学习贯彻党的十九大精神。以学习贯彻习近平新时代中",
        "国特色社会主义思想为主线,组织多形式、全覆盖的学习培训,",
        "深入推进“两学一做”学习教育常态化制度化。",
        "2. 加强党的组织建设。贯彻落实《关于加强中小学校党的建设",
        "- 1 -",  # page number: dropped, paragraph runs on to page 2
    ]
    page2 = [
        "工作的意见》,严格党的组织生活,实现党的组织全覆盖。",
        "(一)专项工作",
        "第2页",
    ]
    loaded = load_file(_write(tmp_path, "plan.pdf", _pdf_bytes([page1, page2])))
    assert loaded is not None
    assert _texts(loaded.paragraphs) == [
        "天门市教育局2018年工作要点",
        "2018年全市教育工作的总体要求是:深入学习贯彻党的十九大和市第八次党代会精神,"
        "以立德树人为根本任务。以高质量发展为根本要求,加快推进教育现代化。",
        "一、提高政治站位,切实加强党的全面领导",
        "1. 深入学习贯彻党的十九大精神。以学习贯彻习近平新时代中国特色社会主义思想为主线,"
        "组织多形式、全覆盖的学习培训,深入推进“两学一做”学习教育常态化制度化。",
        "2. 加强党的组织建设。贯彻落实《关于加强中小学校党的建设工作的意见》,严格党的组织生活,实现党的组织全覆盖。",
        "(一)专项工作",
    ]


def test_pdf_without_text_layer_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.rect(100, 100, 300, 400, fill=1)  # a "scan": drawing only, no text
    pdf.showPage()
    pdf.save()
    with caplog.at_level(logging.WARNING, logger="plansearch"):
        assert load_file(_write(tmp_path, "scan.pdf", buffer.getvalue())) is None
    (message,) = _warnings(caplog)
    assert "scan.pdf" in message and "no text layer" in message


def test_pdf_truncated_file_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _pdf_bytes([["一、总体要求"]])
    with caplog.at_level(logging.WARNING, logger="plansearch"):
        assert load_file(_write(tmp_path, "cut.pdf", data[:200])) is None
    assert len(_warnings(caplog)) == 1


@pytest.mark.parametrize("page_number", ["- 3 -", "— 3 —", "3", "第3页", "第 3 页 共 10 页", "3/10", "Page 3 of 10"])
def test_pdf_page_number_lines_are_dropped(page_number: str) -> None:
    pages = ["1. first item text that wraps over\nthe page break", f"{page_number}\nand ends here.\n2. second item."]
    assert _texts(pdf_paragraphs(pages)) == [
        "1. first item text that wraps over the page break and ends here.",
        "2. second item.",
    ]


def test_pdf_running_header_dropped_after_first_page() -> None:
    header = "玉泉区教育事业发展规划第1页"
    bodies = ["一、总体要求。", "二、主要任务。", "三、重点工程。", "四、保障措施。"]
    pages = [f"{header.replace('1', str(i))}\n{body}" for i, body in enumerate(bodies, 1)]
    assert _texts(pdf_paragraphs(pages)) == [header, *bodies]
