"""A minimal stand-in for torchvision, for tests only: just what segment-anything 1.0 imports
(transforms.functional.resize / to_pil_image and ops.boxes.batched_nms / box_area), written from
torchvision's documented semantics. PyPI's torchvision has no CPU build that loads beside torch 2.13 here."""
