"""samedge bench: statistics, FLOP counting, JSON schema, Markdown/plots, and the CI regression gate."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from samedge.bench.flops import graph_flops
from samedge.bench.gate import compare
from samedge.bench.machine import peak_gflops
from samedge.bench.stats import TimingPlan, summarize, time_calls, time_interleaved
from samedge.errors import InputError

SCHEMA = Path(__file__).parents[1] / "src" / "samedge" / "bench" / "schema" / "bench-v1.schema.json"


def test_summarize_matches_numpy_definitions():
    s = summarize(list(range(1, 101)))
    assert (s.n, s.p50, s.min, s.max, s.mean) == (100, 50.5, 1, 100, 50.5)
    assert s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)
    assert s.std == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert s.spread == pytest.approx((90.1 - 50.5) / 50.5)
    one = summarize([7.0])
    assert (one.p50, one.p99, one.std) == (7.0, 7.0, 0.0)
    for bad in ([], [1.0, float("nan")], [-1.0], [[1.0, 2.0]]):
        with pytest.raises(InputError):
            summarize(bad)


def test_time_calls_follows_the_plan():
    calls = []
    samples = time_calls(lambda: calls.append(1), TimingPlan(warmup=2, min_runs=4, max_runs=4, min_seconds=0))
    assert len(samples) == 4 and len(calls) == 6 and all(t >= 0 for t in samples)
    samples = time_calls(lambda: None, TimingPlan(warmup=0, min_runs=1, max_runs=50, min_seconds=0.05))
    assert 1 <= len(samples) <= 50
    with pytest.raises(InputError, match="bad timing plan"):
        TimingPlan(min_runs=5, max_runs=2)


def test_time_interleaved_takes_the_calls_in_rounds():
    order = []
    a, b = time_interleaved([lambda: order.append("a"), lambda: (order.append("b"), time.sleep(0.002))],
                            TimingPlan(warmup=1, min_runs=3, max_runs=3, min_seconds=0))
    # warm-up of each, then rounds a, b, a, b, ...: the i-th samples of both lists come from the same round
    assert order == ["a", "b"] + ["a", "b"] * 3
    assert len(a) == len(b) == 3 and min(b) >= 2.0 > max(a)
    with pytest.raises(InputError, match="at least one"):
        time_interleaved([], TimingPlan())


def test_paired_ratio_is_taken_per_round():
    from samedge.bench.paired import paired_ratio
    # round 3 is slow on both sides (the machine drifted): per round official / samedge = 2.5, 1.5, 3.0
    r = paired_ratio([10.0, 20.0, 30.0], [25.0, 30.0, 90.0])
    assert r.ratio == 2.5 and r.rounds == 3
    assert r.ratio_p10 == pytest.approx(1.7) and r.ratio_p90 == pytest.approx(2.9)
    assert (r.samedge_p50_ms, r.official_p50_ms) == (20.0, 30.0)  # the unpaired ratio of p50s would say 1.5


def test_flops_of_matmul_gemm_and_conv(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("Conv", ["img", "k"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Gemm", ["a", "b"], ["g"], transB=1)]
    inits = [onnx.numpy_helper.from_array(np.zeros((8, 16), np.float32), "w"),
             onnx.numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "k"),
             onnx.numpy_helper.from_array(np.zeros((32, 8), np.float32), "b")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 8]),
                                           helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8]),
                                           helper.make_tensor_value_info("a", TensorProto.FLOAT, [5, 8])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "c", "g")],
                              inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    f = graph_flops(path, {"x": (2, 4, 8)})
    assert f["by_op"] == {"MatMul": 2 * 2 * 4 * 16 * 8, "Conv": 2 * (4 * 8 * 8) * (3 * 3 * 3), "Gemm": 2 * 5 * 32 * 8}
    assert f["total"] == sum(f["by_op"].values()) and f["unresolved_nodes"] == 0


def test_peak_gflops_formula():
    assert peak_gflops(("avx512f",), 2, 2600.0) == (332.8, "2 cores x 2.60 GHz x 64 fp32 FLOP/cycle (2 FMA pipes)")
    assert peak_gflops(("avx2",), 4, 3000.0)[0] == 384.0
    assert peak_gflops((), 4, None) == (None, "clock unknown")


def _synthetic(encoder=100.0, decoder=10.0, e2e=130.0, base=(200.0, 20.0, 250.0), scale=1.0) -> dict:
    def stages(enc, dec, e2e_):
        mk = lambda v: {"p50": v * scale}  # noqa: E731
        return {"encoder": mk(enc), "decoder_1pt": mk(dec), "end_to_end": mk(e2e_)}
    return {"schema": "samedge-bench", "runs": [
        {"id": "m/onnxruntime-cpu-default", "kind": "samedge", "model_type": "m", "stages": stages(encoder, decoder, e2e)},
        {"id": "m/baseline-official-onnx-fp32", "kind": "baseline-official-onnx", "model_type": "m",
         "stages": stages(*base)}]}


def test_gate_passes_noise_and_a_uniformly_slower_machine():
    ref = _synthetic()
    assert compare(_synthetic(scale=1.6), ref, 1.15).passed  # whole machine 60% slower: ratios unchanged
    assert compare(_synthetic(encoder=110.0), ref, 1.15).passed  # 10% noise on one stage: within 1.15


def test_gate_fails_a_synthetic_regression_and_names_it():
    result = compare(_synthetic(encoder=130.0, scale=0.9), _synthetic(), 1.15)
    assert not result.passed
    [reg] = result.regressions
    assert (reg.run, reg.stage) == ("m/onnxruntime-cpu-default", "encoder") and reg.slowdown == pytest.approx(1.3)
    assert "REGRESSION m/onnxruntime-cpu-default encoder" in result.report() and "gate: FAILED" in result.report()


def test_gate_fails_a_missing_run_and_needs_the_baseline():
    current = _synthetic()
    reference = _synthetic()
    reference["runs"].append({**copy.deepcopy(reference["runs"][0]), "id": "m/openvino-cpu-f32"})
    result = compare(current, reference, 1.15)
    assert result.missing == ("m/openvino-cpu-f32",) and not result.passed
    no_base = _synthetic()
    no_base["runs"].pop()
    with pytest.raises(InputError, match="no baseline-official-onnx run"):
        compare(no_base, reference, 1.15)
    with pytest.raises(InputError, match="max_slowdown"):
        compare(current, reference, 0.9)


def test_bench_cli_json_schema_table_plots_and_gate(tiny_bundle, tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    from samedge.cli import main
    out = tmp_path / "bench"
    assert main(["bench", str(tiny_bundle), "--device", "cpu,npu", "--quick", "--out", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    jsonschema.validate(result, json.loads(SCHEMA.read_text()))
    kinds = {r["kind"] for r in result["runs"]}
    assert kinds == {"samedge", "baseline-official-onnx", "baseline-pytorch"}
    [ours] = [r for r in result["runs"] if r["kind"] == "samedge"]
    for stage in ("preprocess", "encoder", "context", "decoder_1pt", "decoder_2pt", "decoder_5pt", "decoder_box",
                  "decoder_mask", "predict_1pt", "predict_2pt", "predict_5pt", "predict_box", "predict_mask",
                  "postprocess", "postprocess_single", "end_to_end"):
        s = ours["stages"][stage]
        assert s["n"] == 3 and 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert ours["stages"]["end_to_end"]["p50"] > ours["stages"]["encoder"]["p50"]  # it includes the encoder
    assert set(ours["speedup"]) == {"baseline-official-onnx", "baseline-pytorch", "official_same_backend"}
    assert ours["speedup"]["official_same_backend"]["baseline"] == "baseline-official-onnx"
    # predict() is timed against its own graph: the split decoder's prompt graphs, the mask variant for "mask"
    assert ours["split_decoder"] and ours["decoder_graphs_used"] == {
        "1pt": "prompt_p1.onnx", "2pt": "prompt_p2.onnx", "5pt": "prompt.onnx", "box": "prompt_p1.onnx",
        "mask": "prompt_mask_p1.onnx", "batch16": "prompt.onnx"}
    # the five prompt kinds and predict_batch of 16 one-click prompts (one call of the dynamic prompt graph)
    assert set(ours["predict_overhead_ms"]) == set(ours["predict_overhead_spread_ms"]) == {
        "1pt", "2pt", "5pt", "box", "mask", "batch16"}
    for stage in ("decoder_batch16", "predict_batch16", "postprocess_batch16"):
        assert ours["stages"][stage]["n"] == 3
    # 16 prompts of 3 masks cost more to upsample than one prompt's 3
    assert ours["stages"]["postprocess_batch16"]["p50"] > ours["stages"]["postprocess"]["p50"]
    for kind, (low, high) in ours["predict_overhead_spread_ms"].items():
        assert low <= ours["predict_overhead_ms"][kind] <= high
    assert ours["flops"]["decoder_1pt"] * 3 <= ours["flops"]["decoder_full_1pt"]
    assert ours["roofline"]["encoder"]["gflop"] > 1 and ours["memory_mib"]["peak"] > 0
    assert ours["model_bytes"]["encoder"] == json.loads((tiny_bundle / "manifest.json").read_text())["encoder"]["bytes"]
    # the NPU is missing here: a row with the reason, not a silent drop
    [npu] = [u for u in result["unavailable"] if u["id"].endswith("onnxruntime-npu-default")]
    assert "npu" in npu["reason"].lower()
    table = (out / "bench.md").read_text()
    assert "| tiny/onnxruntime-cpu-default |" in table and "unavailable:" in table
    assert "batch16: predict_batch" in table
    # predict() and end to end against the official export, both timed in the same rounds
    paired = ours["paired_vs_official"]
    assert set(paired) == {"baseline", "1pt", "2pt", "5pt", "box", "mask", "end_to_end"}
    assert paired["baseline"] == "official-onnx"
    for kind, p in paired.items():
        if kind != "baseline":
            assert p["rounds"] == 3 and p["ratio_p10"] <= p["ratio"] <= p["ratio_p90"]
            assert p["samedge_p50_ms"] > 0 and p["official_p50_ms"] > 0
    # end to end runs the encoder on both sides: slower than a prompt on both sides
    assert paired["end_to_end"]["samedge_p50_ms"] > paired["1pt"]["samedge_p50_ms"]
    assert paired["end_to_end"]["official_p50_ms"] > paired["1pt"]["official_p50_ms"]
    assert "timed in the same rounds" in table and "tiny/onnxruntime-cpu-default vs official-onnx: 1pt " in table
    assert (out / "stages.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    # the gate: against a reference where samedge was 3x slower (relative to the same-run baseline) it passes,
    # against one where it was 3x faster it fails; factors far outside --quick timing noise
    for name, factor in (("slow", 3.0), ("fast", 1 / 3)):
        doctored = copy.deepcopy(result)
        for r in doctored["runs"]:
            if r["kind"] == "samedge":
                for s in r["stages"].values():
                    s["p50"] *= factor
        (tmp_path / f"{name}.json").write_text(json.dumps(doctored))
    # in-process: the 3x-faster reference names the regressed stages; the 3x-slower one passes
    gate = compare(result, json.loads((tmp_path / "fast.json").read_text()), 1.15)
    assert not gate.passed and "encoder" in gate.report()
    capsys.readouterr()
    assert main(["bench", str(tiny_bundle), "--quick", "--compare", str(tmp_path / "slow.json")]) == 0
    assert "gate: passed" in capsys.readouterr().out
    assert main(["bench", str(tiny_bundle), "--quick", "--compare", str(tmp_path / "fast.json")]) == 4
    assert "REGRESSION tiny/onnxruntime-cpu-default" in capsys.readouterr().out


def test_profile_sums_ort_node_times_by_op_type(tiny_bundle):
    from samedge.bench.profile import profile_onnx
    feeds = {"image": np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)}
    p = profile_onnx(tiny_bundle / "encoder.onnx", feeds, runs=2)
    ops = {r["op"] for r in p["by_op_type"]}
    assert p["total_ms"] > 0 and sum(r["share"] for r in p["by_op_type"]) == pytest.approx(1.0)
    assert ops & {"MatMul", "Gemm", "FusedMatMul", "Conv", "FusedConv"}
    assert [r["ms"] for r in p["by_op_type"]] == sorted((r["ms"] for r in p["by_op_type"]), reverse=True)


def test_bench_refuses_an_unreadable_reference_before_measuring(tmp_path, capsys):
    from samedge.cli import main
    (tmp_path / "ref.json").write_text("{not json")
    assert main(["bench", str(tmp_path / "nowhere"), "--compare", str(tmp_path / "ref.json")]) == 2
    assert "is not a readable JSON file" in capsys.readouterr().err


def test_backend_for_format_comes_from_the_backends():
    from samedge.errors import BundleError
    from samedge.runtimes import backend_for_format
    assert [backend_for_format(f) for f in ("onnx", "openvino", "coreml")] == ["onnxruntime", "openvino", "coreml"]
    with pytest.raises(BundleError, match="no backend runs bundle format 'tflite'"):
        backend_for_format("tflite")


def test_bench_openvino_bundle_with_and_without_precisions(multi_bundle, tmp_path):
    """Every precision is tried on every backend: one a backend cannot take becomes a row with the reason."""
    from samedge.cli import main
    out = tmp_path / "b"
    assert main(["bench", str(multi_bundle), "--backend", "openvino", "--quick", "--no-baselines", "--out", str(out)]) == 0
    assert [r["precision_used"] for r in json.loads((out / "bench.json").read_text())["runs"]] == ["f32"]
    assert main(["bench", str(multi_bundle), "--backend", "onnxruntime,openvino", "--precision", "f32,bf16",
                 "--quick", "--no-baselines", "--out", str(out)]) == 0
    from samedge.cpu import cpu_capabilities
    result = json.loads((out / "bench.json").read_text())
    ran = sorted(r["id"].split("/")[1] for r in result["runs"])
    refused = {u["id"].split("/")[1]: u["reason"] for u in result["unavailable"]}
    assert "not a runtime option" in refused["onnxruntime-cpu-bf16"]
    if cpu_capabilities().has_bf16:
        assert ran == ["onnxruntime-cpu-f32", "openvino-cpu-bf16", "openvino-cpu-f32"]
        assert [r["precision_used"] for r in result["runs"] if r["id"].endswith("bf16")] == ["bf16"]
    else:  # no AVX512_BF16 / AMX: a row saying why, not an f32 run labelled bf16
        assert ran == ["onnxruntime-cpu-f32", "openvino-cpu-f32"]
        assert "cannot run bf16 on this CPU" in refused["openvino-cpu-bf16"]
