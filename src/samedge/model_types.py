"""Architecture facts about each supported model. Pure Python: safe on the runtime path."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError

# SAM's normalisation constants (RGB, 0-255 scale), identical for every model in the family.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
IMAGE_SIZE = 1024
EMBEDDING_SHAPE = (1, 256, 64, 64)
LOW_RES_MASK_SIZE = 256
MASK_THRESHOLD = 0.0


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14


@dataclass(frozen=True)
class TinyViTConfig:
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    num_classes: int = 1000  # MobileSAM keeps TinyViT's (unused) classifier head in its checkpoint


@dataclass(frozen=True)
class HieraConfig:
    """SAM 2.1's Hiera trunk (image mode): stage widths double and heads double at each of the 3 q-pooling
    stage shifts; windowed attention per stage except the global-attention blocks."""
    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    pos_embed_bkg_size: tuple[int, int] = (14, 14)

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Stage output widths, deepest first (the FPN neck's input order)."""
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.stages)))[::-1]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    encoder: ViTConfig | TinyViTConfig | HieraConfig
    description: str
    official_file: str | None = None
    # Test-only architectures have no official checkpoint and are hidden from help texts.
    internal: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def family(self) -> str:
        """"sam" (SAM 1, MobileSAM) or "sam2" (SAM 2.1): which contract and processing the bundle uses."""
        return "sam2" if isinstance(self.encoder, HieraConfig) else "sam"


MODEL_SPECS: dict[str, ModelSpec] = {
    "vit_b": ModelSpec("vit_b", ViTConfig(768, 12, 12, (2, 5, 8, 11)), "SAM ViT-B (91M encoder)",
                       "sam_vit_b_01ec64.pth"),
    "vit_l": ModelSpec("vit_l", ViTConfig(1024, 24, 16, (5, 11, 17, 23)), "SAM ViT-L (308M encoder)",
                       "sam_vit_l_0b3195.pth"),
    "vit_h": ModelSpec("vit_h", ViTConfig(1280, 32, 16, (7, 15, 23, 31)), "SAM ViT-H (632M encoder)",
                       "sam_vit_h_4b8939.pth"),
    "mobile_sam": ModelSpec("mobile_sam", TinyViTConfig(), "MobileSAM (TinyViT-5M encoder)",
                            "mobile_sam.pt", aliases=("vit_t",)),
    "sam2.1_hiera_tiny": ModelSpec("sam2.1_hiera_tiny", HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9),
                                                                   pos_embed_bkg_size=(7, 7)),
                                   "SAM 2.1 Hiera-T (image mode)", "sam2.1_hiera_tiny.pt"),
    "sam2.1_hiera_small": ModelSpec("sam2.1_hiera_small", HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13),
                                                                     pos_embed_bkg_size=(7, 7)),
                                    "SAM 2.1 Hiera-S (image mode)", "sam2.1_hiera_small.pt"),
    "sam2.1_hiera_base_plus": ModelSpec("sam2.1_hiera_base_plus", HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20)),
                                        "SAM 2.1 Hiera-B+ (image mode)", "sam2.1_hiera_base_plus.pt"),
    "sam2.1_hiera_large": ModelSpec("sam2.1_hiera_large", HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43),
                                                                     (8, 4, 16, 8), (7, 7)),
                                    "SAM 2.1 Hiera-L (image mode)", "sam2.1_hiera_large.pt"),
    # A real SAM ViT layout shrunk to a few MB, with the full-size prompt encoder and mask decoder,
    # so that tests exercise every code path in seconds.
    "test_tiny": ModelSpec("test_tiny", ViTConfig(32, 2, 2, (1,)), "tiny ViT for tests (random weights only)",
                           internal=True),
    # A real Hiera layout (4 stages, windows with padding, q-pooling, one global block) a few MB in size, with
    # the full-size SAM 2 heads and video modules, for tests that export SAM 2.1's contract in seconds.
    "test_tiny_sam2": ModelSpec("test_tiny_sam2", HieraConfig(8, 1, (1, 1, 2, 1), (3,), pos_embed_bkg_size=(7, 7)),
                                "tiny Hiera for tests (random weights only)", internal=True),
}


def public_model_names() -> list[str]:
    return [name for name, spec in MODEL_SPECS.items() if not spec.internal]


def get_spec(name: str) -> ModelSpec:
    for spec in MODEL_SPECS.values():
        if name == spec.name or name in spec.aliases:
            return spec
    raise InputError(f"unknown model type {name!r}; allowed: {', '.join(public_model_names())} "
                     f"(alias vit_t = mobile_sam)")
