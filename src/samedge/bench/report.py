"""Bench results as Markdown tables and PNG plots."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
STAGES = ("predict_1pt", "end_to_end", "encoder", "decoder_1pt", "postprocess")


def _ms(run: dict, stage: str) -> str:
    s = run["stages"].get(stage)
    if s is None:
        return ""
    return f"{s['p50']:.1f}" if s["p50"] < 100 else f"{s['p50']:.0f}"


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value else ""


def markdown(result: dict) -> str:
    """Two tables: what users feel (predict() on a cached embedding, end to end) with same-run ratios
    against the official export on the same backend, then the breakdown by stage."""
    m = result["machine"]
    kinds = ("1pt", "2pt", "5pt", "box", "mask")
    lines = [f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, ISA: {m.get('isa') or ' '.join(m['isa_flags'])} ({' '.join(m['isa_flags'])}); "
             f"image: {result['image']['name']} ({result['image']['shape'][1]}x{result['image']['shape'][0]}). "
             "Times are p50 ms (p90, p99, std, min/max in the JSON); speed-ups are same-run ratios of p50. "
             "predict(): prompt in, full-size mask out, on a cached embedding. "
             "mask: 1 point + the previous low-res logits as mask_input.", "",
             "| run | bundle | precision used | predict() 1pt / 2pt / 5pt / box / mask | end to end | prompts/s "
             "| predict() vs official export, same backend, 1pt / 2pt / 5pt / box / mask | end to end vs official "
             "| predict() 1pt vs PyTorch | predict() - graph - postproc, 1pt / 2pt / 5pt / box / mask (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        sp = r.get("speedup", {})
        same = sp.get("official_same_backend", {})
        overhead = r.get("predict_overhead_ms") or {}
        cells = [r["id"], r["bundle_precision"], r["precision_used"],
                 " / ".join(_ms(r, f"predict_{k}") for k in kinds), _ms(r, "end_to_end"),
                 f"{r['prompts_per_second']:.1f}" if r.get("prompts_per_second") else "",
                 " / ".join(_x(same.get(f"predict_{k}")) for k in kinds)
                 + (f" ({same['baseline'].replace('baseline-', '')})" if same else "") if same else "",
                 _x(same.get("end_to_end")), _x(sp.get("baseline-pytorch", {}).get("predict_1pt")),
                 " / ".join(f"{overhead[k]:+.1f}" if k in overhead else "" for k in kinds) if overhead else ""]
        lines.append("| " + " | ".join(cells) + " |")
    for u in result["unavailable"]:
        lines.append(f"| {u['id']} | unavailable: {u['reason']} |" + " |" * 8)
    spread_runs = [r for r in result["runs"] if r.get("predict_overhead_spread_ms")]
    if spread_runs:  # the overhead next to its noise: a fixed cost shows as a median outside [p10, p90] of 0
        lines += ["", "predict() - graph - postprocess, timed in interleaved rounds: median [p10, p90] of the "
                  "per-round differences, ms:", ""]
        for r in spread_runs:
            med, spread = r["predict_overhead_ms"], r["predict_overhead_spread_ms"]
            order = [*kinds, *(k for k in spread if k not in kinds)]  # + predict_batch's (batch16)
            lines.append(f"- {r['id']}: " + ", ".join(
                f"{k} {med[k]:+.1f} [{spread[k][0]:+.1f}, {spread[k][1]:+.1f}]" for k in order if k in spread))
            for k in order[len(kinds):]:
                if f"predict_{k}" in r["stages"]:
                    lines.append(f"  - {k}: predict_batch {_ms(r, f'predict_{k}')}, its graph "
                                 f"{_ms(r, f'decoder_{k}')}, upsampling {_ms(r, f'postprocess_{k}')}")
    paired_runs = [r for r in result["runs"] if r.get("paired_vs_official")]
    if paired_runs:  # the ratios that carry no drift: both sides timed in the same rounds
        lines += ["", "predict() and end to end against the official export on the same backend, timed in the same "
                  "rounds (each round: samedge's call, then the official one): median [p10, p90] of the per-round "
                  "ratios official / samedge:", ""]
        for r in paired_runs:
            pr = r["paired_vs_official"]
            lines.append(f"- {r['id']} vs {pr['baseline']}: " + ", ".join(
                f"{k} {pr[k]['ratio']:.2f}x [{pr[k]['ratio_p10']:.2f}, {pr[k]['ratio_p90']:.2f}] "
                f"({pr[k]['samedge_p50_ms']:.1f} vs {pr[k]['official_p50_ms']:.1f} ms)"
                for k in [*kinds, "end_to_end"] if k in pr))
    lines += ["", "Breakdown (graphs alone; decoder = the graph predict() runs for that prompt, named in the JSON's "
              "decoder_graphs_used: the split decoder's prompt graphs where the bundle has them; context = the split "
              "decoder's per-image graph, run in set_image):", "",
              "| run | preproc | encoder | context (per image) | decoder 1pt / 2pt / 5pt / box / mask | postproc 3 masks "
              "| decoder GFLOP per prompt (full decoder) | encoder vs official fp32 ONNX | encoder GFLOP/s (% peak) "
              "| cold start: load + 1st encode | peak MiB | mean IoU vs fp32 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        sp = r.get("speedup", {})
        cold = r["cold_start_ms"]
        fid = r.get("fidelity") or {}
        roof = r.get("roofline", {}).get("encoder", {})
        frac = roof.get("fraction_of_peak")
        flops = r.get("flops") or {}
        gf = (f"{flops['decoder_1pt'] / 1e9:.2f} ({flops['decoder_full_1pt'] / 1e9:.2f})"
              if "decoder_full_1pt" in flops else "")
        iou = f"{fid['mean_mask_iou']:.4f}" if fid.get("mean_mask_iou") is not None else ""
        gflops = f"{roof['achieved_gflops']:.0f}" + (f" ({100 * frac:.0f}%)" if frac else "") if roof else ""
        cells = [r["id"], _ms(r, "preprocess"), _ms(r, "encoder"), _ms(r, "context"),
                 " / ".join(_ms(r, f"decoder_{k}") for k in kinds), _ms(r, "postprocess"), gf,
                 _x(sp.get("baseline-official-onnx", {}).get("encoder")), gflops,
                 f"{cold['load']:.0f} + {cold['first_encode']:.0f}", f"{r['memory_mib']['peak']:.0f}", iou]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_stages(result: dict, path: Path) -> Path | None:
    """Grouped bars: p50 per stage for every run (log scale: encoders and decoders differ 100x)."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np
    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(runs) + 4), 5))
    width = 0.8 / len(STAGES)
    for i, stage in enumerate(STAGES):
        vals = [r["stages"].get(stage, {}).get("p50", np.nan) for r in runs]
        ax.bar(np.arange(len(runs)) + i * width, vals, width, label=stage)
    ax.set_xticks(np.arange(len(runs)) + 0.4 - width / 2, [r["id"] for r in runs], rotation=30, ha="right",
                  fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_title(f"latency by stage on {result['machine']['cpu_model']} ({result['machine']['usable_cores']} cores)",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fidelity(result: dict, path: Path) -> Path | None:
    """Encoder p50 vs mean mask IoU, for runs whose bundle carries fidelity figures."""
    runs = [r for r in result["runs"] if (r.get("fidelity") or {}).get("mean_mask_iou") is not None]
    plt = _pyplot() if runs else None
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        x, y = r["stages"]["encoder"]["p50"], r["fidelity"]["mean_mask_iou"]
        ax.scatter(x, y)
        ax.annotate(r["id"], (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("encoder p50, ms")
    ax.set_ylabel("mean mask IoU vs fp32 (fidelity, not quality)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'samedge[report]'); no plots written")
        return None
