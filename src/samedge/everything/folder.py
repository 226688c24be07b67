"""`samedge everything IMAGE|FOLDER`: segment every image, write <stem>.everything.png (overlay) and
<stem>.everything.json (COCO) per image into the output folder. Resumable: an image whose JSON exists is skipped
(the JSON is written last, atomically, so it exists only for finished images). A failing image is recorded in
failures.json and the run goes on."""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, SamEdgeError
from .generator import SamAutomaticMaskGenerator
from .outputs import coco_document, overlay_all

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
OUTPUT_SUFFIXES = (".everything.png", ".everything.json")


@dataclass
class FolderResult:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done by an earlier run
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def list_images(source: Path) -> list[Path]:
    """An image file, or every image file directly inside a folder (sorted by name)."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.endswith(OUTPUT_SUFFIXES))
        if not files:
            raise InputError(f"{source} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not source.is_file():
        raise InputError(f"{source} is neither an image file nor a folder")
    return [source]


def output_paths(image: Path, out_dir: Path) -> tuple[Path, Path]:
    return out_dir / f"{image.stem}.everything.png", out_dir / f"{image.stem}.everything.json"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_folder(generator: SamAutomaticMaskGenerator, images: list[Path], out_dir: Path,
               load: Callable[[Path], np.ndarray], *, compressed: bool = True, random_weights: bool = False,
               on_image: Callable[[Path], None] = lambda p: None,
               on_prompts: Callable[[int], None] | None = None) -> FolderResult:
    from PIL import Image, ImageDraw
    stems = [p.stem for p in images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise InputError(f"images with the same stem would write the same outputs: {clash}")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = FolderResult()
    failures_path = out_dir / "failures.json"
    for path in images:
        png, js = output_paths(path, out_dir)
        if js.exists():
            result.skipped.append(path.name)
            on_image(path)
            continue
        start = time.perf_counter()
        try:
            image = load(path)
            records = generator.generate(image, on_prompts=on_prompts)
            picture = Image.fromarray(overlay_all(image, records))
            if random_weights:
                draw = ImageDraw.Draw(picture)
                label = "RANDOM weights: these masks are meaningless"
                draw.rectangle(draw.textbbox((8, 8), label), fill=(0, 0, 0))
                draw.text((8, 8), label, fill=(255, 255, 0))
            picture.save(png)
            info: dict[str, Any] = {"description": f"samedge everything, {len(records)} masks",
                                    "random_weights": random_weights, "stats": generator.last_stats.to_dict()}
            _write_atomic(js, json.dumps(coco_document(records, path.name, image.shape[:2], compressed=compressed,
                                                       info=info)))
            result.done.append(path.name)
            result.seconds[path.name] = round(time.perf_counter() - start, 3)
        except (SamEdgeError, OSError, ValueError) as exc:  # recorded, and the run goes on
            result.failed[path.name] = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, SamEdgeError):
                result.failed[path.name] += "\n" + traceback.format_exc(limit=3)
        on_image(path)
    if result.failed or failures_path.exists():
        _write_atomic(failures_path, json.dumps(result.failed, indent=2))
    return result
