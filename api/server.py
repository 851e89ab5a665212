"""``plansearch serve``: build the index if there is none, then run uvicorn."""

from __future__ import annotations

import os
import sys

from indexer.config import Settings
from indexer.index import current_version


def app_factory():  # type: ignore[no-untyped-def]
    """For uvicorn workers: each worker builds its app from the environment."""
    from api.app import create_app

    return create_app(Settings.from_env())


def serve(settings: Settings, host: str | None = None, port: int | None = None, workers: int = 1) -> None:
    import uvicorn

    from indexer.build import build_index

    host = host or settings.host
    port = port or settings.port
    if current_version(settings.resolved_index_dir) is None:
        print(f"plansearch: no index yet, indexing {settings.corpus_dir} first", file=sys.stderr)
        build_index(settings)
    print(f"plansearch: serving on http://{host}:{port}/ (API docs at /docs)", file=sys.stderr)
    if workers > 1:
        # Workers are separate processes: they read the settings from the environment.
        os.environ["PLANSEARCH_INDEX_DIR"] = str(settings.resolved_index_dir)
        # Each worker's FAISS/BLAS would start one OpenMP thread per core: N workers'
        # spinning thread teams on the same cores make searches ~10x slower. Share the
        # cores out instead (unless the operator chose a number).
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        uvicorn.run("api.server:app_factory", factory=True, host=host, port=port, workers=workers, log_level="warning")
        return
    from api.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
