"""A damaged or foreign index at start-up: ``plansearch serve`` (a real subprocess) keeps running and
reports not-ready with one line saying what to run, ``plansearch search`` exits with that line, and
the service recovers on its own once a sound version is put back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench.load import serve, server_env
from indexer.index import CURRENT, MANIFEST, current_version

REPO_ROOT = Path(__file__).resolve().parents[2]


def _truncate_faiss(version: Path) -> None:
    path = next(version.rglob("faiss.index"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_faiss_bits(version: Path) -> None:
    """Same size, some bits flipped in the middle (what a bad disk or a bad copy does)."""
    path = next(version.rglob("faiss.index"))
    data = bytearray(path.read_bytes())
    for at in range(len(data) // 2, len(data) // 2 + 16):
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def _remove_passages(version: Path) -> None:
    next(version.rglob("passages.jsonl")).unlink()


def _manifest_of(field: str, value: object) -> Callable[[Path], None]:
    def edit(version: Path) -> None:
        path = version / MANIFEST
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["compatibility"][field] = value
        path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")

    return edit


# damage -> (what the one line must say, what it must tell to run)
DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "truncated faiss.index": (_truncate_faiss, "faiss.index", "plansearch index --rebuild"),
    "bit-flipped faiss.index": (_flip_faiss_bits, "faiss.index", "plansearch index --rebuild"),
    "missing passages.jsonl": (_remove_passages, "passages.jsonl", "plansearch index --rebuild"),
    "another model's weights": (
        _manifest_of("weights_sha256", "0" * 64),
        "weights_sha256",
        "plansearch index --rebuild",
    ),
    "another model's name": (
        _manifest_of("model_name", "multilingual-e5-large"),
        "model_name",
        "plansearch index --rebuild",
    ),
}


def copy_current(seed_index: Path, dest: Path) -> Path:
    """A private copy of the seed index's current version (real files, not links)."""
    version = current_version(seed_index)
    assert version is not None
    dest.mkdir(parents=True)
    shutil.copytree(version, dest / version.name)
    os.symlink(version.name, dest / CURRENT)
    return dest


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_index_is_refused_at_start_up(damage: str, seed_index: Path, model_dir: Path, tmp_path: Path) -> None:
    harm, names, to_run = DAMAGE[damage]
    index_dir = copy_current(seed_index, tmp_path / "index")
    harm(current_version(index_dir))  # type: ignore[arg-type]
    env = server_env(tmp_path / "home", tmp_path / "corpus", model_dir, token="t0ken")

    with serve(index_dir, env, tmp_path / "serve.log", ready="any") as served:
        health = httpx.get(served.base + "/api/health", timeout=10)
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "not_ready"
        reason = body["reason"]
        assert "\n" not in reason and names in reason and reason.endswith(f"run `{to_run}`"), reason
        # The API says the same; the process is still up, not crash-looping.
        search = httpx.get(served.base + "/api/search", params={"q": "学前教育"}, headers={"X-API-Token": "t0ken"})
        assert search.status_code == 503 and search.json()["error"] == "index_unavailable"
        assert reason in search.json()["detail"]
        time.sleep(2.5)  # past the reload check interval: still refused, still running
        assert httpx.get(served.base + "/api/health", timeout=10).json()["reason"] == reason
        assert served.proc.poll() is None
        log = served.log()
        # One line on the console says it, without a traceback.
        assert "Traceback" not in log, log
        assert [line for line in log.splitlines() if to_run in line] == [f"plansearch: {reason}"], log

    cli = subprocess.run(
        [sys.executable, "-m", "api.cli", "search", "学前教育", "--index", str(index_dir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert cli.returncode == 1
    assert cli.stdout == ""
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1, cli.stderr
    assert lines[0].startswith("plansearch: error: ") and names in lines[0] and lines[0].endswith(f"`{to_run}`")


def test_not_ready_service_recovers_when_a_sound_version_is_restored(
    seed_index: Path, model_dir: Path, tmp_path: Path
) -> None:
    index_dir = copy_current(seed_index, tmp_path / "index")
    good = current_version(index_dir)
    assert good is not None
    backup = tmp_path / "backup"
    shutil.copytree(good, backup)
    _remove_passages(good)
    env = server_env(tmp_path / "home", tmp_path / "corpus", model_dir)
    with serve(index_dir, env, tmp_path / "serve.log", ready="any") as served:
        assert httpx.get(served.base + "/api/health", timeout=10).status_code == 503
        # The restore of docs/operations.md: unpack the backup as a version, swap `current`.
        restored = index_dir / "v-29990101T000000000000-1"
        shutil.copytree(backup, restored)
        os.symlink(restored.name, index_dir / ".current-new")
        os.replace(index_dir / ".current-new", index_dir / CURRENT)
        deadline = time.monotonic() + 30
        while (health := httpx.get(served.base + "/api/health", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, health.text
            time.sleep(0.3)
        assert health.json()["index_version"] == restored.name
        r = httpx.get(served.base + "/api/search", params={"q": "危化品 报废"}, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["citation"].endswith("第15条")
        assert served.proc.poll() is None
