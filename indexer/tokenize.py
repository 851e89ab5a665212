"""Lexical tokens for BM25, shared by indexing and querying.

A ``Tokenizer`` normalises text (NFKC, lower case), splits it with a
pluggable splitter (jieba's search mode by default, with a user dictionary of
plan-document terms so 控辍保学 or 县管校聘 stay whole), and drops
punctuation and function words.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import pickle
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

# Bump when tokens change: BM25 postings of another version are rebuilt.
TOKENIZER_VERSION = "1"
USER_DICT = Path(__file__).with_name("data") / "plan_terms.txt"

# Function words that carry no meaning for retrieval.
STOPWORDS = frozenset(
    "的 了 和 与 及 等 在 是 对 为 将 把 要 并 或 以 于 中 其 这 那 也 都 就 而 被 从 向 到 让 给 之 "
    "个 着 又 还 做 好 进一步 a an the of and or to in on for is are be by with at as".split()
)
# A token must contain a letter, digit or CJK character.
WORDLIKE = re.compile(r"[0-9a-z\u3400-\u9fff]")

Splitter = Callable[[str], Iterable[str]]

_jieba_lock = threading.Lock()
_jieba_tokenizer = None


def jieba_splitter(text: str) -> Iterable[str]:
    """jieba's search mode: words plus the shorter words inside long ones."""
    return _jieba().cut_for_search(text, HMM=True)


def _jieba():  # type: ignore[no-untyped-def]
    # Loaded on first use, not at import: jieba's dictionary takes ~0.5 s.
    global _jieba_tokenizer
    with _jieba_lock:
        if _jieba_tokenizer is None:
            _jieba_tokenizer = _load_jieba()
    return _jieba_tokenizer


def _load_jieba():  # type: ignore[no-untyped-def]
    """jieba with the plan-term dictionary, its word table read from our cache when there is one.

    jieba keeps its own cache as marshal data, which takes 0.5 s to read; the
    same table as a pickle takes 0.17 s, and that is most of a cold
    ``plansearch search``. The pickle is kept under PLANSEARCH_HOME (not the
    shared /tmp) and read with an unpickler that refuses every class, so it
    can only ever yield dicts, strings and numbers.
    """
    import jieba
    from jieba import finalseg

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    cache = _jieba_cache_path(jieba)
    state = _read_word_table(cache)
    if state is not None:
        tokenizer.FREQ, tokenizer.total = state
        tokenizer.initialized = True
        for word in _zero_frequency_words():  # load_userdict also tells the HMM never to join these
            finalseg.add_force_split(word)
        return tokenizer
    tokenizer.initialize()
    tokenizer.load_userdict(str(USER_DICT))
    _write_word_table(cache, (tokenizer.FREQ, tokenizer.total))
    return tokenizer


def _jieba_cache_path(jieba) -> Path:  # type: ignore[no-untyped-def]
    from indexer.config import Settings

    dictionary = Path(jieba.__file__).with_name("dict.txt").stat()
    key = hashlib.sha256()
    for part in (jieba.__version__, TOKENIZER_VERSION, dictionary.st_size, dictionary.st_mtime_ns):
        key.update(f"{part}\0".encode())
    key.update(USER_DICT.read_bytes())
    return Settings.from_env().home / "cache" / f"jieba-{key.hexdigest()[:16]}.pickle"


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a word table")


def _read_word_table(path: Path) -> tuple[dict[str, int], int] | None:
    try:
        with path.open("rb") as handle:
            freq, total = _PlainUnpickler(handle).load()
    except (OSError, pickle.UnpicklingError, ValueError, EOFError, TypeError):
        return None
    return (freq, total) if isinstance(freq, dict) and isinstance(total, int) else None


def _write_word_table(path: Path, state: tuple[dict[str, int], int]) -> None:
    """Written beside and renamed into place; a cache that cannot be written is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as exc:
        logging.getLogger(__name__).debug("jieba word table not cached at %s: %s", path, exc)


def _zero_frequency_words() -> list[str]:
    words = []
    for line in USER_DICT.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "0":
            words.append(parts[0])
    return words


def normalize(text: str) -> str:
    """NFKC folds full-width letters, digits and punctuation; then lower case."""
    return unicodedata.normalize("NFKC", text).lower()


class Tokenizer:
    """Text -> BM25 tokens."""

    def __init__(
        self,
        splitter: Splitter | None = None,
        stopwords: frozenset[str] = STOPWORDS,
    ) -> None:
        self.splitter = splitter or jieba_splitter
        self.stopwords = stopwords

    def __call__(self, text: str) -> list[str]:
        tokens = []
        for token in self.splitter(normalize(text)):
            token = token.strip()
            if token and token not in self.stopwords and WORDLIKE.search(token):
                tokens.append(token)
        return tokens

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(text) for text in texts]


def tokenize_in_background(texts: list[str]) -> Callable[[], list[list[str]]]:
    """BM25 tokens of ``texts``, made in a child process; call the result to wait for them.

    jieba is pure Python: in a thread it would hold the GIL that the embedding
    threads need between their calls (seed corpus: encoding 3.2 s alone, 4.1 s
    beside jieba in a thread). A forked child starts at once; a process that
    already runs threads starts a clean one instead (fork would copy their
    locks). The child ends as soon as its parent does, however that ends.
    """
    methods = multiprocessing.get_all_start_methods()
    forked = "fork" in methods and threading.active_count() == 1
    context = multiprocessing.get_context(
        "fork" if forked else "forkserver" if "forkserver" in methods else "spawn"
    )
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(
        target=_tokenize_for_parent,
        args=(texts, reader, writer, os.getpid(), forked),
        name="bm25-tokens",
        daemon=True,
    )
    child.start()
    writer.close()

    def result() -> list[list[str]]:
        try:
            return reader.recv()
        except EOFError as exc:
            child.join()
            raise RuntimeError(f"the BM25 tokenizer process ended without a result (exit {child.exitcode})") from exc
        finally:
            reader.close()
            child.join()

    return result


def _tokenize_for_parent(texts: list[str], reader, writer, parent: int, forked: bool) -> None:  # type: ignore[no-untyped-def]
    reader.close()  # a forked child's copy: the parent's end must be the only one, so a dead parent is seen
    tokenizer = Tokenizer()
    tokens = []
    for n, text in enumerate(texts):
        if n % 1000 == 0 and not _alive(parent, forked):
            os._exit(1)
        tokens.append(tokenizer(text))
    try:
        writer.send(tokens)
    except OSError:  # the parent is gone
        os._exit(1)


def _alive(parent: int, forked: bool) -> bool:
    if forked:
        return os.getppid() == parent  # an orphan is adopted by another process
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
