"""Command line: `samedge export | convert | fidelity | quantize | bench | demo | devices | run | everything`."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import InputError, ParityError, SamEdgeError
from .model_types import public_model_names

log = logging.getLogger("samedge")


def _xy(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}") from None
    return x, y


def _box(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 (four numbers), got {text!r}")
    return values


def _counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated point counts like 1,2,5, got {text!r}") from None


def _formats(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in ("onnx", "openvino", "coreml")]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"formats are a comma list of onnx, openvino, coreml; got {text!r}")
    return values


BACKEND_CHOICES = ["onnxruntime", "openvino", "coreml", "auto"]
DEVICE_CHOICES = ["cpu", "gpu", "npu", "auto"]
PRECISION_CHOICES = ["f32", "bf16", "f16", "default"]


def _add_backend_args(p: argparse.ArgumentParser, backend_default: str = "onnxruntime") -> None:
    p.add_argument("--backend", choices=BACKEND_CHOICES, default=backend_default)
    p.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="inference precision hint (OpenVINO); default f32; 'default' = the backend's own choice")
    p.add_argument("--threads", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samedge", description="Segment Anything on edge hardware")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("export", help="export a model into a bundle (encoder.onnx, decoder.onnx, manifest.json)")
    ex.add_argument("--model", required=True, metavar="{" + ",".join(public_model_names()) + "}",
                    help="model type (vit_t is an alias of mobile_sam)")
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a local official-format checkpoint (.pth/.pt)")
    src.add_argument("--download", action="store_true", help="fetch the official checkpoint (sha256-verified, cached)")
    src.add_argument("--weights", choices=["random"], help="seeded random weights (architecture-only work)")
    ex.add_argument("--seed", type=int, default=0, help="seed for --weights random (default 0)")
    ex.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    ex.add_argument("--decoder-points", type=_counts, default=(), metavar="K[,K...]",
                    help="also export static decoders for these click counts (a box counts as one click)")
    ex.add_argument("--decoder-batch-sizes", type=_counts, default=(), metavar="B[,B...]",
                    help="also export static-batch split prompt graphs (B prompts per call) for each "
                         "--decoder-points count: predict_batch / segment everything on static-shape devices")
    ex.add_argument("--no-dynamic-decoder", action="store_true", help="export only the static decoders")
    ex.add_argument("--no-split-decoder", action="store_true",
                    help="leave out the split decoder (per-image context graph + per-prompt graphs, about a "
                         "third of the full decoder's work per prompt); every prompt then runs the full decoder")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    ex.add_argument("--parity-images", type=int, default=3, help="real photos used for parity (1-3, default 3)")
    ex.add_argument("--format", type=_formats, default=("onnx",), metavar="onnx[,openvino][,coreml]",
                    help="backend formats to write; ONNX is always written (the others are converted from it "
                         "or checked against it). coreml needs --decoder-points")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    ex.add_argument("--jobs", type=int, default=None,
                    help="graph exports run side by side in forked workers, this many at a time (default 1: one after "
                         "another; forked workers have hung once, see export/side_by_side.py). Each holds its own trace")
    ex.add_argument("--no-progress", action="store_true")

    cv = sub.add_parser("convert", help="add OpenVINO IR and/or CoreML graphs to an existing bundle")
    cv.add_argument("bundle", type=Path)
    cv.add_argument("--format", type=_formats, required=True, metavar="openvino[,coreml]")
    cv.add_argument("--decoder-points", type=_counts, default=None, metavar="K[,K...]",
                    help="CoreML static decoder click counts (default: the bundle's static decoders)")
    cv.add_argument("--coreml-precision", choices=["fp16", "fp32"], default="fp16",
                    help="CoreML compute precision (fp16 keeps LayerNorm/softmax/reductions in fp32)")
    cv.add_argument("--checkpoint", type=Path, help="the checkpoint a checkpoint bundle was exported from")
    cv.add_argument("--parity-images", type=int, default=3)
    cv.add_argument("--overwrite", action="store_true", help="replace graphs of that format already there")
    cv.add_argument("--jobs", type=int, default=None,
                    help="CoreML graphs convert side by side, this many at a time (default 1: one after another)")

    fi = sub.add_parser("fidelity", help="parity report of one backend x device x precision vs PyTorch fp32")
    fi.add_argument("bundle", type=Path)
    _add_backend_args(fi)
    fi.add_argument("--checkpoint", type=Path, help="the checkpoint a checkpoint bundle was exported from")
    fi.add_argument("--parity-images", type=int, default=3)
    fi.add_argument("--min-mask-iou", type=float, default=None, help="override the 0.99 threshold")
    fi.add_argument("--out", type=Path, default=None,
                    help="report path (default BUNDLE/fidelity/<backend>-<device>-<precision>.json)")

    qz = sub.add_parser("quantize", help="write a quantized variant of an fp32 bundle, with measured fidelity")
    qz.add_argument("bundle", type=Path)
    qz.add_argument("--method", required=True,
                    help="onnxruntime: ort-dynamic-int8 | ort-static-int8 | ort-fp16; openvino (NNCF): ov-fp16 | "
                         "ov-int8 (W8A8) | ov-weight-int8 | ov-weight-int4; coreml: coreml-fp16 | "
                         "coreml-int8-weights | coreml-palettize | coreml-w8a8 (macOS)")
    qz.add_argument("--out", type=Path, required=True)
    qz.add_argument("--graphs", default="encoder,decoder", help="which graphs to quantize (default both)")
    qz.add_argument("--calibration", type=Path, default=None,
                    help="folder of your images for calibration (default: built-in real photos)")
    qz.add_argument("--calibrator", choices=["minmax", "percentile", "entropy"], default=None)
    qz.add_argument("--calibration-images", type=int, default=None)
    qz.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weights")
    qz.add_argument("--quantize-attention-matmuls", action="store_true",
                    help="ort-static-int8: also q@k and attn@v (off: memory-hungry to calibrate, least gain)")
    qz.add_argument("--preset", choices=["mixed", "performance"], default=None, help="ov-int8: NNCF preset")
    qz.add_argument("--int8-scheme", choices=["auto", "reduce-range", "full-range"], default=None,
                    help="int8 methods: 7-bit weights (reduce-range: safe on every CPU) or 8-bit (full-range: only "
                         "for CPUs with VNNI/AMX or ARM); auto (default) picks by this CPU")
    qz.add_argument("--group-size", type=int, default=None, help="ov-weight-int4: weights per scale (default 32)")
    qz.add_argument("--ratio", type=float, default=None, help="ov-weight-int4: share of layers in int4 (rest int8)")
    qz.add_argument("--bits", type=int, default=None, help="coreml-palettize: 4, 6 or 8")
    qz.add_argument("--decoder-points", type=_counts, default=None, metavar="K[,K...]",
                    help="coreml methods: static decoder click counts (default: the bundle's)")
    qz.add_argument("--checkpoint", type=Path, default=None,
                    help="coreml methods on a checkpoint bundle: the checkpoint it was exported from")
    qz.add_argument("--max-iou-drop", type=float, default=None,
                    help="accuracy budget (onnxruntime int8): keep the most sensitive layers in fp32 until the "
                         "mean mask IoU vs fp32 is at least 1 - this")
    qz.add_argument("--keep-fp32-op-types", default="", metavar="OP[,OP...]", help="mixed precision: op types kept fp32")
    qz.add_argument("--keep-fp32-nodes", default="", metavar="NAME[,NAME...]", help="mixed precision: nodes kept fp32")
    qz.add_argument("--min-mean-iou", type=float, default=None, help="fidelity limit vs fp32 (default 0.95)")
    qz.add_argument("--fidelity-images", type=int, default=3)
    qz.add_argument("--overwrite", action="store_true")
    qz.add_argument("--no-progress", action="store_true")

    qr = sub.add_parser("quantize-report", help="every quantization method on one bundle: JSON, Markdown table, "
                                                "PNG plot of latency vs fidelity")
    qr.add_argument("bundle", type=Path)
    qr.add_argument("--out", type=Path, required=True, help="folder for quantize-report.{json,md,png}")
    qr.add_argument("--variants", default=None, metavar="METHOD[:key=value][,...]",
                    help="default: every method (palettization at 4, 6 and 8 bits)")
    qr.add_argument("--graphs", default="encoder", help="which graphs each variant quantizes (default encoder)")
    qr.add_argument("--fidelity-images", type=int, default=3)
    qr.add_argument("--keep-variants", action="store_true", help="keep the variant bundles under OUT/variants")
    qr.add_argument("--no-progress", action="store_true")

    be = sub.add_parser("bench", help="latency of every stage per backend x device x precision, with same-run "
                                       "baselines; --compare gates on regressions")
    be.add_argument("bundles", type=Path, nargs="+")
    be.add_argument("--backend", default=None, help="comma list (default: every backend whose format the bundle has)")
    be.add_argument("--device", default="cpu", help="comma list of cpu, gpu, npu (default cpu)")
    be.add_argument("--precision", default=None, help="comma list, e.g. f32,bf16 for openvino (default: samedge's)")
    be.add_argument("--threads", type=int, default=None)
    be.add_argument("--image", type=Path, default=None, help="default: the built-in 640x480 ARC2017 photo")
    be.add_argument("--out", type=Path, default=None, help="folder for bench.json, bench.md and PNG plots")
    be.add_argument("--quick", action="store_true", help="1 warm-up, 3 runs per stage (smoke test, not a report)")
    be.add_argument("--min-runs", type=int, default=None)
    be.add_argument("--no-baselines", action="store_true", help="skip the official-ONNX and PyTorch baselines")
    be.add_argument("--checkpoint", type=Path, default=None,
                    help="the checkpoint a checkpoint bundle was exported from (the baselines are built from it)")
    be.add_argument("--compare", type=Path, default=None, metavar="REFERENCE.json",
                    help="gate: exit 4 if a stage got slower than --max-slowdown relative to the same-run baseline")
    be.add_argument("--max-slowdown", type=float, default=1.15)

    dm = sub.add_parser("demo", help="sample apps: `samedge demo gaze` (AR gaze-point segmentation)")
    dm.add_argument("app", choices=["gaze"])
    dm.add_argument("--bundle", type=Path, required=True)
    dm.add_argument("--out", type=Path, required=True, help="folder for overlay.mp4/.gif, frames.jsonl, summary.json")
    dm.add_argument("--video", default=None,
                    help="a video file or camera:N (default: cockatoo.mp4 from Debian's python3-imageio)")
    dm.add_argument("--gaze", default="replay:eyelink",
                    help="replay:eyelink | edf:PATH | csv:PATH (t,x,y[,confidence]) | pupil:gaze_positions.csv | "
                         "tobii:PATH.tsv | lsl:STREAM[:normalized] (live) | mouse (live, needs a GUI OpenCV)")
    dm.add_argument("--ground-truth", action="store_true",
                    help="score on a synthetic head-motion sequence of real photos with exact instance masks "
                         "(replaces --video and --gaze)")
    dm.add_argument("--reference-bundle", type=Path, default=None,
                    help="ground truth: the fp32 bundle to compare with (default: this bundle's fp32 ONNX graphs)")
    dm.add_argument("--reference-frames", type=int, default=24, help="ground truth: frames the reference re-segments")
    dm.add_argument("--backend", default="auto")
    dm.add_argument("--precision", default=None)
    dm.add_argument("--threads", type=int, default=None,
                    help="threads per session (default: half the usable cores, as encoder and decoder run at once)")
    dm.add_argument("--encoder-threads", type=int, default=None,
                    help="threads of the encoder's session (default: as --threads)")
    dm.add_argument("--policy", choices=["every_frame", "on_demand"], default="on_demand",
                    help="encoder scheduling: every frame (light models) or on demand (heavy ones)")
    dm.add_argument("--no-mask-prior", action="store_true",
                    help="re-decode on each new embedding from the fixation point alone, without the previous logits")
    dm.add_argument("--fov", type=float, default=60.0, help="scene camera horizontal field of view, degrees")
    dm.add_argument("--max-frames", type=int, default=None)
    dm.add_argument("--show", action="store_true", help="a live window (needs OpenCV with a GUI)")
    dm.add_argument("--no-warm-up", action="store_true",
                    help="start the clock at once: no graph warm-up, no first frame encoded before (cold start)")

    dv = sub.add_parser("devices", help="every backend x device usable here, and why not for the rest")
    dv.add_argument("--json", action="store_true")

    ev = sub.add_parser("everything", help="segment everything (the official automatic mask generator): an overlay "
                        "PNG and a COCO JSON per image")
    ev.add_argument("image", help="an image file, a folder of images (resumable: finished images are skipped), or "
                    "sample:voc / sample:arc2017")
    ev.add_argument("--bundle", type=Path, required=True)
    ev.add_argument("--out", type=Path, required=True, help="output folder: <stem>.everything.png / .json")
    ev.add_argument("--points-per-side", type=int, default=32)
    ev.add_argument("--points-per-batch", type=int, default=64)
    ev.add_argument("--pred-iou-thresh", type=float, default=None,
                    help="default: the family's official one (0.88 SAM, 0.8 SAM 2.1)")
    ev.add_argument("--stability-score-thresh", type=float, default=0.95)
    ev.add_argument("--stability-score-offset", type=float, default=1.0)
    ev.add_argument("--box-nms-thresh", type=float, default=0.7)
    ev.add_argument("--crop-n-layers", type=int, default=0)
    ev.add_argument("--crop-n-points-downscale-factor", type=int, default=1)
    ev.add_argument("--min-mask-region-area", type=int, default=0)
    ev.add_argument("--output-mode", choices=("coco_rle", "uncompressed_rle"), default="coco_rle",
                    help="RLE in the JSON: compressed (needs pycocotools) or uncompressed counts")
    ev.add_argument("--m2m", action="store_true", help="SAM 2's use_m2m: refine each candidate with its own "
                    "low-res logits as the mask prior (one more decode per candidate)")
    ev.add_argument("--single-mask", action="store_true", help="one mask per point (SAM 2's multimask_output=False)")
    ev.add_argument("--fast", action="store_true", help="skip grid points inside masks already found (NOT exact: "
                    "its recall of exact-mode masks is measured by benchmarks/everything.py)")
    ev.add_argument("--no-progress", action="store_true")
    _add_backend_args(ev)

    run = sub.add_parser("run", help="segment an image with a bundle and write an overlay PNG and the mask")
    run.add_argument("image", help="an image file, or sample:voc / sample:arc2017 for a built-in real photo")
    run.add_argument("--bundle", type=Path, required=True)
    run.add_argument("--point", type=_xy, action="append", default=[], metavar="X,Y", help="foreground point")
    run.add_argument("--bg-point", type=_xy, action="append", default=[], metavar="X,Y", help="background point")
    run.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1")
    run.add_argument("--out", type=Path, required=True, help="overlay PNG; the mask goes beside it as *_mask.png")
    _add_backend_args(run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.verbose:
        from .tool_logs import quiet_tools
        quiet_tools()
    from .bundle import RandomWeightsWarning
    warnings.simplefilter("ignore", RandomWeightsWarning)  # the logger already says it, once
    try:
        commands = {"export": _export, "convert": _convert, "fidelity": _fidelity, "devices": _devices, "run": _run,
                    "everything": _everything, "quantize": _quantize, "quantize-report": _quantize_report, "bench": _bench,
                    "demo": _demo}
        return commands[args.command](args)
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps(exc.report.get("summary", {}), indent=2), file=sys.stderr)
        return 3
    except SamEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _export(args) -> int:
    from .export.pipeline import ExportConfig, export_bundle
    weights = "checkpoint" if args.checkpoint else "download" if args.download else "random"
    cfg = ExportConfig(model_type=args.model, out_dir=args.out, weights=weights, checkpoint=args.checkpoint,
                       seed=args.seed, opset=args.opset, decoder_points=args.decoder_points,
                       decoder_batch_sizes=args.decoder_batch_sizes,
                       dynamic_decoder=not args.no_dynamic_decoder, simplify=not args.no_simplify,
                       split_decoder=not args.no_split_decoder,
                       parity_images=args.parity_images, overwrite=args.overwrite, formats=args.format,
                       jobs=args.jobs)
    if weights == "random":
        log.warning("exporting %s with RANDOM weights (seed %d): masks will be meaningless; "
                    "fidelity and latency figures are real", args.model, args.seed)
    manifest = export_bundle(cfg, progress=not args.no_progress)
    s = manifest.parity["summary"]
    sizes = {g.file: g.bytes + (g.external_data_bytes or 0) for g in manifest.graphs()}
    print(f"wrote {args.out} ({sum(sizes.values()) / 1e6:.1f} MB: "
          + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()) + ")")
    print(f"parity vs PyTorch fp32: min mask IoU {s['min_mask_iou']:.5f}, mean {s['mean_mask_iou']:.5f}, "
          f"max IoU-score error {s['max_score_error']:.2e}, min embedding cosine {s['min_embedding_cosine']:.7f}, "
          f"embedding max abs error {s['max_embedding_abs_error']:.2e}")
    print("export seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in manifest.export["seconds"].items()))
    _print_converted(manifest)
    return 0


def _print_converted(manifest) -> None:
    for fmt, conv in manifest.converted.items():
        graphs = (conv.encoder, *conv.decoders, *(conv.split.graphs() if conv.split else ()))
        size = sum(g.bytes + (g.external_data_bytes or 0) for g in graphs)
        line = f"{fmt}: {len(graphs)} graphs, {size / 1e6:.1f} MB, {conv.conversion.get('tool')}"
        parity = conv.conversion.get("parity")
        if isinstance(parity, dict):
            s = parity["summary"]
            line += (f"; parity on {parity['device']} at {parity['precision']}: min mask IoU {s['min_mask_iou']:.5f}, "
                     f"max score error {s['max_score_error']:.2e}, min embedding cosine "
                     f"{s['min_embedding_cosine']:.7f}")
        else:
            line += f"; parity {parity}"
        print(line)


def _convert(args) -> int:
    from .export.convert import ConvertConfig, add_formats, static_points
    from .export.coreml_convert import CoreMLConfig
    formats = tuple(f for f in args.format if f != "onnx")
    if not formats:
        raise SamEdgeError("the bundle already has ONNX graphs; convert adds openvino and/or coreml")
    coreml = None
    if "coreml" in formats and (args.decoder_points or args.coreml_precision != "fp16"):
        from .manifest import read_manifest
        points = args.decoder_points or static_points(read_manifest(args.bundle))
        coreml = CoreMLConfig(points, compute_precision=args.coreml_precision)
    cfg = ConvertConfig(formats, coreml=coreml, checkpoint=args.checkpoint, parity_images=args.parity_images,
                        overwrite=args.overwrite, jobs=args.jobs)
    manifest = add_formats(args.bundle, cfg, on_step=lambda s: log.info("%s", s))
    _print_converted(manifest)
    return 0


def _fidelity(args) -> int:
    from .errors import ParityError
    from .export.convert import measure_fidelity, write_fidelity
    from .export.parity import ParityThresholds
    thresholds = ParityThresholds() if args.min_mask_iou is None else ParityThresholds(min_mask_iou=args.min_mask_iou)
    report = measure_fidelity(args.bundle, args.backend, args.device, args.precision, args.checkpoint,
                              args.parity_images, thresholds)
    path = write_fidelity(args.bundle, report, args.out)
    s = report["summary"]
    print(f"{report['backend']} on {report['device']} ({', '.join(report['executes_on'])}) at {report['precision']}: "
          f"min mask IoU {s['min_mask_iou']:.5f}, mean {s['mean_mask_iou']:.5f}, max IoU-score error "
          f"{s['max_score_error']:.2e}, min embedding cosine {s['min_embedding_cosine']:.6f} -> "
          f"{'PASS' if report['passed'] else 'FAIL: ' + '; '.join(report['failures'])}")
    print(f"wrote {path}")
    if not report["passed"]:
        raise ParityError("fidelity below the thresholds", report)
    return 0


def _split(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _quantize(args) -> int:
    from .quantize.fidelity import QuantThresholds
    from .quantize.methods import METHODS, method_config
    from .quantize.pipeline import QuantizeConfig, quantize_bundle, variant_precision
    options: dict = {"graphs": _split(args.graphs), "keep_fp32_op_types": _split(args.keep_fp32_op_types),
                     "keep_fp32_nodes": _split(args.keep_fp32_nodes)}
    fields = getattr(METHODS.get(args.method), "__dataclass_fields__", {})
    for name, value in (("calibrator", args.calibrator), ("calibration_images", args.calibration_images),
                        ("per_channel", False if args.per_tensor else None), ("preset", args.preset),
                        ("int8_scheme", args.int8_scheme),
                        ("quantize_attention_matmuls", True if args.quantize_attention_matmuls else None),
                        ("group_size", args.group_size), ("ratio", args.ratio), ("bits", args.bits),
                        ("decoder_points", args.decoder_points or None)):
        if value is None:
            continue
        if name not in fields:
            raise SamEdgeError(f"--{name.replace('_', '-')} does not apply to {args.method}")
        options[name] = value
    thresholds = QuantThresholds() if args.min_mean_iou is None else QuantThresholds(min_mean_mask_iou=args.min_mean_iou)
    cfg = QuantizeConfig(args.bundle, args.out, method_config(args.method, **options), args.calibration,
                         args.fidelity_images, thresholds, args.overwrite, args.checkpoint)
    if args.max_iou_drop is not None:
        from .quantize.sensitivity import search_within_budget
        manifest = search_within_budget(cfg, args.max_iou_drop, progress=not args.no_progress)
    else:
        manifest = quantize_bundle(cfg, progress=not args.no_progress)
    print(quantize_summary(manifest, args.out, variant_precision(manifest)))
    return 0


def quantize_summary(manifest, out, precision: str) -> str:
    r = manifest.parity["fidelity_vs_fp32"]
    s, lat = r["summary"], r["latency"]
    lines = [f"wrote {out} ({precision}): mean / worst mask IoU vs fp32 {s['mean_mask_iou']:.4f} / "
             f"{s['min_mask_iou']:.4f}, max score error {s['max_score_error']:.3g}, min embedding cosine "
             f"{s['min_embedding_cosine']:.5f}, discrimination ratio {s['discrimination_ratio']:.3f}"]
    if "encoder" in lat:
        enc, dec = lat["encoder"], lat["decoder_1_point"]
        line = (f"latency here (median, side by side): encoder {enc['fp32']['median_ms']:.0f} -> "
                f"{enc['variant']['median_ms']:.0f} ms ({enc['speedup']:.2f}x vs fp32 onnxruntime")
        for key in enc:
            if key.startswith("speedup_vs_"):
                line += f", {enc[key]:.2f}x vs {key[len('speedup_vs_'):]}"
        lines.append(line + f"), decoder {dec['fp32']['median_ms']:.1f} -> {dec['variant']['median_ms']:.1f} ms")
    else:
        lines.append("latency: " + lat["not_measured"])
    lines.append("caveat: " + r["caveat"])
    return "\n".join(lines)


def _quantize_report(args) -> int:
    from .quantize.report import DEFAULT_VARIANTS, ReportConfig, run_report
    variants = _split(args.variants) if args.variants else DEFAULT_VARIANTS
    result = run_report(ReportConfig(args.bundle, args.out, variants, _split(args.graphs), args.fidelity_images,
                                     args.keep_variants), progress=not args.no_progress)
    print((args.out / "quantize-report.md").read_text())
    print(f"wrote {args.out}/quantize-report.json, .md, .png ({len(result['variants'])} variants)")
    return 0


def _bench_targets(args):
    from .bench.runner import BenchTarget
    from .bundle import load_bundle
    from .runtimes import backend_for_format
    targets = []
    for path in args.bundles:
        formats = load_bundle(path, warn_random=False).manifest.formats
        backends = _split(args.backend) if args.backend else tuple(backend_for_format(f) for f in formats)
        for backend in backends:
            for device in _split(args.device):
                # every precision on every backend: one a backend cannot take is a row saying why, not a skip
                for precision in _split(args.precision) if args.precision else (None,):
                    targets.append(BenchTarget(path, backend, device, precision, args.threads))
    return targets


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} {path} is not a readable JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object (a samedge bench result)")
    return data


def _bench(args) -> int:
    from .bench.gate import compare
    from .bench.report import markdown, plot_fidelity, plot_stages
    from .bench.runner import BenchConfig, run_bench
    from .bench.stats import TimingPlan
    plan = TimingPlan(warmup=1, min_runs=3, max_runs=3, min_seconds=0) if args.quick else TimingPlan()
    if args.min_runs:
        plan = TimingPlan(plan.warmup, args.min_runs, max(plan.max_runs, args.min_runs), plan.min_seconds)
    reference = _read_json(args.compare, "--compare reference") if args.compare else None  # fail before measuring
    result = run_bench(_bench_targets(args), BenchConfig(plan, args.image, baselines=not args.no_baselines,
                                                   checkpoint=args.checkpoint),
                       on_step=lambda s: print(f"bench: {s}", file=sys.stderr))
    table = markdown(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "bench.md").write_text(table)
        plot_stages(result, args.out / "stages.png")
        plot_fidelity(result, args.out / "fidelity.png")
    print(table)
    if reference is not None:
        gate = compare(result, reference, args.max_slowdown)
        print(gate.report())
        return 0 if gate.passed else 4
    return 0


def _demo(args) -> int:
    try:
        from samedge_gaze.demo import COCKATOO, DemoConfig, run_demo
        from samedge_gaze.scheduler import SchedulePolicy
    except ImportError as exc:
        raise SamEdgeError(f"the gaze demo needs the apps extra ({exc.name} is missing): "
                           "pip install 'samedge[apps]'") from exc
    summary = run_demo(DemoConfig(
        args.bundle, args.out, args.video or COCKATOO, args.gaze, args.backend, args.precision,
        SchedulePolicy(args.policy, mask_prior=not args.no_mask_prior), args.fov, args.max_frames, threads=args.threads,
        encoder_threads=args.encoder_threads,
        warm_up=not args.no_warm_up, ground_truth=args.ground_truth, reference_frames=args.reference_frames,
        reference_bundle=args.reference_bundle, show=args.show))
    print(json.dumps(summary, indent=2))
    return 0


def _devices(args) -> int:
    from dataclasses import asdict

    from .runtimes import list_devices
    statuses = list_devices()
    if args.json:
        print(json.dumps([asdict(s) for s in statuses], indent=2))
        return 0
    width = max(len(f"{s.backend} {s.device}") for s in statuses)
    for s in statuses:
        version = f" {s.version.split('-')[0]}" if s.version else ""
        mark = "yes" if s.available else "no "
        print(f"{s.backend + ' ' + s.device:<{width}}  {mark}  {s.detail}{' [' + version.strip() + ']' if version else ''}")
    return 0


def load_image(spec: str) -> np.ndarray:
    if spec.startswith("sample:"):
        from .data import sample_images
        names = {"voc": 0, "arc2017": 1}
        key = spec.split(":", 1)[1]
        if key not in names:
            raise SamEdgeError(f"unknown sample {key!r}; allowed: {', '.join(names)}")
        return sample_images()[names[key]].rgb
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(spec) as img:
            return np.asarray(img.convert("RGB"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise SamEdgeError(f"cannot read image {spec}: {exc}") from exc


def overlay(image: np.ndarray, mask: np.ndarray, color=(30, 144, 255), alpha: float = 0.5) -> np.ndarray:
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    # a 1-pixel contour so the edge stays visible on busy images
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = color
    return out.round().astype(np.uint8)


def _run(args) -> int:
    from PIL import Image

    from .predictor import SamPredictor
    Image.init()
    if args.out.suffix.lower() not in Image.registered_extensions():  # before the encode, not after it
        raise InputError(f"--out {args.out}: {args.out.suffix or 'no extension'} is not an image format Pillow "
                         "writes; use .png (or .jpg, .webp)")
    image = load_image(args.image)
    predictor = SamPredictor(args.bundle, args.backend, args.device, threads=args.threads, precision=args.precision)
    points = args.point + args.bg_point
    coords = np.array(points, np.float64) if points else None
    labels = np.array([1] * len(args.point) + [0] * len(args.bg_point)) if points else None
    box = np.array(args.box) if args.box else None
    predictor.set_image(image)
    # The official recommendation: ask for three masks when the prompt is a single point (ambiguous).
    multimask = len(points) == 1 and box is None
    masks, scores, _ = predictor.predict(coords, labels, box, multimask_output=multimask)
    best = int(np.argmax(scores))
    mask = masks[best]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, mask)).save(args.out)
    mask_path = args.out.with_name(args.out.stem + "_mask.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
    note = " (RANDOM weights: the mask is meaningless)" if predictor.bundle.manifest.weights.is_random else ""
    print(f"wrote {args.out} and {mask_path}: mask {best} of {len(scores)}, score {scores[best]:.3f}, "
          f"area {mask.mean() * 100:.1f}% of the image{note}")
    info = predictor.sessions["encoder"].info
    precision = f"{predictor.bundle.manifest.precision} graph" if info.precision == "as exported" else info.precision
    print(f"ran on {predictor.backend} {predictor.encoder_device} ({', '.join(info.executes_on)}, "
          f"precision {precision})")
    return 0


def _everything(args) -> int:
    from tqdm import tqdm

    from .everything import SamAutomaticMaskGenerator
    from .everything.folder import list_images, run_folder
    from .predictor import SamPredictor
    sample = args.image.startswith("sample:")
    images = [Path(args.image.split(":", 1)[1] + ".png")] if sample else list_images(Path(args.image))
    params = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                  pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
                  stability_score_offset=args.stability_score_offset, box_nms_thresh=args.box_nms_thresh,
                  crop_n_layers=args.crop_n_layers, crop_n_points_downscale_factor=args.crop_n_points_downscale_factor,
                  min_mask_region_area=args.min_mask_region_area, output_mode=args.output_mode,
                  use_m2m=args.m2m, multimask_output=not args.single_mask)
    SamAutomaticMaskGenerator(None, **params)  # bad parameters fail before any model is loaded
    predictor = SamPredictor(args.bundle, args.backend, args.device, threads=args.threads, precision=args.precision,
                             embedding_cache_size=0)
    generator = SamAutomaticMaskGenerator(predictor, **params, fast=args.fast)
    random_weights = predictor.bundle.manifest.weights.is_random
    if random_weights:
        log.warning("bundle %s has RANDOM weights: the masks are meaningless (the timings are real)", args.bundle)
    load = (lambda p: load_image(args.image)) if sample else (lambda p: load_image(str(p)))
    with tqdm(total=len(images), unit="image", disable=args.no_progress or len(images) == 1) as bar, \
            tqdm(unit="prompt", disable=args.no_progress, leave=False) as prompts:
        result = run_folder(generator, images, args.out, load, compressed=args.output_mode == "coco_rle",
                            random_weights=random_weights, on_image=lambda p: bar.update(1),
                            on_prompts=prompts.update)
    for name in result.done:
        print(f"{name}: {result.seconds[name]:.1f} s -> {args.out}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} image(s) already done in {args.out}")
    for name, why in result.failed.items():
        print(f"FAILED {name}: {why.splitlines()[0]}", file=sys.stderr)
    if generator.last_stats is not None and result.done:
        st = generator.last_stats
        print(f"last image: {st.prompts} prompts, {st.candidates} candidates -> {st.after_pred_iou} after predicted "
              f"IoU -> {st.after_stability} after stability -> {st.after_box_nms} after box NMS -> {st.masks} masks; "
              f"masks decoded for {st.mask_decoded_prompts} of {st.prompts} prompts"
              + (" (RANDOM weights)" if random_weights else ""))
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
