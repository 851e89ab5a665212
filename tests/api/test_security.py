"""Hostile requests and access control.

Path traversal, oversized requests and malformed bytes go to a real ``plansearch serve``
subprocess over raw sockets, so that nothing (client library, test transport) normalises
them on the way. Tokens, CORS and security headers are checked in process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import MAX_BODY_BYTES, SECURITY_HEADERS, SearcherHolder, create_app
from bench.load import Served, serve, server_env

TOKEN = "s3cure-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CANGZHOU = "003_9ac541179e48cb99"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Text of files a traversal could reach: none may ever appear in an answer.
SECRETS = {
    "/etc/passwd": "root:x:0:0",
    "api/app.py": "def create_app(",
    "pyproject.toml": "[build-system]",
    "index manifest.json": '"checksums"',
    "index passages.jsonl": '"unit_key"',
}


@pytest.fixture(scope="module")
def served(seed_index: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("security")
    env = server_env(home, home / "corpus", model_dir, token=TOKEN)
    with serve(seed_index, env, home / "serve.log") as s:
        yield s


@dataclasses.dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)


def raw(served: Served, request: bytes, timeout: float = 60) -> Raw:
    """Send bytes as they are; read the whole answer (the request asks to close)."""
    port = int(served.base.rsplit(":", 1)[1])
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        with contextlib.suppress(OSError):  # the server may answer and close before reading everything
            conn.sendall(request)
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), out[:200]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Raw(int(lines[0].split()[1]), headers, body)


def get(served: Served, target: bytes, headers: bytes = b"") -> Raw:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    return raw(
        served, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + auth + headers + b"\r\n"
    )


def assert_no_secret(answer: Raw) -> None:
    text = answer.body.decode("utf-8", errors="replace")
    for where, marker in SECRETS.items():
        assert marker not in text, f"{where} leaked: {text[:300]}"


# -- path traversal ---------------------------------------------------------------------------------
TRAVERSALS = [
    b"../app.py",
    b"..%2Fapp.py",
    b"..%2fapp.py",
    b"%2e%2e/app.py",
    b"%2e%2e%2fapp.py",
    b"%2E%2E%2Fapp.py",
    b"..%252fapp.py",
    b"%252e%252e%252fapp.py",
    b"..\\app.py",
    b"..%5capp.py",
    b"....//app.py",
    b"..;/app.py",
    b"%c0%ae%c0%ae/app.py",
    b"../../../pyproject.toml",
    b"..%2F..%2F..%2Fpyproject.toml",
    b"../../../../../../../../etc/passwd",
    b"..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    b"%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/etc/passwd",
    b"%2Fetc%2Fpasswd",
    b"C:\\Windows\\win.ini",
    b"app.js%00",
    b"app.js%00.png",
    b"..%00/app.py",
    b"%00",
]


@pytest.mark.parametrize("prefix", [b"/static/", b"/static/swagger/", b"/api/documents/", b"/"])
@pytest.mark.parametrize("attack", TRAVERSALS, ids=[t.decode() for t in TRAVERSALS])
def test_paths_cannot_reach_files_outside(served: Served, prefix: bytes, attack: bytes) -> None:
    answer = get(served, prefix + attack)
    assert answer.status < 500, answer
    assert 400 <= answer.status < 500, answer.status  # nothing of these is a real page, file or document
    assert_no_secret(answer)
    if answer.headers.get("content-type", "").startswith("application/json"):
        assert set(answer.json()) == {"error", "detail"}


@pytest.mark.parametrize("param", [b"doc", b"file"])
@pytest.mark.parametrize("attack", TRAVERSALS[:20], ids=[t.decode() for t in TRAVERSALS[:20]])
def test_filter_values_cannot_reach_files(served: Served, param: bytes, attack: bytes) -> None:
    answer = get(served, b"/api/search?q=%E5%AD%A6%E5%89%8D&" + param + b"=" + attack)
    assert answer.status in {200, 404}, answer  # a file filter matches nothing, a doc filter is unknown
    assert_no_secret(answer)
    if answer.status == 200:
        assert answer.json()["results"] == []


def test_documents_are_only_the_indexed_ones(served: Served) -> None:
    ok = get(served, f"/api/documents/{CANGZHOU}".encode())
    assert ok.status == 200 and ok.json()["doc_id"] == CANGZHOU
    # A real id with a traversal tail, or a real id reached through one, is not a document.
    for target in (f"/api/documents/{CANGZHOU}/..%2F..%2Fmanifest.json", f"/api/documents/x%2F..%2F{CANGZHOU}"):
        answer = get(served, target.encode())
        assert answer.status == 404, answer
        assert_no_secret(answer)


# -- oversized and malformed requests -------------------------------------------------------------------
def chunked(size: int) -> bytes:
    body = b"x" * size
    pieces = (body[i : i + 65536] for i in range(0, size, 65536))
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("method", [b"POST /api/admin/reload", b"GET /api/search?q=abc", b"POST /api/search?q=abc"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_one_megabyte_bodies_are_refused_with_413(served: Served, method: bytes, framing: str) -> None:
    size = 1 << 20
    head = method + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + f"X-API-Token: {TOKEN}\r\n".encode()
    if framing == "chunked":
        request = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(size)
    else:
        request = head + f"Content-Length: {size}\r\n\r\n".encode() + b"x" * size
    answer = raw(served, request)
    assert answer.status == 413, answer
    assert answer.json() == {"error": "too_large", "detail": "请求体过大 / request body too large"}
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_small_bodies_of_either_framing_are_ignored(served: Served) -> None:
    """The API takes no body: a small one is not an error (proxies and clients send them)."""
    head = b"GET /api/search?q=%E5%8D%B1%E5%8C%96%E5%93%81 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += f"X-API-Token: {TOKEN}\r\n".encode()
    for request in (
        head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(100),
        head + b"Content-Length: 3\r\n\r\nabc",
    ):
        answer = raw(served, request)
        assert answer.status == 200 and answer.json()["results"]
    assert MAX_BODY_BYTES < 1 << 20


def test_one_megabyte_url_and_ten_thousand_characters(served: Served) -> None:
    # Past the HTTP server's own limit on a request line: refused before the app (400, plain text).
    for target in (b"/api/search?q=" + b"a" * (1 << 20), b"/api/ask?q=" + b"%E7%9A%84" * 10_000):
        answer = get(served, target)
        assert answer.status == 400 and answer.body == b"Invalid HTTP request received.", answer
    # Within it: refused by the app with its JSON error.
    for target in (
        b"/api/search?q=" + b"a" * 10_000,
        b"/api/ask?q=" + b"%E7%9A%84" * 1000,
        b"/api/search?q=abc&doc=" + b"a" * 10_000,
        b"/api/search?q=abc&file=" + b"a" * 10_000,
        b"/api/search?q=abc&year=" + b"9" * 10_000,
        b"/api/search?q=abc&k=" + b"9" * 10_000,
        b"/api/documents/" + b"a" * 10_000,
    ):
        answer = get(served, target)
        assert 400 <= answer.status < 500 or (b"file=" in target and answer.status == 200), (target[:40], answer)
        assert answer.headers.get("content-type") == "application/json", (target[:40], answer)
        body = answer.json()
        assert set(body) == {"error", "detail"} if answer.status != 200 else body["results"] == []
    # Still serving.
    ok = get(served, b"/api/search?q=%E5%8D%B1%E5%8C%96%E5%93%81%20%E6%8A%A5%E5%BA%9F")
    assert ok.status == 200 and ok.json()["results"][0]["citation"].endswith("第15条")


@pytest.mark.parametrize(
    "query",
    [
        b"%ED%A0%80",  # a lone surrogate, as UTF-8 bytes
        b"%ED%B0%80abc",
        "\ud800".encode("utf-8", "surrogatepass").hex().encode(),  # hex digits: a normal query
        b"%00%01%02%1b%7f",
        b"%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        b"'%20OR%201%3D1%20--",
        b".*%2B%3F%5B%5D(%7B%7D%7C%5C%5E%24",
        b"%F0%9F%92%A9%F0%A0%80%80",
    ],
)
def test_raw_hostile_queries_get_4xx_or_an_answer(served: Served, query: bytes) -> None:
    for path in (b"/api/search?q=", b"/api/ask?q="):
        answer = get(served, path + query)
        assert answer.status == 200 or 400 <= answer.status < 500, answer
        body = answer.json()
        assert ("results" in body or "passages" in body) if answer.status == 200 else set(body) == {"error", "detail"}


# -- tokens ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def holder(seed_settings, seed_index: Path) -> SearcherHolder:  # type: ignore[no-untyped-def]
    h = SearcherHolder(dataclasses.replace(seed_settings, api_token=TOKEN))
    h.load()
    return h


def client_for(seed_settings, holder: SearcherHolder, **changes: str) -> TestClient:  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(seed_settings, **changes)
    holder.settings = settings
    return TestClient(create_app(settings, holder))


PROTECTED = ["/api/search?q=学前", "/api/ask?q=学前", "/api/documents", f"/api/documents/{CANGZHOU}"]
PUBLIC = ["/api/health", "/", "/?q=学前", "/static/app.js", "/static/style.css", "/docs", "/openapi.json"]


def test_with_a_token_every_data_route_needs_it(seed_settings, holder: SearcherHolder) -> None:  # type: ignore[no-untyped-def]
    with client_for(seed_settings, holder, api_token=TOKEN) as c:
        for path in PROTECTED:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": "Bearer "},
                {"X-API-Token": TOKEN + "x"},
                {"Authorization": TOKEN},
            ):
                r = c.get(path, headers=headers)
                assert r.status_code == 401 and r.json()["error"] == "unauthorized", (path, headers)
            for headers in (AUTH, {"authorization": f"bearer {TOKEN}"}, {"X-API-Token": TOKEN}):
                assert c.get(path, headers=headers).status_code == 200, (path, headers)
        # The page, its files, the API description and health hold no data: open, so that the page can
        # ask for the token and load balancers can probe.
        for path in PUBLIC:
            assert c.get(path).status_code == 200, path


def test_without_a_token_search_is_open_and_admin_closed(seed_settings, holder: SearcherHolder) -> None:  # type: ignore[no-untyped-def]
    with client_for(seed_settings, holder, api_token="") as c:
        for path in PROTECTED + PUBLIC:
            assert c.get(path).status_code == 200, path
        for headers in ({}, AUTH, {"X-API-Token": ""}, {"Authorization": "Bearer "}):
            r = c.post("/api/admin/reload", headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", headers


def test_admin_reload_takes_either_header(seed_settings, holder: SearcherHolder) -> None:  # type: ignore[no-untyped-def]
    with client_for(seed_settings, holder, api_token=TOKEN) as c:
        assert c.post("/api/admin/reload").status_code == 401
        assert c.post("/api/admin/reload", headers={"X-API-Token": "nope"}).status_code == 401
        assert c.get("/api/admin/reload", headers=AUTH).status_code == 405
        for headers in (AUTH, {"X-API-Token": TOKEN}):
            r = c.post("/api/admin/reload", headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "reloaded"


# -- CORS -----------------------------------------------------------------------------------------------
FOREIGN = "https://evil.example"
INTRANET = "https://portal.intranet.example"


def test_cors_is_closed_by_default(seed_settings, holder: SearcherHolder) -> None:  # type: ignore[no-untyped-def]
    with client_for(seed_settings, holder, api_token="", cors_origins="") as c:
        r = c.get("/api/search", params={"q": "学前"}, headers={"Origin": FOREIGN})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        preflight = c.options("/api/search", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "GET"})
        assert preflight.status_code >= 400 and "access-control-allow-origin" not in preflight.headers


def test_cors_opens_for_configured_origins_only(seed_settings, holder: SearcherHolder) -> None:  # type: ignore[no-untyped-def]
    with client_for(seed_settings, holder, api_token=TOKEN, cors_origins=f"{INTRANET}, https://other.example") as c:
        r = c.get("/api/search", params={"q": "学前"}, headers={"Origin": INTRANET, **AUTH})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == INTRANET
        # A refusal is readable by the allowed page too (so it can ask for the token).
        r = c.get("/api/search", params={"q": "学前"}, headers={"Origin": INTRANET})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == INTRANET
        # Preflights carry no token: they are answered, not refused.
        preflight = c.options(
            "/api/search",
            headers={
                "Origin": INTRANET,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == INTRANET
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        for origin in (FOREIGN, "https://portal.intranet.example.evil.example", "null"):
            r = c.get("/api/search", params={"q": "学前"}, headers={"Origin": origin, **AUTH})
            assert "access-control-allow-origin" not in r.headers, origin
            bad = c.options("/api/search", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
            assert bad.status_code >= 400 and "access-control-allow-origin" not in bad.headers, origin


# -- security headers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/", {}, 200),
        ("GET", "/docs", {}, 200),
        ("GET", "/openapi.json", {}, 200),
        ("GET", "/static/app.js", {}, 200),
        ("GET", "/static/swagger/swagger-ui-bundle.js", {}, 200),
        ("GET", "/api/health", {}, 200),
        ("GET", "/api/search?q=学前", AUTH, 200),
        ("GET", "/api/search?q=学前", {}, 401),
        ("GET", "/api/search?q=", AUTH, 400),
        ("GET", "/api/documents/nope", AUTH, 404),
        ("GET", "/static/nope.js", {}, 404),
        ("POST", "/api/search?q=学前", AUTH, 405),
        ("GET", "/api/search?q=学前&k=0", AUTH, 422),
        ("POST", "/api/admin/reload", {"Content-Length": str(1 << 20)}, 413),
    ],
)
def test_security_headers_on_every_kind_of_answer(  # type: ignore[no-untyped-def]
    seed_settings, holder: SearcherHolder, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    with client_for(seed_settings, holder, api_token=TOKEN) as c:
        r = c.request(method, path, headers=headers)
        assert r.status_code == status, r.text
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (name, path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"


def test_real_server_sends_the_headers_too(served: Served) -> None:
    for target in (b"/", b"/static/app.js", b"/api/health", b"/api/search?q=%E5%AD%A6"):
        answer = get(served, target)
        assert answer.status == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert httpx.get(served.base + "/api/health").json()["status"] == "ok"
