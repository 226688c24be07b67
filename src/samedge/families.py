"""What differs between the model families, in one place: the graphs' I/O names and the processing around
them. Pure Python (runtime-safe). A bundle's manifest carries its family and processing, so the one numpy
predictor, parity, bench, quantize and segment-everything serve every family from the manifest.

- "sam": SAM ViT-B/L/H and MobileSAM (segment_anything.SamPredictor).
- "sam2": SAM 2.1 image mode (sam2.SAM2ImagePredictor): the encoder also gives two high-resolution feature
  maps that the decoder takes; the image is stretched to a square; the IoU head is a sigmoid.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .contract import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT
from .errors import InputError

PROMPT_NAMES = ("point_coords", "point_labels", "mask_input", "has_mask_input")
SAM2_HIGH_RES = ("high_res_feats_0", "high_res_feats_1")  # (1, 32, 256, 256), (1, 64, 128, 128)
SAM2_HIGH_RES_SHAPES = ((1, 32, 256, 256), (1, 64, 128, 128))
RESIZE_MODES = ("longest_side", "square")
SINGLE_MASK_RULES = ("first", "stability")


@dataclass(frozen=True)
class Processing:
    """Pre/post-processing around the graphs (manifest field `processing`).

    resize: "longest_side" (SAM: PIL bilinear of the uint8 image to a 1024 longest side, zero-padded) or
    "square" (SAM 2: the [0, 1] float image resized to 1024x1024 with torch's antialiased bilinear, masks
    upsampled straight back to the original size). input_scale: pixels are divided by it before the resize
    (pixel_mean/std are on that scale). always_pad_point: SAM 2 appends the padding point even after a box;
    box_first: SAM 2 puts a box's corners before the clicks. single_mask: which mask multimask_output=False
    returns: "first" (token 0) or "stability" (SAM 2's dynamic rule: token 0 when its stability at
    +-stability_delta reaches stability_thresh, else the best-scored multimask output). low_res_clamp: SAM 2
    returns its low-res logits clamped to +-this (the upsampled masks are not)."""
    resize: str = "longest_side"
    input_scale: float = 1.0
    always_pad_point: bool = False
    box_first: bool = False
    single_mask: str = "first"
    stability_delta: float = 0.05
    stability_thresh: float = 0.98
    low_res_clamp: float | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise InputError(f"processing.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.single_mask not in SINGLE_MASK_RULES:
            raise InputError(f"processing.single_mask must be one of {SINGLE_MASK_RULES}, got {self.single_mask!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Family:
    name: str
    encoder_inputs: tuple[str, ...]
    encoder_outputs: tuple[str, ...]  # the first is the (1, 256, 64, 64) image embedding
    decoder_inputs: tuple[str, ...]
    decoder_outputs: tuple[str, ...]
    processing: Processing
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Per-image tensors the decoder takes from the encoder (the image embedding first)."""
        return tuple(n for n in self.decoder_inputs if n not in PROMPT_NAMES)


SAM = Family("sam", (ENCODER_INPUT,), (ENCODER_OUTPUT,), DECODER_INPUTS, DECODER_OUTPUTS, Processing(),
             (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
SAM2 = Family("sam2", (ENCODER_INPUT,), (ENCODER_OUTPUT, *SAM2_HIGH_RES), (ENCODER_OUTPUT, *SAM2_HIGH_RES, *PROMPT_NAMES),
              DECODER_OUTPUTS,
              Processing(resize="square", input_scale=255.0, always_pad_point=True, box_first=True,
                         single_mask="stability", low_res_clamp=32.0),
              (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
FAMILIES = {f.name: f for f in (SAM, SAM2)}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise InputError(f"unknown model family {name!r}; allowed: {', '.join(FAMILIES)}")
    return FAMILIES[name]
