"""Names of the graph inputs/outputs (the decoder contract in DESIGN.md). Written into every manifest."""
from __future__ import annotations

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")
NUM_MASK_OUTPUTS = 4  # index 0: single-mask output; 1..3: the multimask outputs

# The split decoder (no mask prior): a per-image context graph and a per-prompt graph (DESIGN.md, issue 13).
# Its inputs are the family's per-image decoder inputs (families.Family.feature_names: the image embedding,
# plus SAM 2.1's high-res features).
CONTEXT_OUTPUT_PREFIX = "context_"  # context_00, context_01, ...: the per-image products (split_decoder)
PROMPT_INPUTS = ("point_coords", "point_labels")  # followed by the context tensors it reads, in context order
PROMPT_MASK_INPUTS = ("point_coords", "point_labels", "mask_input", "has_mask_input")  # the mask-prior variant
PROMPT_OUTPUTS = DECODER_OUTPUTS
