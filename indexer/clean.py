"""Clean stage: drop web-portal boilerplate and scraping repeats from a file.

Scraped plan documents arrive wrapped in portal chrome (breadcrumbs, "时间:…
来源:…" bars, metadata tables, QR prompts, copyright/ICP footers, pagination,
"猜你喜欢" headline lists) and often repeat their own opening in damaged
copies. ``clean`` removes both and keeps what the page states about itself
(标 题 / 发布机构 / 来源 / 发布时间) as ``FileHints`` for the structure stage.

Every phrase lives in a named table below; a paragraph is only ever treated
as boilerplate when it is short and not a sentence of prose, so plan text that
happens to mention a phrase survives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import replace

from indexer.patterns import match_label
from indexer.types import FileHints, LoadedFile, Paragraph


def _spaced(word: str) -> str:
    """Regex for a label that portals may print with spaces inside ("索 引 号")."""
    return r"\s*".join(re.escape(ch) for ch in word)


def _any_of(words: Iterable[str]) -> str:
    """Alternation of spaced labels, longest first so "发布时间" wins over "时间"."""
    return "(?:" + "|".join(_spaced(w) for w in sorted(words, key=len, reverse=True)) + ")"


# ---------------------------------------------------------------------------
# Boilerplate tables
# ---------------------------------------------------------------------------

# Longer paragraphs are plan text whatever phrase they contain.
MAX_BOILERPLATE_CHARS = 200

# List bullets portals put before metadata lines ("  • 时间:2023-04-19 11:13").
BULLETS = "•●▪◆◇■□►▶·"
_BULLET = re.compile(rf"^[{BULLETS}]\s*")

# Breadcrumb labels: "当前位置:…>…", "您当前的位置:首页 / …", "位置: 高中网 > 玉泉区 > 正文".
BREADCRUMB_LABELS = (
    "当前位置",
    "您的位置",
    "您当前的位置",
    "您当前位置",
    "您现在的位置",
    "您所在的位置",
    "所在位置",
    "位置",
)
BREADCRUMB = re.compile(rf"^{_any_of(BREADCRUMB_LABELS)}\s*[:：]")
# Steps of a breadcrumb trail are joined by one of these.
BREADCRUMB_SEPARATOR = re.compile(r"[>＞»›→/]")
# A trail without a label: "首页 > 新闻中心 > 正文".
BARE_BREADCRUMB = re.compile(r"^(?:网站首页|首页|主页)\s*[>＞»›→/]")

# QR-code prompts: "扫一扫在手机上查看当前页面", "扫一扫在手机打开当前页".
QR_PROMPTS = ("扫一扫", "扫描二维码", "扫码阅读", "扫码查看", "扫码分享", "扫码关注")
# Copyright and site-operator footers.
COPYRIGHT_PHRASES = (
    "版权所有",
    "Copyright",
    "©",
    "主办单位",
    "承办单位",
    "技术支持",
    "网站地图",
    "联系我们",
    "最佳分辨率",
)
# Registration numbers: ICP licence, public-security filing, government site ID.
REGISTRATION_PHRASES = ("ICP备", "ICP证", "公网安备", "网站标识码", "网站识别码")
# Service-hotline footers: "12345政务服务便民热线【…】".
HOTLINE_PHRASES = ("便民热线", "服务热线", "政务服务热线")

# Previous/next-article links: "上一篇:…", "下一篇:…".
PREV_NEXT_LABELS = ("上一篇", "下一篇", "上一条", "下一条", "上篇", "下篇")
PREV_NEXT = re.compile(rf"^[【\[]?{_any_of(PREV_NEXT_LABELS)}")

# Headings of "more articles" blocks; the unrelated headline list after one
# goes with it (until a paragraph that reads like plan text).
RELATED_MARKERS = (
    "猜你喜欢",
    "推荐图文",
    "最新图文",
    "热门图文",
    "相关阅读",
    "相关文章",
    "相关推荐",
    "相关新闻",
    "相关链接",
    "延伸阅读",
    "推荐阅读",
    "热门文章",
    "热门推荐",
    "热点推荐",
    "精彩推荐",
    "为您推荐",
    "最新文章",
    "大家都在看",
)
RELATED_MARKER = re.compile(rf"^[【\[]?\s*{_any_of(RELATED_MARKERS)}\s*[】\]]?\s*[:：]?$")
# A headline in such a list: short and not a finished sentence.
MAX_HEADLINE_CHARS = 80

# Pagination bars: "上一页 [1] [2] … 下一页", "共6页", "首页 上一页 1 2 下一页 尾页".
PAGINATION = re.compile(
    r"(?:上一页|下一页|前一页|后一页|首页|尾页|末页|跳转|转到|共\s*\d+\s*页|第\s*\d+\s*页"
    r"|当前第?\s*\d+\s*页|\[\s*\d+\s*\]|\d+|[\s\[\]【】/|….<>«»‹›:：])+"
)

# Page tools: "字体: [大][中][小]", "打印本页", "关闭窗口", "分享:" (a line of only these).
PAGE_TOOL_WORDS = (
    "字体",
    "字号",
    "打印本页",
    "打印此页",
    "打印文章",
    "打印",
    "关闭窗口",
    "关闭本页",
    "关闭",
    "分享到",
    "分享",
    "加入收藏",
    "收藏本页",
    "收藏",
    "返回顶部",
)
PAGE_TOOLS = re.compile(rf"(?:{_any_of(PAGE_TOOL_WORDS)}|默认|大|中|小|[\s\[\]【】()（）|·:：])+")
_PAGE_TOOL_WORD = re.compile(_any_of(PAGE_TOOL_WORDS))

# Article metadata fields printed around the text: "时间:… 来源:…", "浏览次数:".
META_FIELDS = (
    "发布时间",
    "发布日期",
    "更新时间",
    "时间",
    "日期",
    "来源",
    "信息来源",
    "文章来源",
    "作者",
    "编辑",
    "责任编辑",
    "发布者",
    "发布人",
    "浏览次数",
    "浏览量",
    "浏览",
    "点击数",
    "点击量",
    "点击",
    "阅读量",
    "阅读次数",
    "访问量",
    "字体",
    "分享",
)
META_LINE = re.compile(rf"^{_any_of(META_FIELDS)}\s*[:：]")
DATE = r"\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}\s*日?"
_NUMERIC_DATE = r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?"
# A bar that starts with a timestamp: "2023/8/9 19:06:20 点击:".
DATED_META_LINE = re.compile(
    rf"^{_NUMERIC_DATE}\s*(?:{_TIME}\s*(?:{_any_of(META_FIELDS)}\s*[:：].*)?"
    rf"|{_any_of(META_FIELDS)}\s*[:：].*)$"
)

# Government-portal metadata tables (信息公开目录):
# "索 引 号 MB1A…/2020-23214 主题分类 其他", "发布机构 天门市教育局 文 号", "标 题: …".
META_TABLE_FIELDS = (
    "索引号",
    "主题分类",
    "发布机构",
    "发文机关",
    "发布单位",
    "成文日期",
    "发文日期",
    "发布日期",
    "生效日期",
    "文号",
    "发文字号",
    "标题",
    "有效性",
    "时效性",
    "公开方式",
    "公开范围",
    "信息分类",
    "组配分类",
    "体裁分类",
    "主题词",
    "信息名称",
)
META_TABLE_LINE = re.compile(rf"^{_any_of(META_TABLE_FIELDS)}(?:\s*[:：]|\s|$)")

# A sentence of prose ends like this; boilerplate lines do not.
_PROSE_END = re.compile(r"[。！？；;!?][”’」』)）]*$")


def _contains(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(p) for p in phrases), re.IGNORECASE)


_QR = _contains(QR_PROMPTS)
_COPYRIGHT = _contains(COPYRIGHT_PHRASES)
_REGISTRATION = _contains(REGISTRATION_PHRASES)
_HOTLINE = _contains(HOTLINE_PHRASES)


def _is_breadcrumb(text: str) -> bool:
    if BARE_BREADCRUMB.match(text):
        return True
    return bool(BREADCRUMB.match(text)) and (bool(BREADCRUMB_SEPARATOR.search(text)) or len(text) <= 40)


def _is_pagination(text: str) -> bool:
    return "页" in text and PAGINATION.fullmatch(text) is not None


def _is_page_tools(text: str) -> bool:
    return _PAGE_TOOL_WORD.search(text) is not None and PAGE_TOOLS.fullmatch(text) is not None


# Boilerplate families in the order they are tested; each gets the bullet-
# stripped text of a short, non-prose paragraph.
BOILERPLATE_FAMILIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("breadcrumb", _is_breadcrumb),
    ("qr_prompt", lambda t: _QR.search(t) is not None),
    ("copyright", lambda t: _COPYRIGHT.search(t) is not None),
    ("registration", lambda t: _REGISTRATION.search(t) is not None),
    ("hotline", lambda t: _HOTLINE.search(t) is not None),
    ("prev_next", lambda t: PREV_NEXT.match(t) is not None),
    ("pagination", _is_pagination),
    ("page_tools", _is_page_tools),
    ("meta", lambda t: META_LINE.match(t) is not None or DATED_META_LINE.match(t) is not None),
    ("meta_table", lambda t: META_TABLE_LINE.match(t) is not None),
)


def boilerplate_kind(text: str) -> str | None:
    """The boilerplate family of one paragraph ("breadcrumb", "meta", …), None for content."""
    bare = _BULLET.sub("", text.strip())
    if not bare or len(bare) > MAX_BOILERPLATE_CHARS or _PROSE_END.search(bare):
        return None
    for name, test in BOILERPLATE_FAMILIES:
        if test(bare):
            return name
    return None


# ---------------------------------------------------------------------------
# Hints
# ---------------------------------------------------------------------------

# Where a field's value stops: at the next label of the bar/table.
_NEXT_FIELD = re.compile(rf"\s+{_any_of(META_FIELDS + META_TABLE_FIELDS)}(?:\s*[:：]|\s*$)")
TITLE_FIELD = re.compile(rf"^{_spaced('标题')}\s*(?:[:：]|\s)\s*(?P<value>.+)$")
ISSUER_FIELD = re.compile(rf"(?:^|\s){_any_of(('发布机构', '发文机关', '发布单位'))}\s*[:：]?\s*(?P<value>.*)$")
SOURCE_FIELD = re.compile(rf"(?:^|\s){_any_of(('来源', '信息来源', '文章来源'))}\s*[:：]\s*(?P<value>.*)$")
DATE_FIELD = re.compile(
    rf"{_any_of(('发布时间', '发布日期', '成文日期', '发文日期', '时间', '日期'))}\s*[:：]\s*(?P<value>{DATE})"
)
_LEADING_DATE = re.compile(rf"^(?P<value>{_NUMERIC_DATE})")
# "Sources" that are websites, not issuing bodies: "以智范文网", "高中网", "本站".
WEBSITE_SOURCE = re.compile(
    r"(?:网|网站|门户|平台|频道|客户端|公众号|微信|微博)$|范文|本站|原创|互联网|www\.|https?:|\.(?:com|cn|net|org)\b",
    re.IGNORECASE,
)


def _field_value(match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    value = match.group("value")
    cut = _NEXT_FIELD.search(value)
    if cut is not None:
        value = value[: cut.start()]
    value = value.strip(" \u3000:：")
    return value or None


def _hints_from(lines: list[str]) -> FileHints:
    """Title, issuer and date stated in removed metadata lines (first one wins)."""
    title = issuer = source = published = None
    for line in lines:
        title = title or _field_value(TITLE_FIELD.match(line))
        issuer = issuer or _field_value(ISSUER_FIELD.search(line))
        found_source = _field_value(SOURCE_FIELD.search(line))
        if source is None and found_source and not WEBSITE_SOURCE.search(found_source):
            source = found_source
        if published is None:
            date = DATE_FIELD.search(line) or _LEADING_DATE.match(line)
            published = date.group("value").strip() if date else None
    return FileHints(title=title, issuer=issuer or source, published=published)


# ---------------------------------------------------------------------------
# Repeats
# ---------------------------------------------------------------------------

# A sentence repeated back to back is a scraping glitch only if it is this long.
MIN_REPEATED_SENTENCE_CHARS = 10
# Verbatim repeats of paragraphs at least this long are dropped anywhere;
# shorter ones (headings) only when within NEARBY paragraphs of the first,
# and very short ones (table cells such as "是", "100%") never.
LONG_PARAGRAPH_CHARS = 30
MIN_DUPLICATE_CHARS = 8
NEARBY = 3
# A paragraph that is a strict prefix of a nearby one is a cut-off copy.
MIN_PREFIX_CHARS = 20
# A teaser copy ending in an ellipsis: "……", "…", "...".
ELLIPSIS = re.compile(r"(?:[…⋯]+|\.{3,}|。{3,})\s*$")
MIN_TRUNCATED_CHARS = 10
_SENTENCE = re.compile(r"[^。！？!?]*[。！？!?]+[”’」』)）]*|[^。！？!?]+$")


def collapse_repeated_sentences(text: str) -> str:
    """Drop a sentence (or a run of up to 3) repeated back to back: S1 S1 S2 -> S1 S2."""
    parts = _SENTENCE.findall(text)
    changed = True
    while changed:
        changed = False
        for size in (1, 2, 3):
            for i in range(len(parts) - 2 * size + 1):
                first, second = parts[i : i + size], parts[i + size : i + 2 * size]
                if first == second and len("".join(first)) >= MIN_REPEATED_SENTENCE_CHARS:
                    del parts[i + size : i + 2 * size]
                    changed = True
                    break
            if changed:
                break
    return "".join(parts)


def _key(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _drop_verbatim_repeats(pars: list[Paragraph]) -> list[Paragraph]:
    seen: set[str] = set()
    kept: list[Paragraph] = []
    for par in pars:
        key = _key(par.text)
        recent = {_key(p.text) for p in kept[-NEARBY:]}
        if len(key) >= MIN_DUPLICATE_CHARS and (key in recent or (len(key) >= LONG_PARAGRAPH_CHARS and key in seen)):
            continue
        seen.add(key)
        kept.append(par)
    return kept


def _drop_truncated_copies(pars: list[Paragraph]) -> list[Paragraph]:
    keys = [_key(p.text) for p in pars]
    kept: list[Paragraph] = []
    for i, par in enumerate(pars):
        m = ELLIPSIS.search(keys[i])
        if m is not None:
            stem = keys[i][: m.start()]
            if len(stem) >= MIN_TRUNCATED_CHARS and any(
                j != i and len(other) > len(stem) and other.startswith(stem) for j, other in enumerate(keys)
            ):
                continue
        kept.append(par)
    return kept


def _drop_prefix_copies(pars: list[Paragraph]) -> list[Paragraph]:
    keys = [_key(p.text) for p in pars]
    kept: list[Paragraph] = []
    for i, par in enumerate(pars):
        key = keys[i]
        window = range(max(0, i - NEARBY), min(len(pars), i + NEARBY + 1))
        if len(key) >= MIN_PREFIX_CHARS and any(
            j != i and len(keys[j]) > len(key) and keys[j].startswith(key) for j in window
        ):
            continue
        kept.append(par)
    return kept


def dedupe(pars: list[Paragraph]) -> list[Paragraph]:
    """Collapse repeats: internal "S1S1", verbatim copies, "…" teasers, cut-off prefixes."""
    collapsed = []
    for par in pars:
        text = collapse_repeated_sentences(par.text)
        collapsed.append(par if text == par.text else Paragraph(text, par.heading_level))
    return _drop_prefix_copies(_drop_truncated_copies(_drop_verbatim_repeats(collapsed)))


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------


def _is_headline(text: str, par: Paragraph) -> bool:
    return (
        len(text) <= MAX_HEADLINE_CHARS
        and not _PROSE_END.search(text)
        and par.heading_level is None
        and match_label(text) is None
    )


def clean(file: LoadedFile) -> LoadedFile:
    """A new LoadedFile without boilerplate and repeats, with page-stated hints filled.

    Hints stated by the page (标 题 / 发布机构 / 来源 / 发布时间) take precedence
    over the loader's guesses (an HTML <title>); missing ones keep the loader's.
    """
    kept: list[Paragraph] = []
    removed: list[str] = []
    in_related = False
    for par in file.paragraphs:
        text = par.text.strip()
        if not text:
            continue
        bare = _BULLET.sub("", text)
        if RELATED_MARKER.match(bare):
            in_related = True
            continue
        if in_related:
            if _is_headline(bare, par):
                continue
            in_related = False
        if boilerplate_kind(bare) is not None:
            removed.append(bare)
            continue
        kept.append(par if text == par.text else Paragraph(text, par.heading_level))
    stated = _hints_from(removed)
    hints = FileHints(
        title=stated.title or file.hints.title,
        issuer=stated.issuer or file.hints.issuer,
        published=stated.published or file.hints.published,
    )
    return replace(file, paragraphs=tuple(dedupe(kept)), hints=hints)
