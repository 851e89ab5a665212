"""The search page in a real browser (Debian's chromium driven by Playwright).

The service runs as a real subprocess (``python -m api.cli serve``) over an
index of the seed corpus plus a hostile document. Screenshots go to
test-output/ for a human to look at.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.api.hostile import EVIL_IMG, EVIL_SCRIPT, EVIL_TITLE

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "browser tests need Debian's chromium at /usr/bin/chromium (run scripts/install-browser or `make test`)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / "test-output"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUESTION = "学前三年毛入园率要达到多少"
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(evil_settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANSEARCH_")}
    env.update(
        PLANSEARCH_HOME=str(evil_settings.home),
        PLANSEARCH_MODEL_DIR=str(evil_settings.resolved_model_dir),
        PLANSEARCH_CORPUS_DIR=str(evil_settings.corpus_dir),
        PYTHONIOENCODING="utf-8",
    )
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--port",
                str(port),
                "--index",
                str(evil_settings.resolved_index_dir),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"plansearch serve exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                health = httpx.get(f"{base}/api/health", timeout=2)
                if health.status_code == 200 and health.json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"plansearch serve not ready after 120 s:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.3)
        # Warm the query model so the first page search does not wait for it.
        httpx.get(f"{base}/api/ask", params={"q": "学前教育"}, timeout=60)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()


class Watch:
    """Console messages, page errors and dialogs seen by one page."""

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            self.console.append(f"{message.type}: {message.text}")

    def _dialog(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.console == [], self.console


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    watch = Watch(pg)
    yield pg, watch
    context.close()


def shot(page: Page, name: str, full_page: bool = False) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def search(page: Page, text: str) -> None:
    box = page.locator("#q")
    box.fill(text)
    box.press("Enter")


# -- the main journey -------------------------------------------------------------
def test_question_answer_document_and_back(server: str, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(server + "/")
    expect(pg.locator("#home-view")).to_be_visible()
    expect(pg.locator("#corpus-stats")).to_contain_text("已收录 7 份文件")
    # The filters are filled from /api/documents.
    expect(pg.locator("#doc-filter option")).to_have_count(8)
    expect(pg.locator("#year-filter option[value='2018']")).to_have_count(1)

    search(pg, QUESTION)
    card = pg.locator(".answer-card")
    expect(card).to_be_visible()
    expect(card.locator(".answer-text")).to_contain_text("91%")
    expect(card.locator(".answer-source")).to_contain_text("《沧州市2020年教育工作要点》")
    expect(card.locator(".answer-source")).to_contain_text("二、主要任务目标")
    expect(card.locator(".answer-source")).to_contain_text("(六)")
    assert query_of(pg.url)["q"] == [QUESTION]
    assert pg.title().startswith(QUESTION)

    results = pg.locator("#results > li.result")
    expect(results.first).to_be_visible()
    assert results.count() >= 5
    expect(pg.locator("#result-meta")).to_contain_text(re.compile(r"共 \d+ 条结果"))
    expect(pg.locator("#result-meta")).to_contain_text("毫秒")
    marks = pg.locator("#results mark")
    assert marks.count() > 0
    assert any("学前" in t or "入园率" in t for t in marks.all_inner_texts())
    # The answer sentence inside the first result has its own style.
    expect(results.first.locator(".hl-answer")).to_contain_text("91%")
    shot(pg, "page-answer.png")

    # Follow the answer's link: the item inside its whole document.
    card.locator("a.answer-link").click()
    target = pg.locator("#doc-outline .is-target")
    expect(target).to_be_visible()
    expect(target).to_contain_text("91%")
    expect(target.locator(".unit-label")).to_have_text("(六)")
    expect(target).to_be_in_viewport()
    expect(pg.locator("#doc-title")).to_have_text("沧州市2020年教育工作要点")
    expect(pg.locator("#results-view")).to_be_hidden()
    assert pg.locator("#doc-outline .unit").count() > 100
    assert pg.locator("#doc-outline .sec-title").count() >= 3
    params = query_of(pg.url)
    assert params["read"] == ["003_9ac541179e48cb99"] and params["item"] == ["(六)"] and params["q"] == [QUESTION]
    shot(pg, "page-document.png")

    # Back: the results again; forward: the document again.
    pg.go_back()
    expect(pg.locator(".answer-card")).to_be_visible()
    expect(pg.locator("#doc-view")).to_be_hidden()
    assert query_of(pg.url) == {"q": [QUESTION]}
    expect(pg.locator("#q")).to_have_value(QUESTION)
    pg.go_forward()
    expect(pg.locator("#doc-outline .is-target")).to_contain_text("91%")

    # The page's own back link returns to the results too.
    pg.locator("#back-link").click()
    expect(pg.locator(".answer-card")).to_be_visible()
    assert query_of(pg.url) == {"q": [QUESTION]}

    # A result's citation link opens its item in context.
    second = pg.locator("#results > li.result").nth(1)
    cite = second.locator(".citation").inner_text()
    second.locator("a.result-cite").click()
    expect(pg.locator("#doc-outline .is-target")).to_be_visible()
    assert pg.locator("#doc-title").inner_text() in cite
    watch.assert_clean()


def test_shared_link_opens_results_and_documents_directly(server: str, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(server + "/?q=危化品%20报废")
    first = pg.locator("#results > li.result").first
    expect(first).to_contain_text("《2020年某区教育工作要点2》")
    expect(first.locator(".citation")).to_contain_text("第15条")
    expect(pg.locator("#q")).to_have_value("危化品 报废")
    assert {"危化品", "报废"} <= set(first.locator("mark").all_inner_texts())

    # A shared link to an item in its document.
    pg.goto(server + "/?read=003_9ac541179e48cb99&sec=三、重点工作&item=(三)&sub=2.")
    target = pg.locator("#doc-outline .is-target")
    expect(target).to_contain_text("扩充城镇公办学前教育资源")
    expect(target).to_be_in_viewport()
    expect(pg.locator("#back-link")).to_have_text("← 返回首页")
    watch.assert_clean()


def test_filters_restrict_results_and_are_kept_in_the_url(server: str, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(server + "/?q=学前教育%20幼儿园")
    expect(pg.locator("#results > li.result").first).to_be_visible()
    titles = set(pg.locator("#results .cite-doc").all_inner_texts())
    assert len(titles) > 1

    pg.locator("#doc-filter").select_option("004_a2a3b87c571a2f00")
    expect(pg.locator("#result-meta")).to_contain_text("已筛选")
    expect(pg.locator("#results > li.result").first).to_be_visible()
    assert set(pg.locator("#results .cite-doc").all_inner_texts()) == {"《2023年全县教育工作要点》"}
    assert query_of(pg.url)["doc"] == ["004_a2a3b87c571a2f00"]

    # The 2023 document with the year 2018: nothing can match.
    pg.locator("#year-filter").select_option("2018")
    expect(pg.locator(".empty")).to_contain_text("没有找到相关内容")
    assert query_of(pg.url)["year"] == ["2018"]
    pg.locator(".empty a").click()
    expect(pg.locator("#results > li.result").first).to_be_visible()
    assert "doc" not in query_of(pg.url) and "year" not in query_of(pg.url)
    expect(pg.locator("#doc-filter")).to_have_value("")

    pg.go_back()
    expect(pg.locator(".empty")).to_be_visible()
    expect(pg.locator("#year-filter")).to_have_value("2018")

    # Year alone.
    pg.goto(server + "/?q=学前教育%20幼儿园&year=2018")
    expect(pg.locator("#results > li.result").first).to_be_visible()
    assert set(pg.locator("#results .cite-doc").all_inner_texts()) == {"《天门市教育局2018年工作要点》"}
    watch.assert_clean()


# -- hostile content --------------------------------------------------------------
def test_injected_document_is_shown_as_text(server: str, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(server + "/")
    search(pg, "跨站脚本攻击 恶意脚本 门户网站")
    evil = pg.locator("#results > li.result", has_text=EVIL_TITLE)
    expect(evil.first).to_be_visible()
    expect(pg.locator("#results")).to_contain_text(EVIL_SCRIPT)
    # Nothing from the data became an element.
    assert pg.locator("main script, main img, main iframe").count() == 0
    shot(pg, "page-hostile.png")

    # In the document outline, both payloads are literal text.
    evil.first.locator("a.result-cite").click()
    outline = pg.locator("#doc-outline")
    expect(outline).to_contain_text(EVIL_SCRIPT)
    expect(outline).to_contain_text(EVIL_IMG)
    assert outline.locator("script, img").count() == 0

    # A hostile query is text in the box, the title and the results, never markup.
    search(pg, EVIL_IMG)
    pg.wait_for_url(lambda url: query_of(url).get("q") == [EVIL_IMG])
    expect(pg.locator("#results-view")).to_be_visible()
    expect(pg.locator("#q")).to_have_value(EVIL_IMG)
    assert EVIL_IMG in pg.title()
    assert pg.locator("main img, header img").count() == 0

    pg.wait_for_timeout(300)  # give any injected handler the chance to fire
    assert pg.evaluate("typeof window.__xss") == "undefined"
    assert watch.dialogs == []
    watch.assert_clean()


# -- messages -----------------------------------------------------------------------
def test_error_and_empty_messages(server: str, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    # An HTTP error from the real service shows its JSON detail.
    pg.goto(server + "/?q=学前教育&doc=no-such-doc")
    message = pg.locator("#message")
    expect(message).to_contain_text("HTTP 404")
    expect(message).to_contain_text("没有这个文件 / unknown document id: no-such-doc")

    pg.goto(server + "/?read=no-such-doc")
    expect(message).to_contain_text("没有这个文件")

    # An empty search box asks for a query instead of calling the service.
    pg.goto(server + "/")
    pg.locator("#q").fill("   ")
    pg.locator("#q").press("Enter")
    expect(message).to_contain_text("请输入")
    assert "q" not in query_of(pg.url)

    # The service answering 503 with a JSON detail.
    pg.route(
        "**/api/ask?*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error":"index_unavailable","detail":"索引不可用 / the index is not available: test"}',
        ),
    )
    search(pg, "教师培训")
    expect(message).to_contain_text("HTTP 503")
    expect(message).to_contain_text("索引不可用 / the index is not available: test")
    pg.unroute("**/api/ask?*")

    # The service unreachable.
    pg.route("**/api/ask?*", lambda route: route.abort("connectionrefused"))
    search(pg, "教师队伍")
    expect(message).to_contain_text("无法连接检索服务")
    pg.unroute("**/api/ask?*")

    # Passages but no answer.
    passage = {
        "rank": 1,
        "score": 0.5,
        "text": "加强教师队伍建设。",
        "source_file": "a.txt",
        "doc_id": "a",
        "doc_title": "某文件",
        "year": 2020,
        "region": None,
        "section": "一、总则",
        "item": "1.",
        "subitem": None,
        "citation": "《某文件》 一、总则 第1条",
        "highlights": [{"start": 2, "end": 4, "kind": "term"}],
    }
    no_answer = json.dumps({"query": "x", "took_ms": 1.5, "answer": None, "passages": [passage]}, ensure_ascii=False)
    pg.route("**/api/ask?*", lambda route: route.fulfill(status=200, content_type="application/json", body=no_answer))
    search(pg, "教师的工资是多少")
    expect(pg.locator(".notice")).to_contain_text("语料中没有找到这个问题的答案")
    expect(pg.locator(".answer-card")).to_have_count(0)
    expect(pg.locator("#results mark")).to_have_text("教师")
    expect(pg.locator("#results .citation")).to_contain_text("第1条")
    pg.unroute("**/api/ask?*")

    assert watch.errors == [] and watch.dialogs == []
    assert watch.csp_violations() == []
    # The only console noise allowed is the browser logging the failed requests above.
    unexpected = [m for m in watch.console if "Failed to load resource" not in m]
    assert unexpected == [], unexpected


# -- phones -------------------------------------------------------------------------
def test_mobile_layout(server: str, browser: Browser) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    watch = Watch(pg)
    try:
        pg.goto(server + "/")
        search(pg, QUESTION)
        expect(pg.locator(".answer-card")).to_contain_text("91%")
        # Nothing wider than the screen; tap targets at least 44 px high.
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        for selector in ("#q", ".search-button", "#doc-filter", "#year-filter", ".answer-link", ".context-link"):
            box = pg.locator(selector).first.bounding_box()
            assert box is not None and box["height"] >= 44, (selector, box)
        shot(pg, "page-mobile.png")
        pg.locator(".answer-link").click()
        expect(pg.locator("#doc-outline .is-target")).to_be_in_viewport()
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        expect(pg.locator("#back-link")).to_be_in_viewport()
        shot(pg, "page-mobile-document.png")
        watch.assert_clean()
    finally:
        context.close()


def test_api_docs_page_works_offline(server: str, page: tuple[Page, Watch]) -> None:
    """/docs renders Swagger UI from the bundled copy: no CDN, no CSP violation."""
    pg, watch = page
    requested: list[str] = []
    pg.on("request", lambda request: requested.append(request.url))
    pg.goto(server + "/docs")
    expect(pg.locator(".swagger-ui .info .title")).to_contain_text("plansearch")
    expect(pg.locator(".opblock-summary-path").filter(has_text="/api/search").first).to_be_visible()
    assert all(url.startswith(server) for url in requested), [u for u in requested if not u.startswith(server)]
    shot(pg, "api-docs.png")
    watch.assert_clean()


# -- a token-protected service --------------------------------------------------------
PAGE_TOKEN = "page-t0ken-123"


@pytest.fixture(scope="module")
def token_server(evil_settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from bench.load import serve, server_env

    home = tmp_path_factory.mktemp("serve-token")
    env = server_env(home, evil_settings.corpus_dir, evil_settings.resolved_model_dir, token=PAGE_TOKEN)
    with serve(evil_settings.resolved_index_dir, env, home / "serve.log") as served:
        yield served.base


def test_page_asks_for_the_token_once_per_tab(token_server: str, page: tuple[Page, Watch]) -> None:
    pg, watch = page
    pg.goto(token_server + "/")
    form = pg.locator("#token-form")
    expect(form).to_contain_text("需要访问令牌")
    expect(pg.locator("#token-input")).to_be_focused()
    assert pg.locator("#token-input").get_attribute("type") == "password"

    pg.locator("#token-input").fill("wrong-token")
    pg.locator("#token-input").press("Enter")
    expect(form).to_contain_text("访问令牌无效")

    pg.locator("#token-input").fill(PAGE_TOKEN)
    pg.locator(".token-button").click()
    expect(pg.locator("#corpus-stats")).to_contain_text("已收录 7 份文件")
    expect(pg.locator("#token-form")).to_have_count(0)
    search(pg, QUESTION)
    expect(pg.locator(".answer-card .answer-text")).to_contain_text("91%")
    assert PAGE_TOKEN not in pg.url
    shot(pg, "page-token.png")

    # Kept for the tab: a reload does not ask again. A new tab (another session) does.
    pg.reload()
    expect(pg.locator(".answer-card .answer-text")).to_contain_text("91%")
    expect(pg.locator("#token-form")).to_have_count(0)
    other = pg.context.browser.new_context(locale="zh-CN").new_page()  # type: ignore[union-attr]
    try:
        other.goto(token_server + "/")
        expect(other.locator("#token-form")).to_be_visible()
    finally:
        other.context.close()

    assert watch.errors == [] and watch.dialogs == [] and watch.csp_violations() == []
    # The only console noise allowed is the browser logging the refused (401) requests.
    unexpected = [m for m in watch.console if "Failed to load resource" not in m]
    assert unexpected == [], unexpected
