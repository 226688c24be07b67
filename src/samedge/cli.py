"""Command line: `samedge export` and `samedge run`."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import ParityError, SamEdgeError
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
    ex.add_argument("--no-dynamic-decoder", action="store_true", help="export only the static decoders")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    ex.add_argument("--parity-images", type=int, default=3, help="real photos used for parity (1-3, default 3)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    ex.add_argument("--no-progress", action="store_true")

    run = sub.add_parser("run", help="segment an image with a bundle and write an overlay PNG and the mask")
    run.add_argument("image", help="an image file, or sample:voc / sample:arc2017 for a built-in real photo")
    run.add_argument("--bundle", type=Path, required=True)
    run.add_argument("--point", type=_xy, action="append", default=[], metavar="X,Y", help="foreground point")
    run.add_argument("--bg-point", type=_xy, action="append", default=[], metavar="X,Y", help="background point")
    run.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1")
    run.add_argument("--out", type=Path, required=True, help="overlay PNG; the mask goes beside it as *_mask.png")
    run.add_argument("--threads", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    from .bundle import RandomWeightsWarning
    warnings.simplefilter("ignore", RandomWeightsWarning)  # the logger already says it, once
    try:
        return {"export": _export, "run": _run}[args.command](args)
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
                       dynamic_decoder=not args.no_dynamic_decoder, simplify=not args.no_simplify,
                       parity_images=args.parity_images, overwrite=args.overwrite)
    if weights == "random":
        log.warning("exporting %s with RANDOM weights (seed %d): masks will be meaningless; "
                    "fidelity and latency figures are real", args.model, args.seed)
    manifest = export_bundle(cfg, progress=not args.no_progress)
    s = manifest.parity["summary"]
    sizes = {g.file: g.bytes for g in manifest.graphs()}
    print(f"wrote {args.out} ({sum(sizes.values()) / 1e6:.1f} MB: "
          + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()) + ")")
    print(f"parity vs PyTorch fp32: min mask IoU {s['min_mask_iou']:.5f}, mean {s['mean_mask_iou']:.5f}, "
          f"max IoU-score error {s['max_score_error']:.2e}, min embedding cosine {s['min_embedding_cosine']:.7f}, "
          f"embedding max abs error {s['max_embedding_abs_error']:.2e}")
    print("export seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in manifest.export["seconds"].items()))
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
    image = load_image(args.image)
    predictor = SamPredictor(args.bundle, threads=args.threads)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
