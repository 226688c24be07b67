"""`samedge quantize-report`: every quantization method on one bundle, side by side on this machine, as JSON,
a Markdown table and a PNG plot (encoder latency vs mean mask IoU)."""
from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import is_bundle_dir
from ..bench.machine import machine_info
from ..bundle import load_bundle
from ..cpu import cpu_capabilities
from ..errors import BackendUnavailableError, InputError
from .fidelity import QuantThresholds
from .methods import method_config
from .pipeline import QuantizeConfig, quantize_bundle, variant_precision

log = logging.getLogger(__name__)
REPORT_VERSION = 1
DEFAULT_VARIANTS = ("ort-dynamic-int8", "ort-static-int8", "ort-fp16", "ov-fp16", "ov-int8", "ov-weight-int8",
                    "ov-weight-int4", "coreml-fp16", "coreml-int8-weights", "coreml-palettize:bits=4",
                    "coreml-palettize:bits=6", "coreml-palettize:bits=8", "coreml-w8a8")


@dataclass(frozen=True)
class ReportConfig:
    bundle: Path
    out_dir: Path
    variants: tuple[str, ...] = DEFAULT_VARIANTS  # "method[:option=value...]"
    graphs: tuple[str, ...] = ("encoder",)  # the encoder is where the time goes; the decoder is ~4M parameters
    fidelity_images: int = 3
    keep_variants: bool = False


def _option_value(text: str) -> int | float | str:
    """'4' -> 4, '0.5' -> 0.5, anything else stays text (the method's own checks say what is allowed)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_variant(spec: str, graphs: tuple[str, ...]):
    name, *opts = spec.split(":")
    options: dict = {"graphs": graphs}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            raise InputError(f"variant {spec!r}: options are written method:key=value")
        options[key] = _option_value(value)
    return method_config(name, **options)


def _bytes(manifest, fmt: str, role: str) -> int:
    enc, decs = manifest.graphs_for(fmt)
    graphs = [enc] if role == "encoder" else list(decs)
    return sum(g.bytes + (g.external_data_bytes or 0) for g in graphs)


def _row(spec: str, method, manifest, seconds: float) -> dict:
    report = manifest.parity["fidelity_vs_fp32"]
    fmt = method.format
    return {"variant": spec, "method": method.name, "backend": {"onnx": "onnxruntime"}.get(fmt, fmt),
            "precision": variant_precision(manifest) + (f" ({method.resolved_int8_scheme()})"
                                                        if hasattr(method, "resolved_int8_scheme") else ""),
            "graphs": list(method.graphs), "status":
            "ok" if report["passed"] else "below limits: " + "; ".join(report["failures"]),
            "fidelity": report["summary"], "latency": report["latency"], "fidelity_measured_by": report["variant"],
            "encoder_bytes": _bytes(manifest, fmt, "encoder"), "seconds": round(seconds, 1)}


def _variant_row(spec: str, graphs: tuple[str, ...], bundle: Path, out: Path, fidelity_images: int,
                 progress: bool) -> dict:
    from ..tool_logs import quiet_tools
    quiet_tools()  # a fresh (spawned) process: the CLI's settings do not reach it
    method = parse_variant(spec, graphs)
    t0 = time.perf_counter()
    try:
        manifest = quantize_bundle(QuantizeConfig(bundle, out, method, fidelity_images=fidelity_images,
                                                  thresholds=QuantThresholds(), overwrite=True),
                                   progress=progress, enforce=False)
    except BackendUnavailableError as exc:
        return {"variant": spec, "method": method.name, "status": f"unavailable here: {exc}"}
    return _row(spec, method, manifest, time.perf_counter() - t0)


def run_report(cfg: ReportConfig, progress: bool = True) -> dict:
    source = load_bundle(cfg.bundle, warn_random=False)
    m = source.manifest
    variants_dir = cfg.out_dir / "variants"
    # the variants are written, then deleted, under OUT/variants: anything already there must be our bundles
    foreign = [p.name for p in variants_dir.iterdir() if not is_bundle_dir(p)] if variants_dir.is_dir() else []
    if foreign or (variants_dir.exists() and not variants_dir.is_dir()):
        raise InputError(f"{variants_dir} holds files that are not samedge bundles ({', '.join(foreign[:5]) or 'a file'}); "
                         "quantize-report writes and removes its variant bundles there: choose another --out")
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in cfg.variants:
        parse_variant(spec, cfg.graphs)  # a bad spec fails before any work
    for spec in cfg.variants:
        out = variants_dir / spec.replace(":", "_").replace("=", "")
        log.info("quantize-report: %s", spec)
        # one process per variant: ViT-B's ONNX Runtime arenas (~7 GB a predictor) are returned to the OS only
        # when the process ends, and 13 variants in one process ran out of memory here (24 GB)
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                rows.append(pool.submit(_variant_row, spec, cfg.graphs, cfg.bundle, out, cfg.fidelity_images,
                                        progress).result())
            except BrokenProcessPool:
                rows.append({"variant": spec, "status": "failed: its process died (killed by the kernel, most "
                                                        "likely out of memory)"})
        if not cfg.keep_variants:
            shutil.rmtree(out, ignore_errors=True)
    if not cfg.keep_variants:
        shutil.rmtree(variants_dir, ignore_errors=True)
    fp32 = {"onnx_encoder_bytes": _bytes(m, "onnx", "encoder")}
    machine = machine_info()
    result = {"report_version": REPORT_VERSION, "model_type": m.model_type, "weights": m.weights.source,
              "bundle": str(cfg.bundle), "graphs_quantized": list(cfg.graphs), "fidelity_images": cfg.fidelity_images,
              "machine": {"platform": machine.platform, "processor": machine.cpu_model, "isa": machine.isa,
                          "cpu": cpu_capabilities().to_dict(), "python": machine.python},
              "fp32": fp32, "variants": rows,
              "caveat": "fidelity on random weights is not fidelity on trained weights; run the same command on a "
                        "real checkpoint's bundle for the real figure" if m.weights.is_random else ""}
    (cfg.out_dir / "quantize-report.json").write_text(json.dumps(result, indent=2) + "\n")
    (cfg.out_dir / "quantize-report.md").write_text(markdown_table(result))
    plot(result, cfg.out_dir / "quantize-report.png")
    return result


def _ms(row: dict, stage: str, key: str) -> float | None:
    lat = row.get("latency", {})
    return lat[stage][key]["median_ms"] if stage in lat and key in lat[stage] else None


def markdown_table(result: dict) -> str:
    lines = [f"### {result['model_type']} ({result['weights']} weights): quantized {', '.join(result['graphs_quantized'])}"
             f" vs the fp32 bundle, {result['fidelity_images']} real photos, on {result['machine']['processor']}"
             f" ({result['machine'].get('isa', 'ISA not recorded')})", "",
             "| variant | backend | precision | mean / worst mask IoU | min emb. cosine | discrim. | encoder MB "
             "| encoder ms: fp32 ORT -> variant | speed-up vs fp32 ORT | vs same backend fp32 | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fp32_mb = result["fp32"]["onnx_encoder_bytes"] / 1e6
    for r in result["variants"]:
        if "fidelity" not in r:
            lines.append(f"| {r['variant']} | | | | | | | | | | {r['status']} |")
            continue
        f, lat = r["fidelity"], r["latency"]
        if "encoder" in lat:
            enc = lat["encoder"]
            ms = f"{enc['fp32']['median_ms']:.0f} -> {enc['variant']['median_ms']:.0f}"
            speed = f"{enc['speedup']:.2f}x"
            same = next((f"{v:.2f}x" for k, v in enc.items() if k.startswith("speedup_vs_")),
                        "(same backend)" if r["backend"] == "onnxruntime" else "")
        else:
            ms, speed, same = "not measurable here", "", ""
        status = "ok" if r["status"] == "ok" else "below limits"
        lines.append(f"| {r['variant']} | {r['backend']} | {r['precision']} | {f['mean_mask_iou']:.4f} / "
                     f"{f['min_mask_iou']:.4f} | {f['min_embedding_cosine']:.5f} | {f['discrimination_ratio']:.3f} | "
                     f"{r['encoder_bytes'] / 1e6:.1f} (fp32 {fp32_mb:.1f}) | {ms} | {speed} | {same} | {status} |")
    notes = ["", "Latency: medians of interleaved runs in one process (encoder: 3 runs each on one photo); the fp32 "
             "ONNX Runtime bundle is timed side by side with every variant, so each ratio is same-run.",
             "CoreML rows: CoreML runs only on macOS; their fidelity is simulated in PyTorch with the compressed "
             "weights as stored (fp32 compute), their latency is not measurable here."]
    if result["caveat"]:
        notes.append("Caveat: " + result["caveat"] + ".")
    return "\n".join(lines + notes) + "\n"


def plot(result: dict, path: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'samedge[report]'); no plot written")
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    baselines = []
    for r in result["variants"]:
        ms = _ms(r, "encoder", "variant")
        if ms is None:
            continue
        baselines.append(_ms(r, "encoder", "fp32"))
        ax.scatter(ms, r["fidelity"]["mean_mask_iou"], color="tab:blue" if r["status"] == "ok" else "tab:red")
        ax.annotate(r["variant"], (ms, r["fidelity"]["mean_mask_iou"]), fontsize=8, xytext=(4, 2),
                    textcoords="offset points")
    if baselines:  # fp32 was timed beside every variant: plot the median of those timings
        import statistics
        baseline = statistics.median(baselines)
        ax.scatter(baseline, 1.0, color="black", marker="*", s=120)
        ax.annotate("fp32 onnxruntime", (baseline, 1.0), fontsize=8, xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel("encoder latency on this machine, median ms (lower is better)")
    ax.set_ylabel("mean mask IoU vs fp32")
    ax.set_title(f"{result['model_type']} ({result['weights']} weights): quantized variants; red = below limits",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
