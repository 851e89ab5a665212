"""Tests for the BM25 tokenizer: user dictionary, normalisation, filtering, pluggable splitter."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from indexer.tokenize import STOPWORDS, USER_DICT, Tokenizer, normalize, tokenize_in_background


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("全面落实控辍保学措施", "控辍保学"),
        ("稳步推进县管校聘改革", "县管校聘"),
        ("严格落实双减政策", "双减"),
        ("做好课后服务工作", "课后服务"),
        ("深入推进区管校聘管理改革", "区管校聘"),
    ],
)
def test_user_dictionary_terms_stay_whole(tokenizer: Tokenizer, text: str, term: str) -> None:
    assert term in tokenizer(text)


def test_user_dictionary_terms_are_not_cut_apart(tokenizer: Tokenizer) -> None:
    # Plain jieba cuts these into 控辍/保学 and 县管/校聘.
    assert not {"控辍", "保学"} & set(tokenizer("控辍保学"))
    assert not {"县管", "校聘"} & set(tokenizer("县管校聘"))


def test_user_dictionary_file_lists_the_terms() -> None:
    terms = {line.split()[0] for line in USER_DICT.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert {"控辍保学", "县管校聘", "双减", "课后服务"} <= terms


def test_full_width_folding(tokenizer: Tokenizer) -> None:
    assert normalize("ＡＢＣ１２３") == "abc123"
    assert tokenizer("ＡＢＣ１２３") == ["abc123"]
    assert tokenizer("ＡＢＣ１２３") == tokenizer("abc123") == tokenizer("ABC123")
    assert "app" in tokenizer("做好教育ＡＰＰ应用程序的备案管理")
    assert "2023" in tokenizer("２０２３年全县教育工作要点")


def test_normalize_folds_punctuation() -> None:
    assert normalize("（十一）提升：ＡＢ，") == "(十一)提升:ab,"


def test_punctuation_dropped(tokenizer: Tokenizer) -> None:
    assert tokenizer("，。！？、；：“”‘’（）《》【】…—") == []
    tokens = tokenizer("落实《湖北省校车安全条例》,加强校车安全管理。")
    assert tokens
    assert all(any(ch.isalnum() for ch in token) for token in tokens)
    assert "《" not in tokens and "," not in tokens and "。" not in tokens


def test_stopwords_dropped(tokenizer: Tokenizer) -> None:
    tokens = tokenizer("学校的食堂和教师与学生")
    assert {"学校", "食堂", "教师", "学生"} <= set(tokens)
    assert not set(tokens) & {"的", "和", "与"}
    assert tokenizer("the plan of a school") == ["plan", "school"]
    assert not set(tokenizer("进一步推进工作")) & STOPWORDS


def test_pluggable_splitter_is_used() -> None:
    calls: list[str] = []

    def splitter(text: str) -> Iterable[str]:
        calls.append(text)
        return text.split()

    tokens = Tokenizer(splitter=splitter)("ＡＢＣ 控辍 保学 的 ， 课后服务")
    assert calls == ["abc 控辍 保学 的 , 课后服务"]  # the splitter sees normalised text
    assert tokens == ["abc", "控辍", "保学", "课后服务"]
    assert Tokenizer(splitter=str.split)("县管校聘改革 双减") == ["县管校聘改革", "双减"]


def test_custom_stopwords() -> None:
    tokenizer = Tokenizer(splitter=str.split, stopwords=frozenset({"工作"}))
    assert tokenizer("工作 的 要点") == ["的", "要点"]


def test_empty_and_blank_text(tokenizer: Tokenizer) -> None:
    assert tokenizer("") == []
    assert tokenizer("   \n\t ") == []
    assert Tokenizer(splitter=str.split)("") == []


def test_many(tokenizer: Tokenizer) -> None:
    texts = ["落实双减政策", "", "做好课后服务"]
    assert tokenizer.many(texts) == [tokenizer(t) for t in texts]
    assert tokenizer.many(iter(texts))[1] == []


def test_tokens_are_deterministic_across_threads(tokenizer: Tokenizer) -> None:
    text = "全面落实控辍保学措施,稳步推进县管校聘改革,做好课后服务。"
    expected = tokenizer(text)
    results: list[list[str]] = []

    def run() -> None:
        results.append(Tokenizer()(text))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


# -- jieba's word table, cached as a pickle -------------------------------------------------------
SAMPLE = "全面落实控辍保学措施，推进县管校聘改革，学前三年毛入园率达到91%以上。Smart campus 建设"


def _fresh_jieba(monkeypatch: pytest.MonkeyPatch, home) -> Tokenizer:  # type: ignore[no-untyped-def]
    """A Tokenizer whose jieba is loaded anew, with PLANSEARCH_HOME at ``home``."""
    from indexer import tokenize

    monkeypatch.setenv("PLANSEARCH_HOME", str(home))
    monkeypatch.setattr(tokenize, "_jieba_tokenizer", None)
    return Tokenizer()


def test_word_table_cache_gives_the_same_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    from indexer import tokenize

    expected = tokenizer(SAMPLE)
    first = _fresh_jieba(monkeypatch, tmp_path)
    assert first(SAMPLE) == expected
    cached = list((tmp_path / "cache").glob("jieba-*.pickle"))
    assert len(cached) == 1
    second = _fresh_jieba(monkeypatch, tmp_path)  # now read from the cache
    assert second(SAMPLE) == expected
    assert tokenize._jieba().FREQ["控辍保学"] == 20  # the plan-term dictionary is in the cached table


def test_a_damaged_or_hostile_cache_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    import os
    import pickle

    from indexer import tokenize

    _fresh_jieba(monkeypatch, tmp_path)(SAMPLE)
    (path,) = (tmp_path / "cache").glob("jieba-*.pickle")
    marker = tmp_path / "executed"

    class Hostile:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.mkdir, (str(marker),))

    for payload in (b"not a pickle", pickle.dumps(({"a": 1}, Hostile())), pickle.dumps([1, 2]), b""):
        path.write_bytes(payload)
        assert tokenize._read_word_table(path) is None
        assert _fresh_jieba(monkeypatch, tmp_path)(SAMPLE) == tokenizer(SAMPLE)
    assert not marker.exists()


def test_an_unwritable_home_only_skips_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "home"
    blocker.write_text("a file where the cache directory would go", encoding="utf-8")
    assert _fresh_jieba(monkeypatch, blocker)(SAMPLE) == tokenizer(SAMPLE)


# -- BM25 tokens made in a child process ---------------------------------------------------------

def test_tokens_from_the_child_process_equal_the_tokenizer() -> None:
    texts = ["全面落实控辍保学措施", "", "Smart campus 建设", "学前三年毛入园率达到91%以上"] * 50
    assert tokenize_in_background(texts)() == Tokenizer().many(texts)
    assert tokenize_in_background([])() == []


ORPHAN_SCRIPT = r"""
import os, signal, sys, time
import multiprocessing
from indexer.tokenize import tokenize_in_background
tokenize_in_background(["推进义务教育优质均衡发展，深化教育评价改革"] * 300000)
time.sleep(0.5)
print(" ".join(str(c.pid) for c in multiprocessing.active_children()), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_tokenizer_process_ends_when_its_parent_is_killed() -> None:
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", ORPHAN_SCRIPT], cwd=Path(__file__).resolve().parents[2], capture_output=True, timeout=60
    )
    (child,) = (int(pid) for pid in done.stdout.split())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(child, 9)
    raise AssertionError("the BM25 tokenizer process outlived its killed parent")
