"""The HTTP API and the search page: thin routes over ``search.Searcher``.

The index and model are loaded once at start-up (not at import, not per
request). When the index directory's ``current`` version changes (a
``plansearch index`` run swapped a new one in), the next request after the
check interval loads it in the background of that request and swaps the
searcher in one assignment, so no request ever sees a half-loaded index.
"""

from __future__ import annotations

import hmac
import importlib.util
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schema import AskOut, ErrorOut, SearchOut, ask_payload, search_payload
from indexer.config import Settings
from indexer.index import IndexUnusableError, current_version
from search.engine import Searcher
from search.query import validate_query
from search.types import Filters

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("plansearch")
MAX_BODY_BYTES = 64 * 1024
RELOAD_CHECK_SECONDS = 2.0

# Query parameter types (module level: FastAPI resolves them by name).
K = Annotated[int, Query(ge=1, le=100, description="number of results (1-100)")]
Multi = Annotated[list[str] | None, Query()]
Years = Annotated[list[int] | None, Query()]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


class SearcherHolder:
    """The current searcher, reloaded when the index version changes.

    A new version is loaded and warmed (one query, so that FAISS and the query
    model are in memory) beside the old one, then swapped in with one
    assignment: a request is answered by the old searcher or by the new one,
    never by a half-loaded one. A version that fails to load is remembered
    and not retried until ``current`` moves again, its files change (a backup
    restored in place) or ``load(force=True)`` (the admin reload) asks; the
    old searcher keeps serving meanwhile.
    """

    def __init__(self, settings: Settings, opener=Searcher.open) -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        self.opener = opener
        self.searcher: Searcher | None = None
        self.version: Path | None = None
        self.error: str | None = None
        self.failed_version: Path | None = None
        self._failed_stamp: object = None
        self.loads = 0  # successful loads, for the tests
        self._lock = threading.Lock()
        self._checked = 0.0

    def load(self, force: bool = False) -> bool:
        """Load the current index version; on failure keep serving the old one.

        Returns whether a new searcher was swapped in. Without ``force``, a
        version that is already served (another trigger loaded it while this
        one waited for the lock) or that failed before is not loaded again.
        """
        with self._lock:
            version = current_version(self.settings.resolved_index_dir)
            if not force and self.searcher is not None and version == self.version:
                return False
            if not force and self._same_failure(version):
                return False
            try:
                searcher = self.opener(self.settings)
                searcher.warm_up()
            except IndexUnusableError as exc:
                self._failed(version, str(exc))
                return False
            except Exception as exc:  # any failure must leave the old searcher serving
                reason = f"index at {version} cannot be searched ({exc}): run `plansearch index --rebuild`"
                self._failed(version, reason)
                return False
            # The old searcher is not closed here: requests still running on it
            # finish with it, and its files close when its last reference goes.
            self.searcher = searcher
            self.version = getattr(getattr(searcher, "index", None), "path", version)
            self.error, self.failed_version = None, None
            self.loads += 1
            return True

    def _failed(self, version: Path | None, error: str) -> None:
        self.error, self.failed_version, self._failed_stamp = error, version, _stamp(version)
        if self.searcher is None:
            log.error("%s", error)
        else:
            log.error("%s (still serving %s)", error, self.version.name if self.version else "the old index")

    def maybe_reload(self) -> None:
        """At most every RELOAD_CHECK_SECONDS: if ``current`` moved, load the new version
        in a background thread (this request waits only when nothing is loaded yet)."""
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        version = current_version(self.settings.resolved_index_dir)
        if version == self.version or self._same_failure(version):
            return
        if self.searcher is None:
            self.load()
        elif not self._lock.locked():
            threading.Thread(target=self.load, name="plansearch-reload", daemon=True).start()

    def _same_failure(self, version: Path | None) -> bool:
        """The version that failed last time, unchanged since."""
        return version is not None and version == self.failed_version and _stamp(version) == self._failed_stamp

    def get(self) -> Searcher:
        self.maybe_reload()
        searcher = self.searcher
        if searcher is None:
            raise ApiError(
                503, "index_unavailable", f"索引不可用 / the index is not available: {self.error or 'not loaded'}"
            )
        return searcher


def create_app(settings: Settings | None = None, holder: SearcherHolder | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    holder = holder or SearcherHolder(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        # Load the index and model once at start-up, not at import or per request.
        if holder.searcher is None:
            holder.load()
        yield

    app = FastAPI(
        title="plansearch",
        description="Search and ask Chinese plan documents, offline. 规划文件检索与问答。",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc pull Swagger UI from a CDN, which an
        # intranet cannot reach: /docs is served below from a bundled copy.
        docs_url=None,
        redoc_url=None,
    )
    app.state.holder = holder

    @app.middleware("http")
    async def guard(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if (length and (not length.isdigit() or int(length) > MAX_BODY_BYTES)) or (
            # A body of unknown length (chunked): counted as it arrives, never held whole.
            not length and request.headers.get("transfer-encoding") and await _body_too_large(request)
        ):
            response: Response = _error(413, "too_large", "请求体过大 / request body too large")
        elif (
            settings.api_token
            and request.url.path.startswith("/api/")
            and request.url.path != "/api/health"
            and not _authorised(request, settings.api_token)
        ):
            response = _error(401, "unauthorized", "需要有效的令牌 / a valid API token is required")
        else:
            response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    if settings.cors_origins:
        # Added after the guard, so outside it: preflight requests (which never
        # carry the token) are answered here, and 401/413 answers get the CORS
        # headers too, so that a page on an allowed origin can read them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Token"],
        )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}" for e in exc.errors()
        )
        return _error(422, "invalid_parameter", f"参数无效 / invalid parameter: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reasons = {404: "找不到 / not found", 405: "不支持的方法 / method not allowed"}
        return _error(exc.status_code, "http_error", reasons.get(exc.status_code, str(exc.detail)))

    def filters(
        doc: list[str] | None, year: list[int] | None, region: list[str] | None, file: list[str] | None
    ) -> Filters:
        return Filters(
            doc_ids=frozenset(doc) if doc else None,
            years=frozenset(year) if year else None,
            regions=frozenset(region) if region else None,
            source_files=frozenset(file) if file else None,
        )

    def query_text(q: str | None) -> str:
        try:
            return validate_query(q)
        except ValueError as exc:
            raise ApiError(400, "invalid_query", str(exc)) from exc

    def check_docs(searcher: Searcher, doc: list[str] | None) -> None:
        for doc_id in doc or []:
            if doc_id not in searcher.index.doc_by_id:
                raise ApiError(404, "unknown_document", f"没有这个文件 / unknown document id: {doc_id[:80]}")

    @app.get("/api/search", response_model=SearchOut, responses={400: {"model": ErrorOut}})
    def api_search(
        q: str | None = None, k: K = 10, doc: Multi = None, year: Years = None, region: Multi = None, file: Multi = None
    ) -> dict[str, object]:
        """Ranked passages for a query, each with its citation and highlights."""
        text = query_text(q)
        searcher = holder.get()
        check_docs(searcher, doc)
        return search_payload(searcher.search(text, k=k, filters=filters(doc, year, region, file)))

    @app.get("/api/ask", response_model=AskOut, responses={400: {"model": ErrorOut}})
    def api_ask(
        q: str | None = None, k: K = 5, doc: Multi = None, year: Years = None, region: Multi = None, file: Multi = None
    ) -> dict[str, object]:
        """The sentence that answers a question with its citation, or null."""
        text = query_text(q)
        searcher = holder.get()
        check_docs(searcher, doc)
        return ask_payload(searcher.ask(text, k=k, filters=filters(doc, year, region, file)))

    @app.get("/api/documents")
    def api_documents() -> dict[str, object]:
        """Every indexed document with its passage count."""
        searcher = holder.get()
        return {"documents": [asdict(d) for d in searcher.index.documents]}

    @app.get("/api/documents/{doc_id}", responses={404: {"model": ErrorOut}})
    def api_document(doc_id: str) -> dict[str, object]:
        """A whole document as its outline of sections and items."""
        searcher = holder.get()
        if doc_id not in searcher.index.doc_by_id:
            raise ApiError(404, "unknown_document", f"没有这个文件 / unknown document id: {doc_id[:80]}")
        return searcher.index.outline(doc_id)

    @app.get("/api/health")
    def api_health() -> JSONResponse:
        """Ready or not, and what is loaded."""
        holder.maybe_reload()
        searcher = holder.searcher
        if searcher is None:
            return JSONResponse(
                {"status": "not_ready", "reason": holder.error or "index not loaded", "model": settings.model_name},
                status_code=503,
            )
        body: dict[str, object] = {
            "status": "ok",
            "passages": searcher.index.size,
            "documents": len(searcher.index.documents),
            "model": settings.model_name,
            "index_built_at": searcher.index.built_at,
            "index_version": searcher.index.path.name,
        }
        if holder.error:
            # A newer version failed to load: still serving this one, and saying why.
            body["reload_error"] = holder.error
        return JSONResponse(body)

    @app.post("/api/admin/reload")
    def api_reload(request: Request) -> dict[str, object]:
        """Load the current index version now (needs the API token)."""
        if not settings.api_token or not _authorised(request, settings.api_token):
            raise ApiError(401, "unauthorized", "需要有效的令牌 / a valid API token is required")
        holder.load(force=True)
        if holder.error:
            if holder.searcher is None:
                raise ApiError(503, "index_unavailable", f"索引不可用 / the index is not available: {holder.error}")
            serving = holder.version.name if holder.version else "?"
            detail = f"重新加载失败 / reload failed, still serving {serving}: {holder.error}"
            raise ApiError(503, "reload_failed", detail)
        return {"status": "reloaded", "index_version": holder.version.name if holder.version else None}

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return FileResponse(STATIC / "docs.html", media_type="text/html; charset=utf-8")

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_static()), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def swagger_ui_static() -> Path:
    """Swagger UI's files as the swagger-ui-py package ships them (found
    without importing the package, which would pull in its framework hooks)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: run `pip install swagger-ui-py`")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _stamp(version: Path | None) -> object:
    """Names, sizes and modification times of a version's files (a few stat calls)."""
    if version is None:
        return None
    try:
        return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in version.rglob("*"))
    except OSError:
        return None


async def _body_too_large(request: Request) -> bool:
    """Read a body of unknown length up to MAX_BODY_BYTES (no endpoint uses a body)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return True
    return False


def _authorised(request: Request, token: str) -> bool:
    supplied = request.headers.get("authorization", "")
    supplied = supplied[7:] if supplied.lower().startswith("bearer ") else request.headers.get("x-api-token", "")
    return hmac.compare_digest(supplied.encode(), token.encode())


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)
