"""Swapping index versions under a running service (``SearcherHolder``), on copies of the seed index:
one load per new version however many requests trigger it, a failed load keeps the old index
serving and is reported, requests still running on the old index finish with it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.app as app_module
from api.app import SearcherHolder, create_app
from indexer.config import Settings
from indexer.index import CURRENT, current_version
from search.engine import Searcher

TOKEN = "reload-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def versions(seed_index: Path, dest: Path, names: list[str]) -> Path:
    """An index directory holding copies of the seed's current version under ``names``; the first is current."""
    source = current_version(seed_index)
    assert source is not None
    dest.mkdir()
    for name in names:
        shutil.copytree(source, dest / name)
    switch(dest, names[0])
    return dest


def switch(index_dir: Path, name: str) -> None:
    os.symlink(name, index_dir / ".current-test")
    os.replace(index_dir / ".current-test", index_dir / CURRENT)


def damage(version: Path) -> None:
    next(version.rglob("passages.jsonl")).unlink()


class CountingOpener:
    """Searcher.open, counted, slow enough for concurrent triggers to overlap."""

    def __init__(self, delay: float = 0.5) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, settings: Settings) -> Searcher:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return Searcher.open(settings)


@pytest.fixture
def settings(seed_settings: Settings, seed_index: Path, tmp_path: Path) -> Settings:
    index_dir = versions(seed_index, tmp_path / "index", ["v-20000101T000000000000-1", "v-20000102T000000000000-1"])
    return dataclasses.replace(seed_settings, index_dir=index_dir, api_token=TOKEN)


def wait_for(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_concurrent_loads_of_one_new_version_load_it_once(settings: Settings) -> None:
    opener = CountingOpener()
    holder = SearcherHolder(settings, opener=opener)
    assert holder.load() and opener.calls == 1
    first = holder.searcher
    switch(settings.resolved_index_dir, "v-20000102T000000000000-1")

    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(holder.load())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # One trigger loaded it; the three that waited for the lock found it loaded.
    assert opener.calls == 2, opener.calls
    assert sorted(results) == [False, False, False, True]
    assert holder.version == settings.resolved_index_dir / "v-20000102T000000000000-1"
    assert holder.searcher is not first and holder.loads == 2
    # The same version again is not reloaded, unless forced (the admin reload).
    assert not holder.load() and opener.calls == 2
    assert holder.load(force=True) and opener.calls == 3


def test_requests_trigger_one_background_load(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    opener = CountingOpener()
    holder = SearcherHolder(settings, opener=opener)
    holder.load()
    old = holder.searcher
    monkeypatch.setattr(app_module, "RELOAD_CHECK_SECONDS", 0.0)
    switch(settings.resolved_index_dir, "v-20000102T000000000000-1")

    served: list[Searcher] = []
    threads = [threading.Thread(target=lambda: served.append(holder.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # No request waited for the load: all were answered by the old searcher meanwhile.
    assert len(served) == 8 and all(s is old for s in served)
    wait_for(lambda: holder.version == settings.resolved_index_dir / "v-20000102T000000000000-1")
    time.sleep(0.6)  # any straggling trigger thread would have called the opener by now
    assert opener.calls == 2
    assert holder.get() is holder.searcher is not old


def test_requests_on_the_old_index_finish_after_the_swap(settings: Settings) -> None:
    holder = SearcherHolder(settings)
    holder.load()
    old = holder.get()
    switch(settings.resolved_index_dir, "v-20000102T000000000000-1")
    assert holder.load()
    # A request that got the old searcher before the swap reads passages it never read before.
    passages = old.index.passages()
    assert len(passages) == old.index.size > 200
    assert old.search("危化品 报废", k=3).hits


def test_failed_reload_keeps_serving_the_old_index(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = settings.resolved_index_dir
    old_name = "v-20000101T000000000000-1"
    damage(index_dir / "v-20000102T000000000000-1")
    holder = SearcherHolder(settings)
    with TestClient(create_app(settings, holder)) as client:
        before = client.get("/api/search", params={"q": "危化品 报废"}, headers=AUTH).json()["results"]
        monkeypatch.setattr(app_module, "RELOAD_CHECK_SECONDS", 0.0)
        switch(index_dir, "v-20000102T000000000000-1")
        r = client.get("/api/search", params={"q": "危化品 报废"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["results"] == before
        wait_for(lambda: holder.error is not None)

        health = client.get("/api/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["index_version"] == old_name
        assert "passages.jsonl" in body["reload_error"]
        assert body["reload_error"].endswith("run `plansearch index --rebuild`")
        # The broken version is not retried on every request; the old index keeps answering.
        loads = holder.loads
        for _ in range(5):
            r = client.get("/api/search", params={"q": "危化品 报废"}, headers=AUTH)
            assert r.status_code == 200 and r.json()["results"] == before
        assert holder.loads == loads and holder.version == index_dir / old_name

        # The admin reload tries again, fails, says so and what is still served.
        r = client.post("/api/admin/reload", headers=AUTH)
        assert r.status_code == 503 and r.json()["error"] == "reload_failed"
        assert old_name in r.json()["detail"] and "passages.jsonl" in r.json()["detail"]
        assert client.get("/api/search", params={"q": "危化品 报废"}, headers=AUTH).status_code == 200

        # A sound version put in place is loaded and the error is gone.
        shutil.copytree(index_dir / old_name, index_dir / "v-20000103T000000000000-1")
        switch(index_dir, "v-20000103T000000000000-1")
        client.get("/api/health")
        wait_for(lambda: holder.version == index_dir / "v-20000103T000000000000-1")
        body = client.get("/api/health").json()
        assert body["index_version"] == "v-20000103T000000000000-1" and "reload_error" not in body


def test_a_version_repaired_in_place_is_retried(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup restored over the broken version's files, without moving ``current``."""
    index_dir = settings.resolved_index_dir
    broken = index_dir / "v-20000102T000000000000-1"
    passages = next(broken.rglob("passages.jsonl"))
    kept = passages.read_bytes()
    passages.unlink()
    switch(index_dir, broken.name)
    opener = CountingOpener(delay=0)
    holder = SearcherHolder(settings, opener=opener)
    assert not holder.load() and holder.searcher is None and "passages.jsonl" in (holder.error or "")
    monkeypatch.setattr(app_module, "RELOAD_CHECK_SECONDS", 0.0)
    for _ in range(3):  # unchanged: not retried
        holder.maybe_reload()
    assert opener.calls == 1
    passages.write_bytes(kept)
    holder.maybe_reload()  # nothing is served yet, so this request loads it itself
    assert holder.searcher is not None and holder.error is None and holder.version == broken
    assert opener.calls == 2
