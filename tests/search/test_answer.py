"""Answer stage: clauses, coverage, quantity spans and the answering sentence (synthetic texts)."""

from __future__ import annotations

import pytest

from indexer.tokenize import Tokenizer
from indexer.types import Passage
from search.answer import ANSWER_MAX_CHARS, AnswerFinder, clauses, quantity_span
from search.query import Query, parse_query
from search.types import Hit


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def q(text: str, tokenizer: Tokenizer) -> Query:
    return parse_query(text, tokenizer)


def make_hit(text: str, row: int = 0) -> Hit:
    passage = Passage(
        doc_id="doc",
        doc_title="测试文件",
        source_file="test.txt",
        year=2024,
        region=None,
        issuer=None,
        section="一、测试",
        item=f"{row + 1}.",
        subitem=None,
        citation=f"《测试文件》 第{row + 1}条",
        text=text,
        embed_text=text,
        unit_key=f"doc|{row}",
    )
    return Hit(row=row, passage=passage, score=1.0 - 0.1 * row)


# -- clauses -------------------------------------------------------------------------


def test_clauses_split_at_sentence_and_clause_ends() -> None:
    text = "第一句。第二句；第三句！第四句？\n第五句"
    spans = clauses(text)
    assert [text[s:e] for s, e in spans] == ["第一句。", "第二句；", "第三句！", "第四句？", "第五句"]
    assert spans == [(0, 4), (4, 8), (8, 12), (12, 16), (17, 20)]


def test_clauses_split_at_ascii_ends_and_skip_blank_pieces() -> None:
    text = "甲方;乙方!丙方?\n\n  \n丁方。"
    assert [text[s:e] for s, e in clauses(text)] == ["甲方;", "乙方!", "丙方?", "丁方。"]


def test_clauses_keep_commas_inside() -> None:
    text = "加强安全,落实责任,确保稳定。"
    assert clauses(text) == [(0, len(text))]
    assert clauses("") == []


# -- quantity spans --------------------------------------------------------------


def test_percentage_with_qualifier(tokenizer: Tokenizer) -> None:
    sentence = "到2025年,学前三年毛入园率达到91%以上,九年义务教育巩固率达到96%。"
    assert quantity_span(sentence, q("学前三年毛入园率要达到多少", tokenizer)) == "91%以上"


def test_percentage_wanted_over_nearer_count(tokenizer: Tokenizer) -> None:
    sentence = "全市新建示范校12所,示范校达标比例不低于85%。"
    assert quantity_span(sentence, q("示范校达标的比例是多少", tokenizer)) == "不低于85%"


def test_money_question_prefers_money_units(tokenizer: Tokenizer) -> None:
    sentence = "新建学校5所,新增学位3600个,总投入资金2.5亿元,其中省级补助3000万元。"
    assert quantity_span(sentence, q("新建学校投入多少资金", tokenizer)) == "2.5亿元"


def test_people_question_prefers_people_units(tokenizer: Tokenizer) -> None:
    sentence = "今年分3批招聘教师,共补充教师600名,培训校长80期。"
    assert quantity_span(sentence, q("今年要补充多少名教师", tokenizer)) == "600名"


def test_frequency_question_prefers_times(tokenizer: Tokenizer) -> None:
    sentence = "全年组织3次督导检查,覆盖学校20所。"
    assert quantity_span(sentence, q("督导检查要组织几次", tokenizer)) == "3次"


def test_duration_question_prefers_the_longer_enclosing_span(tokenizer: Tokenizer) -> None:
    sentence = "责任区督学实行聘任制,三年一轮,经考核合格可以续聘。"
    assert quantity_span(sentence, q("责任区督学多久换一批", tokenizer)) == "三年一轮"


def test_enclosing_span_beats_its_parts(tokenizer: Tokenizer) -> None:
    sentence = "学区化集团化办学每三年评估一次。"
    span = quantity_span(sentence, q("集团化办学多长时间评估", tokenizer))
    assert span == "三年评估一次"


def test_spans_the_question_names_are_not_answers(tokenizer: Tokenizer) -> None:
    sentence = "新建幼儿园工程于2023年开工,共建成幼儿园4所。"
    assert quantity_span(sentence, q("2023年新建幼儿园的目标是多少", tokenizer)) == "4所"


def test_question_phrase_with_a_number_is_not_the_answer(tokenizer: Tokenizer) -> None:
    sentence = "普及学前三年教育,学前三年毛入园率达到88%。"
    assert quantity_span(sentence, q("学前三年毛入园率的目标", tokenizer)) == "88%"


def test_nearest_after_the_question_terms_without_a_unit_hint(tokenizer: Tokenizer) -> None:
    sentence = "改造校舍2万平方米,新增图书12万册,建设录播教室30间。"
    assert quantity_span(sentence, q("录播教室的建设目标", tokenizer)) == "30间"


@pytest.mark.parametrize(("question", "wanted"), [("特殊教育学校新建几所", "3所"), ("公办幼儿园新建几所", "8所")])
def test_count_written_before_the_thing_it_counts(tokenizer: Tokenizer, question: str, wanted: str) -> None:
    sentence = "今年新建8所公办幼儿园和3所特殊教育学校。"
    assert quantity_span(sentence, q(question, tokenizer)) == wanted


@pytest.mark.parametrize(
    ("question", "wanted"),
    [("新建校舍面积多少", "3.5万平米"), ("投入资金多少", "1.2亿元"), ("培训教师多少人次", "1.5万人次")],
)
def test_digits_with_a_multiplier(tokenizer: Tokenizer, question: str, wanted: str) -> None:
    sentence = "新建校舍面积3.5万平米,投入资金1.2亿元,培训教师1.5万人次。"
    assert quantity_span(sentence, q(question, tokenizer)) == wanted


def test_no_quantity_no_span(tokenizer: Tokenizer) -> None:
    assert quantity_span("全面加强党对教育工作的领导。", q("党的领导有多少", tokenizer)) is None
    assert quantity_span("", q("多少", tokenizer)) is None


def test_deadline_is_a_span(tokenizer: Tokenizer) -> None:
    sentence = "全部完成校舍抗震加固,时间节点为2026年6月底。"
    assert quantity_span(sentence, q("校舍抗震加固什么时候完成", tokenizer)) == "2026年6月底"


# -- the answering sentence ---------------------------------------------------------


@pytest.fixture
def finder() -> AnswerFinder:
    return AnswerFinder({})


def test_coverage_counts_the_question_in_the_sentence(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    query = q("安全巡检点要建多少个", tokenizer)
    covering = finder.coverage(query, "实现安全巡检点不少于2000个。")
    assert covering > 0.6
    assert finder.coverage(query, "加强教师队伍建设。") < 0.2 < covering
    assert finder.coverage(query, "安全巡检点要建多少个") == pytest.approx(1.0)
    assert finder.coverage(q("", tokenizer), "加强教师队伍建设。") == 0.0


def test_best_sentence_and_short_answer(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    text = "加强校园安全管理。建设安全大数据平台，实现安全巡检点不少于2000个，月巡检次数不低于5000次。开展安全教育。"
    query = q("安全巡检点要建多少个", tokenizer)
    answer = finder.best(query, [make_hit(text)], confidence=0.9)
    assert answer is not None
    assert "安全巡检点不少于2000个" in answer.text
    assert answer.short_answer == "不少于2000个"
    assert answer.confidence == 0.9
    assert text[answer.start : answer.end] == answer.text


def test_answer_offsets_survive_leading_whitespace(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    text = "第一句话。  \u3000安全巡检点不少于2000个。\n  每年组织培训3次。"
    hit = make_hit(text)
    for query_text in ["安全巡检点要建多少个", "每年组织培训几次"]:
        answer = finder.best(q(query_text, tokenizer), [hit], confidence=1.0)
        assert answer is not None
        assert text[answer.start : answer.end] == answer.text, query_text


def test_answer_from_a_lower_passage_when_it_covers_the_question(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    hits = [make_hit("加强学校体育工作。开展阳光体育运动。", 0), make_hit("建设冰雪运动特色校4所。", 1)]
    answer = finder.best(q("冰雪运动特色校建几所", tokenizer), hits, confidence=1.0)
    assert answer is not None
    assert answer.hit.row == 1
    assert answer.short_answer == "4所"


def test_short_answer_only_for_figure_questions(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    answer = finder.best(q("冰雪运动特色校建设", tokenizer), [make_hit("建设冰雪运动特色校4所。")], confidence=1.0)
    assert answer is not None
    assert answer.short_answer is None


def test_no_hits_no_answer(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    assert finder.best(q("冰雪运动特色校建几所", tokenizer), [], confidence=1.0) is None
    assert finder.best(q("冰雪运动特色校建几所", tokenizer), [make_hit("。；")], confidence=1.0) is None


def test_long_sentence_window_stays_short_and_keeps_the_answer(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    filler = ",".join(f"推进第{n}项常规工作落实到位" for n in range(1, 13))
    text = f"{filler},实现校园安全巡检点不少于2000个,月巡检次数不低于5000次,{filler}。"
    assert len(text) > 2 * ANSWER_MAX_CHARS
    answer = finder.best(q("校园安全巡检点要建多少个", tokenizer), [make_hit(text)], confidence=1.0)
    assert answer is not None
    assert len(answer.text) <= ANSWER_MAX_CHARS
    assert "安全巡检点不少于2000个" in answer.text
    assert answer.short_answer == "不少于2000个"
    assert text[answer.start : answer.end] == answer.text


def test_long_sentence_without_commas_is_cut(tokenizer: Tokenizer, finder: AnswerFinder) -> None:
    text = "安全巡检点建设" + "持续推进" * 60 + "。"
    answer = finder.best(q("安全巡检点建设", tokenizer), [make_hit(text)], confidence=1.0)
    assert answer is not None
    assert len(answer.text) <= ANSWER_MAX_CHARS
    assert text[answer.start : answer.end] == answer.text
