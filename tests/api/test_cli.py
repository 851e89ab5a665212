"""The ``plansearch`` command line, run as a real subprocess on the seed index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.schema import ResultOut, SearchOut, search_payload

REPO_ROOT = Path(__file__).resolve().parents[2]
CANGZHOU_FILE = "corpus/003_9ac541179e48cb99.txt"
ANSI = "\x1b["


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory, seed_index: Path, model_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANSEARCH_") and k != "NO_COLOR"}
    env.update(
        PLANSEARCH_HOME=str(tmp_path_factory.mktemp("cli-home")),
        PLANSEARCH_INDEX_DIR=str(seed_index),
        PLANSEARCH_MODEL_DIR=str(model_dir),
        # A colour terminal type: colour must still be off because stdout is a pipe.
        TERM="xterm-256color",
        PYTHONIOENCODING="utf-8",
    )
    return env


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("plansearch: error: ")
    assert proc.stdout == ""
    return lines[0]


def test_search_json_has_the_api_shape(cli_env: dict[str, str], searcher) -> None:  # type: ignore[no-untyped-def]
    proc = run(cli_env, "search", "危化品 报废", "--json")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert set(body) == set(SearchOut.model_fields)
    assert body["query"] == "危化品 报废"
    assert body["total"] == len(body["results"]) == 10
    for result in body["results"]:
        assert set(result) == set(ResultOut.model_fields)
    first = body["results"][0]
    assert first["citation"].startswith("《2020年某区教育工作要点2》 五、") and first["citation"].endswith("第15条")
    # The same results as the library (and so the API) gives for the same index.
    expected = search_payload(searcher.search("危化品 报废", k=10))
    assert [r["citation"] for r in body["results"]] == [r["citation"] for r in expected["results"]]  # type: ignore[index]
    assert [r["highlights"] for r in body["results"]] == [r["highlights"] for r in expected["results"]]  # type: ignore[index]


def test_search_filters_and_k(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "search", "学前教育", "-k", "4", "--year", "2023", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert 0 < len(results) <= 4
    assert {r["year"] for r in results} == {2023}


def test_search_plain_output_marks_terms_without_ansi(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "search", "危化品 报废", "-k", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert ANSI not in out
    assert out.startswith("1. 《2020年某区教育工作要点2》 五、")
    assert "【危化品】" in out and "【报废】" in out
    assert "\n2. 《" in out and "\n3. 《" in out and "\n4. 《" not in out


def test_ask_prints_answer_and_citation(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "ask", "学前三年毛入园率要达到多少")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert ANSI not in out
    lines = out.splitlines()
    sentence = next(line for line in lines if line.startswith("学前三年毛入园率达到"))
    assert "91%" in sentence
    citation = lines[lines.index(sentence) + 1]
    assert citation == "—— 《沧州市2020年教育工作要点》 二、主要任务目标 (六)"
    assert "相关条目" in out


def test_ask_json(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "ask", "学前三年毛入园率要达到多少", "--json", "-k", "3")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert set(body) == {"query", "took_ms", "answer", "passages"}
    assert body["answer"]["item"] == "(六)" and "91%" in body["answer"]["text"]
    assert len(body["passages"]) <= 3


@pytest.mark.parametrize("query", ["", "   "])
@pytest.mark.parametrize("command", ["search", "ask"])
def test_empty_query_is_exit_2_with_one_line(cli_env: dict[str, str], command: str, query: str) -> None:
    proc = run(cli_env, command, query)
    assert proc.returncode == 2
    assert "empty" in one_error_line(proc)


def test_too_long_query_is_exit_2(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "search", "的" * 501)
    assert proc.returncode == 2
    assert "500" in one_error_line(proc)


@pytest.mark.parametrize("k", ["0", "101", "-3"])
@pytest.mark.parametrize("command", ["search", "ask"])
def test_bad_k_is_exit_2(cli_env: dict[str, str], command: str, k: str) -> None:
    proc = run(cli_env, command, "学前教育", "-k", k)
    assert proc.returncode == 2
    assert "-k" in one_error_line(proc)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PLANSEARCH_QUERY_EMBEDDER", "onnx", "PLANSEARCH_QUERY_EMBEDDER='onnx' is not an embedder (expected one of"),
        ("PLANSEARCH_PASSAGE_EMBEDDER", "gpu", "PLANSEARCH_PASSAGE_EMBEDDER='gpu' is not an embedder"),
        ("PLANSEARCH_TOP_K", "five", "PLANSEARCH_TOP_K='five' is not a valid int"),
    ],
)
@pytest.mark.parametrize("command", ["search", "ask", "index"])
def test_unusable_setting_is_exit_2_with_one_line(
    cli_env: dict[str, str], variable: str, value: str, message: str, command: str
) -> None:
    proc = run({**cli_env, variable: value}, command, *(["教育"] if command != "index" else []))
    assert proc.returncode == 2
    assert message in one_error_line(proc)


def test_missing_index_says_to_run_index(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = run(cli_env, "search", "学前教育", "--index", str(tmp_path / "nowhere"))
    assert proc.returncode == 1
    assert "plansearch index" in one_error_line(proc)
    env = {**cli_env, "PLANSEARCH_INDEX_DIR": str(tmp_path / "also-nowhere")}
    proc = run(env, "ask", "学前教育")
    assert proc.returncode == 1
    assert "plansearch index" in one_error_line(proc)


def test_parse_json_one_object_per_document(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "parse", CANGZHOU_FILE, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["title"] == "沧州市2020年教育工作要点"
    assert doc["source_file"] == "003_9ac541179e48cb99.txt"
    assert doc["year"] == 2020 and doc["region"] == "沧州市"
    passages = doc["passages"]
    assert len(passages) > 100
    for p in passages:
        assert set(p) == {"section", "item", "subitem", "citation", "text"}
        assert p["citation"].startswith("《沧州市2020年教育工作要点》") and p["text"]
    target = [p for p in passages if p["section"] == "二、主要任务目标" and p["item"] == "(六)"]
    assert len(target) == 1 and "91%" in target[0]["text"]
    assert any(p["subitem"] for p in passages)


def test_parse_file_with_two_documents(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "parse", "corpus/000_699d69580ee34bfa.txt", "--json")
    assert proc.returncode == 0, proc.stderr
    titles = [json.loads(line)["title"] for line in proc.stdout.strip().splitlines()]
    assert titles == ["2020年某区教育工作要点1", "2020年某区教育工作要点2"]


def test_parse_plain_outline(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "parse", CANGZHOU_FILE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("《沧州市2020年教育工作要点》")
    assert "  二、主要任务目标\n" in proc.stdout and "    (六) 学前三年毛入园率达到91%" in proc.stdout


def test_parse_missing_file_is_exit_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = run(cli_env, "parse", str(tmp_path / "missing.txt"))
    assert proc.returncode == 2
    assert "no such file" in one_error_line(proc)


def test_usage_errors_are_exit_2(cli_env: dict[str, str]) -> None:
    proc = run(cli_env, "search")
    assert proc.returncode == 2 and "usage" in proc.stderr
    proc = run(cli_env, "search", "学前", "-k", "abc")
    assert proc.returncode == 2 and "usage" in proc.stderr
