"""Query handling: normalisation, t2s, stop-phrases, figure questions, language, hostile input."""

from __future__ import annotations

import pytest

from indexer.tokenize import Tokenizer
from search.query import MAX_QUERY_CHARS, STOP_PHRASES, normalize_query, parse_query, strip_stop_phrases


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


# -- normalisation -----------------------------------------------------------


def test_full_width_letters_and_digits_fold() -> None:
    assert normalize_query("ＡＢＣ１２３").lower() == "abc123"
    assert normalize_query("ＡＢＣ１２３") == "ABC123"  # folded by NFKC; case is left to the tokenizer


def test_full_width_query_tokens_are_lower_case_ascii(tokenizer: Tokenizer) -> None:
    query = parse_query("ＡＢＣ１２３", tokenizer)
    assert query.text.lower() == "abc123"
    assert "".join(query.tokens) == "abc123"


def test_full_width_punctuation_and_spaces_fold() -> None:
    assert normalize_query("１＋Ｘ证书\u3000试点") == "1+X证书 试点"


def test_traditional_characters_become_simplified() -> None:
    assert normalize_query("學校有沒有戲曲進校園") == "学校有没有戏曲进校园"


def test_simplified_text_is_unchanged() -> None:
    assert normalize_query("学校有没有戏曲进校园") == "学校有没有戏曲进校园"


def test_control_characters_and_zero_width_marks_are_dropped() -> None:
    assert normalize_query("学\x00校\u200b食\x07堂\ufeff") == "学 校 食 堂"
    assert normalize_query("\x01\x02学校\x1f") == "学校"


def test_whitespace_collapses() -> None:
    assert normalize_query("  学校 \t\n  食堂  ") == "学校 食堂"


# -- stop-phrases ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "phrases", "content"),
    [
        ("请问学前三年毛入园率是多少", ["请问", "是多少"], ["学前三年毛入园率"]),
        ("学校有哪些近视防控措施", ["有哪些", "措施"], ["学校", "近视防控"]),
        ("教研员怎么下校听课", ["怎么"], ["教研员", "下校听课"]),
        ("学校食堂可不可以盈利呢", ["可不可以", "呢"], ["学校食堂", "盈利"]),
    ],
)
def test_stop_phrases_leave_lexical_but_stay_in_text(
    tokenizer: Tokenizer, raw: str, phrases: list[str], content: list[str]
) -> None:
    query = parse_query(raw, tokenizer)
    assert query.text == raw
    for phrase in phrases:
        assert phrase in query.text
        assert phrase not in query.lexical
        assert phrase not in query.tokens
    for word in content:
        assert word in query.lexical


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("职业技能培训", "技能"),
        ("社会实践活动", "社会"),
        ("竟陵读书会", "读书会"),
        ("家长委员会每学期开几次会", "家长委员会"),
        ("人工智能教育", "智能"),
        ("主要任务目标", "主要"),
        ("几何课程", "几何"),
    ],
)
def test_single_character_stop_phrases_inside_words_stay(tokenizer: Tokenizer, raw: str, word: str) -> None:
    query = parse_query(raw, tokenizer)
    assert word in query.lexical
    assert word in query.tokens


@pytest.mark.parametrize(
    ("raw", "lexical"),
    [
        ("区里的成人学校能提供吗", "区里的成人学校 提供"),
        ("学校会组织学生研学吗", "学校 组织学生研学"),
        ("冰雪运动特色校要建几所", "冰雪运动特色校 建"),
        ("家长委员会每学期开几次会", "家长委员会每学期开"),
    ],
)
def test_single_character_stop_phrases_as_words_go(tokenizer: Tokenizer, raw: str, lexical: str) -> None:
    assert parse_query(raw, tokenizer).lexical == lexical


def test_longest_stop_phrase_goes_first() -> None:
    # 是多少 before 多少: nothing of the phrase is left behind.
    assert strip_stop_phrases("毛入园率是多少") == "毛入园率"
    assert STOP_PHRASES.index("是多少") < STOP_PHRASES.index("多少")
    assert [len(p) for p in STOP_PHRASES] == sorted((len(p) for p in STOP_PHRASES), reverse=True)


def test_english_queries_keep_every_word_for_lexical(tokenizer: Tokenizer) -> None:
    query = parse_query("What measures are there", tokenizer)
    assert query.lexical == query.text == "What measures are there"
    assert "measures" in query.tokens


def test_question_of_only_stop_phrases_has_no_lexical_tokens(tokenizer: Tokenizer) -> None:
    query = parse_query("请问有哪些规定吗", tokenizer)
    assert not query.empty
    assert query.lexical == ""
    assert query.tokens == ()


# -- figure questions and language ------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "天门市计划补充多少名教师",
        "家长委员会每学期开几次会",
        "督学多久换一届",
        "高中阶段毛入学率的比例是",
        "冰雪运动特色校要建几所",
        "How many new teachers will be hired?",
        "how much money is invested",
    ],
)
def test_asks_figure(tokenizer: Tokenizer, raw: str) -> None:
    assert parse_query(raw, tokenizer).asks_figure


@pytest.mark.parametrize("raw", ["竟陵读书会", "学校有没有请律师做常年顾问", "school toilet renovation", ""])
def test_does_not_ask_figure(tokenizer: Tokenizer, raw: str) -> None:
    assert not parse_query(raw, tokenizer).asks_figure


@pytest.mark.parametrize(
    ("raw", "english"),
    [
        ("How do I renew my passport?", True),
        ("ＳＣＨＯＯＬ ｂｕｓ", True),
        ("school 食堂", False),
        ("学校食堂", False),
        ("2023", False),
        ("", False),
    ],
)
def test_is_english(tokenizer: Tokenizer, raw: str, english: bool) -> None:
    assert parse_query(raw, tokenizer).is_english is english


# -- hostile input ------------------------------------------------------------------


HOSTILE = [
    r".*[(\\?+{}|^$",
    "学校(食堂)?[a-z]+$",
    "<script>alert('x')</script>学校",
    "<b>学校</b>&amp;&lt;食堂&gt;",
    "\x00\x01\x02学校\x7f\x9f",
    "\ud800",
    "学校\udfff食堂",
    "'; DROP TABLE passages; --",
    "\u202e\u200d学校",
    "😀🏫📚",
    "学" * 10_000,
    "x " * 10_000,
]


@pytest.mark.parametrize("raw", HOSTILE, ids=lambda raw: repr(raw[:16]))
def test_hostile_input_never_raises_and_stays_sane(tokenizer: Tokenizer, raw: str) -> None:
    query = parse_query(raw, tokenizer)
    assert query.raw == raw
    assert len(query.text) <= MAX_QUERY_CHARS
    assert query.text == query.text.strip()
    assert "  " not in query.text
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in query.text)  # no lone surrogates survive
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in query.text)
    query.text.encode("utf-8")  # encodable, i.e. valid text for every later stage
    assert all(token for token in query.tokens)


def test_lone_surrogate_becomes_a_placeholder(tokenizer: Tokenizer) -> None:
    query = parse_query("学校\ud800食堂", tokenizer)
    assert query.text == "学校?食堂"


def test_ten_thousand_characters_are_capped(tokenizer: Tokenizer) -> None:
    query = parse_query("学校" * 5_000, tokenizer)
    assert len(query.text) == MAX_QUERY_CHARS
    assert query.text == "学校" * (MAX_QUERY_CHARS // 2)


def test_html_is_text_not_markup(tokenizer: Tokenizer) -> None:
    query = parse_query("<b>食堂</b>", tokenizer)
    assert "食堂" in query.tokens


@pytest.mark.parametrize("raw", ["", " ", "\t\n  \u3000", "\x00\x01", "\u200b\ufeff"])
def test_empty_and_whitespace_only_are_empty_queries(tokenizer: Tokenizer, raw: str) -> None:
    query = parse_query(raw, tokenizer)
    assert query.empty
    assert query.text == ""
    assert query.lexical == ""
    assert query.tokens == ()
    assert not query.asks_figure
    assert not query.is_english
