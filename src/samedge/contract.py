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
# The prompt graph in two stages (segment everything decides on the scores before paying for any mask):
# scores graph: PROMPT_INPUTS + context -> iou_predictions + the mask state; masks graph: the mask state + the
# context tensors it reads -> low_res_masks. The state is the final image tokens in split form
# (X = scale * (E * g + coef^T @ rows); scale (B, 1, n), coef (B, R, n), rows (B, R, 256)) and the
# hypernetwork vectors (B, 4, 32). Both graphs come from one export, so a bundle's pair always agrees.
MASK_STATE = ("mask_hyper_in", "mask_token_scale", "mask_token_coef", "mask_token_rows")
SCORES_OUTPUTS = ("iou_predictions", *MASK_STATE)
MASKS_OUTPUTS = ("low_res_masks",)
