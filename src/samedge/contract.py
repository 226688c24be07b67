"""Names of the graph inputs/outputs (the decoder contract in DESIGN.md). Written into every manifest."""
from __future__ import annotations

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")
NUM_MASK_OUTPUTS = 4  # index 0: single-mask output; 1..3: the multimask outputs
