"""What the benchmark parts share: the dev queries, how to start ``plansearch``,
percentiles, a process's resident memory, the seed index."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np

from indexer.config import PROJECT_ROOT, Settings

GOLD = PROJECT_ROOT.parent / "shared" / "eval" / "dev.jsonl"
# Used when the dev set is not beside the repository: a few typical questions.
FALLBACK_QUERIES = (
    "学前三年毛入园率要达到多少?",
    "学校会组织所有孩子学游泳吗?",
    "危化品 报废",
    "教师培训",
    "How many new kindergartens will be built?",
)


def gold_path() -> Path:
    return Path(os.environ.get("PLANSEARCH_BENCH_GOLD", str(GOLD)))


def dev_queries() -> list[str]:
    """The dev set's query texts (or a few built-in ones without it)."""
    path = gold_path()
    if not path.is_file():
        return list(FALLBACK_QUERIES)
    from search.eval import read_gold

    return [q.query for q in read_gold(path)]


def plansearch_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m api.cli``
    (run with the repository as working directory)."""
    script = shutil.which("plansearch", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "api.cli"]


def command_name() -> str:
    """How ``plansearch_command`` runs, for notes."""
    return "plansearch (console script)" if len(plansearch_command()) == 1 else "python -m api.cli"


def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without PLANSEARCH_* settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANSEARCH_")}
    env.update(overrides)
    return env


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident set size of a running process (or its part ``RssAnon``/``RssFile``), in MB (MiB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_index(settings: Settings) -> Path:
    """The index of the settings' home, built first (not timed) if there is none."""
    from indexer.index import current_version

    index_dir = settings.resolved_index_dir
    if current_version(index_dir) is None:
        from indexer.build import build_index

        build_index(settings, progress=False, say=lambda _line: None)
    return index_dir
