"""SAM's (and SAM 2.1's) mask decoder split into a per-image graph and a per-prompt graph, exact up to float
rounding.

Why: without a mask prior, the decoder's 4096 image tokens start as embedding + no-mask embedding, the same
for every prompt of an image. Afterwards they change only by attention to the T prompt tokens (T = 5 output
tokens + point rows): each image->token attention adds sum_h S_h (V_h W_o,h), a rank <= 8T update, and each
LayerNorm rescales every token by its own scalar. So at every stage the image tokens are

    X = c * (E * g + C @ B)          (per token n: c[n] a scalar, C[n] a short coefficient row)

with E the image embedding (4096 x 256, per image), g a fixed vector (the product of the LayerNorm gains so
far), and B a few prompt-dependent or fixed 256-vectors. Every fixed linear map M applied to X (the K/V/Q
projections, the first transposed conv) splits into c * (E g M + C @ (B M)): E g M computed once per image by
ContextGraph, C @ (B M) prompt-sized. LayerNorm statistics come from the same pieces (means, squared norms, Gram
matrices). PromptGraph never touches a 4096 x 256 x 128 product: per prompt it costs about a third of the
full decoder (bench's FLOP count; see tests/test_split_decoder.py).

SAM 2.1's decoder is the same two-way transformer with an extra output token (the object score, first) and
the encoder's high-resolution features added in the upscaling path: dc1(X) + feat_s1 and dc2(.) + feat_s0.
dc1(X) splits like any linear map; the features are per image, so the context graph hands them over already
in the token-major layout the prompt graph works in (with the transposed convs' biases folded in).

ContextGraph: image_embeddings (1, 256, 64, 64) [+ SAM 2.1: high_res_feats_0, high_res_feats_1] ->
context_00 .. context_K: every per-image product.
PromptGraph: point_coords (B, N, 2), point_labels (B, N), context_00 .. -> low_res_masks (B, 4, 256, 256),
iou_predictions (B, 4), exactly as DecoderGraph without a mask prior (mask_input prompts use DecoderGraph).
Which products exist is recorded by running the prompt computation once at construction: one source of truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..contract import CONTEXT_OUTPUT_PREFIX
from ..families import SAM2_HIGH_RES_SHAPES
from ..models.sam import Sam
from .graphs import embed_prompt_rows

class _Context:
    """Per-image products by key. Recording: computes them from the per-image inputs (E (1, n, 256) tokens,
    then SAM 2.1's high-res maps) and keeps each one's function. Reading: takes them from the context graph's
    outputs, in recording order."""

    def __init__(self, inputs: tuple[torch.Tensor, ...] | None = None,
                 tensors: dict[str, torch.Tensor] | None = None) -> None:
        self.inputs = inputs
        self.tensors = tensors
        self.recorded: dict[str, Callable[[tuple[torch.Tensor, ...]], torch.Tensor]] = {}

    def get(self, key: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """A product of the embedding tokens E."""
        return self.get_from_inputs(key, lambda inputs: fn(inputs[0]))

    def get_from_inputs(self, key: str, fn: Callable[[tuple[torch.Tensor, ...]], torch.Tensor]) -> torch.Tensor:
        """A product of all per-image inputs (E, *high_res_feats)."""
        if self.tensors is not None:
            return self.tensors[key]
        self.recorded.setdefault(key, fn)
        return fn(self.inputs)


@dataclass
class _Block:
    """Part of X: coefficients (B|1, r, n) times rows (B|1, r, 256). rows = F (r, 256) for a fixed block, or,
    for an attention block, per head G (B, H, T, d) @ F (H, d, 256), flattened head-major. F comes from
    the weights; coefficients are kept token-last, the layout the products below need."""
    name: str
    coef: torch.Tensor
    F: torch.Tensor
    G: torch.Tensor | None = None

    def rows(self) -> torch.Tensor:
        if self.G is None:
            return self.F.unsqueeze(0)
        b, h, t, d = self.G.shape
        return (self.G @ self.F.unsqueeze(0)).reshape(b, h * t, -1)

    def with_gain(self, gain: torch.Tensor) -> "_Block":
        """The block after a LayerNorm: its rows times the gain; its coefficients unchanged (the norm's
        per-token scale goes into _ImageTokens.c)."""
        return _Block(self.name, self.coef, self.F * gain, self.G)


@dataclass
class _ImageTokens:
    """X = c * (E * g + sum_k blocks[k].coef^T @ blocks[k].rows()); c (B, 1, n), None meaning 1. The per-token
    scale is factored out so a LayerNorm only updates c and adds two blocks, instead of rescaling every
    coefficient row (B x R x n floats). `unit` is the coefficient that stands for a constant 1 in X (1 / c):
    blocks with that coefficient share one row. `tag` names the stage so context keys are unique."""
    tag: str
    g: torch.Tensor
    blocks: list[_Block] = field(default_factory=list)
    c: torch.Tensor | None = None
    unit: torch.Tensor | None = None
    _stacked: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    def plus(self, added: list[_Block]) -> "_ImageTokens":
        """X + the added blocks (coefficients already divided by c); a fixed block whose coefficient is
        `unit` adds its rows to the unit block's."""
        blocks = list(self.blocks)
        for blk in added:
            same = [i for i, old in enumerate(blocks) if blk.G is None and old.G is None and old.coef is blk.coef]
            if same:
                old = blocks[same[0]]
                blocks[same[0]] = _Block(old.name, old.coef, old.F + blk.F)
            else:
                blocks.append(blk)
        return _ImageTokens(self.tag, self.g, blocks, self.c, self.unit)

    def split_form(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """X as scale (B, 1, n), coef (B, R, n), rows (B, R, 256), X = scale * (E * g + coef^T @ rows): what
        the upscaling reads (contract.MASK_STATE)."""
        coef, rows = self.stacked()
        scale = self.c if self.c is not None else torch.ones_like(coef[:, :1, :])
        return scale, coef, rows

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All blocks at once: coefficients (B, R, n) and rows (B, R, 256). Built once per stage: every
        product of the stage reads the same two tensors (each concatenation copies B x R x n floats)."""
        if self._stacked is None:
            coefs = [blk.coef for blk in self.blocks]
            rows = [blk.rows() for blk in self.blocks]
            batch = _batch_of(coefs + rows)
            self._stacked = (torch.cat([_to_batch(t, batch) for t in coefs], dim=1),
                             torch.cat([_to_batch(t, batch) for t in rows], dim=1))
        return self._stacked


def _batch_of(tensors: list[torch.Tensor]):
    """The prompt batch of a list of tensors, each (B, ...) or (1, ...) (a fixed part shared by every prompt)."""
    per_prompt = [t.shape[0] for t in tensors if not _is_shared(t)]
    return per_prompt[0] if per_prompt else 1


def _is_shared(t: torch.Tensor) -> bool:
    # a fixed part has a static leading 1; a per-prompt tensor's leading dim is the (symbolic, when exported)
    # batch. Expanding only the former keeps the graph from copying per-prompt tensors to their own shape.
    return isinstance(t.shape[0], int) and t.shape[0] == 1


def _to_batch(t: torch.Tensor, batch) -> torch.Tensor:
    return t.expand(batch, *t.shape[1:]) if _is_shared(t) else t


def _flat_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, k) -> (B, H*T, k): one matmul per prompt instead of one per prompt and head (which would
    pack the same right-hand side H times)."""
    b, h, t, k = x.shape
    return x.reshape(b, h * t, k)


def _softmax_middle(x: torch.Tensor, dim: int, divisor: torch.Tensor | None = None) -> torch.Tensor:
    """softmax over a middle axis, written out, divided by `divisor` (broadcast; None: 1) in the same step.
    ONNX Softmax on a non-last axis makes ORT transpose the tensor there and back (2.6x slower at
    (64, 8, 7, 4096) on a 2-core AVX-512 EPYC); reductions along the axis do not. Same arithmetic: exp(x - max) / sum."""
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    total = e.sum(dim=dim, keepdim=True)
    return e / (total if divisor is None else total * divisor)


def _sum_of_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_r a[:, r, :] * b[:, r, :] for (B|1, r, n) tensors -> (B|1, 1, n); the sum as a product with ones
    (a reduction over a middle axis is slow)."""
    prod = a * b
    r = prod.shape[1]
    if isinstance(r, int) and r == 1:
        return prod
    return torch.ones_like(prod[:, :, :1]).transpose(1, 2) @ prod


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, heads, c // heads).transpose(1, 2)  # (B, H, T, d)


def _per_head(x: torch.Tensor, heads: int, token_last: bool) -> torch.Tensor:
    """(1, n, H*d) -> (1, H, d, n) if token_last else (1, H, n, d)."""
    one, n, hd = x.shape
    x = x.reshape(one, n, heads, hd // heads)
    return x.permute(0, 2, 3, 1) if token_last else x.transpose(1, 2)


class _Engine(nn.Module):
    """The prompt-side computation; `ctx` supplies per-image products (recorded or read)."""

    def __init__(self, sam: Sam, with_mask: bool = False) -> None:
        super().__init__()
        pe = sam.prompt_encoder
        self.with_mask = with_mask
        self.mask_downscaling = pe.mask_downscaling
        self.pe_layer = pe.pe_layer
        self.image_size = float(pe.input_image_size[0])
        self.not_a_point = pe.not_a_point_embed.weight
        self.point_embeddings = nn.ParameterList(e.weight for e in pe.point_embeddings)
        self.no_mask_embed = pe.no_mask_embed.weight
        self.mask_decoder = sam.mask_decoder
        # SAM 2.1: an object-score token first, and high-res features in the upscaling path
        self.high_res = sam.spec.family == "sam2"
        pe_tokens = pe.get_dense_pe().detach().flatten(2).transpose(1, 2)  # (1, n, 256)
        self.dim = pe_tokens.shape[-1]
        self.tokens = pe_tokens.shape[1]
        # Constant per model, (1, H, d, n): (pe @ W^T + b) of every projection of (image tokens + pe).
        self._pe_proj_names = []
        for name, attn in self._image_side_attentions():
            proj = attn.k_proj if "token_to_image" in name else attn.q_proj
            value = pe_tokens @ proj.weight.detach().T + proj.bias.detach()
            self.register_buffer(f"pe_proj_{len(self._pe_proj_names)}",
                                 _per_head(value, attn.num_heads, token_last=True).contiguous())
            self._pe_proj_names.append(name)

    def _image_side_attentions(self):
        t = self.mask_decoder.transformer
        out = []
        for i, layer in enumerate(t.layers):
            out += [(f"layers.{i}.cross_attn_token_to_image", layer.cross_attn_token_to_image),
                    (f"layers.{i}.cross_attn_image_to_token", layer.cross_attn_image_to_token)]
        out.append(("final_attn_token_to_image", t.final_attn_token_to_image))
        return out

    def _pe_proj(self, name: str) -> torch.Tensor:
        return getattr(self, f"pe_proj_{self._pe_proj_names.index(name)}")

    # -- operations on image tokens --------------------------------------------------------------
    def _project_dot(self, ctx: _Context, X: _ImageTokens, proj: nn.Linear, vecs: torch.Tensor, name: str,
                     key: str) -> torch.Tensor:
        """((X + pe) @ W^T + b) per head, dotted with vecs (B, H, T, d) -> (B, H, T, n)."""
        W, heads, g = proj.weight, vecs.shape[1], X.g
        pe = self._pe_proj(name)
        if X.c is None:  # unscaled tokens: the positional term joins the per-image product (one matmul less)
            ew = ctx.get(f"{X.tag}:{key}+pe", lambda E: _per_head((E * g) @ W.T, heads, token_last=True) + pe)
        else:
            ew = ctx.get(f"{X.tag}:{key}", lambda E: _per_head((E * g) @ W.T, heads, token_last=True))
        out = vecs @ ew  # (B, H, T, n)
        coef, rows = X.stacked()
        m = rows @ W.T  # (B, R, H*d)
        b, r, _ = m.shape
        m = m.reshape(b, r, heads, -1).permute(0, 2, 3, 1)  # (B, H, d, R)
        low_rank = _flat_heads(vecs @ m) @ _to_batch(coef, vecs.shape[0])  # (B, H*T, n)
        out = out + low_rank.reshape(out.shape)
        if X.c is None:
            return out
        return out * X.c.unsqueeze(1) + vecs @ pe

    def _weighted_sum(self, ctx: _Context, X: _ImageTokens, proj: nn.Linear, S: torch.Tensor,
                      key: str) -> torch.Tensor:
        """sum_n S[b, h, t, n] * (X @ W^T + b)[n, head h] -> (B, H, T, d); each S row sums to 1."""
        W, heads, g = proj.weight, S.shape[1], X.g
        ew = ctx.get(f"{X.tag}:{key}", lambda E: _per_head((E * g) @ W.T, heads, token_last=False))  # (1, H, n, d)
        weights = S if X.c is None else S * X.c.unsqueeze(1)
        out = weights @ ew
        coef, rows = X.stacked()
        m = rows @ W.T
        b, r, _ = m.shape
        m = m.reshape(b, r, heads, -1).transpose(1, 2)  # (B, H, R, d)
        sb, h, t, n = S.shape
        weights_low = _flat_heads(weights) @ _to_batch(coef, sb).transpose(1, 2)  # (B, H*T, R)
        out = out + weights_low.reshape(sb, h, t, -1) @ m
        return out + proj.bias.reshape(heads, -1)[None, :, None, :]

    def _e_dot(self, ctx: _Context, X: _ImageTokens, blk: _Block) -> torch.Tensor:
        """blk.rows() @ (E * g)^T -> (B|1, r, n), from a per-image product with the block's fixed part."""
        g, F = X.g, blk.F
        key = f"{X.tag}:dot:{blk.name}"
        if blk.G is None:
            return ctx.get(key, lambda E: F @ (E * g).transpose(1, 2))
        h, d, _ = F.shape
        ew = ctx.get(key, lambda E: _per_head((E * g) @ F.reshape(h * d, -1).T, h, token_last=True))  # (1, H, d, n)
        b, _, t, _ = blk.G.shape
        return (blk.G @ ew).reshape(b, h * t, -1)

    def _layer_norm(self, ctx: _Context, X: _ImageTokens, norm: nn.LayerNorm, tag: str) -> _ImageTokens:
        """LayerNorm of every image token, from means, squared norms and Gram matrices of X's pieces.
        With X = c * Y, Y = E g + U (U = coef^T @ rows): LN(X) = c' * (Y gamma - mean(Y) gamma + beta / c'),
        c' = c * inv, so the blocks keep their coefficients and gain two (centre and beta)."""
        g, dim = X.g, self.dim
        mean_p = ctx.get(f"{X.tag}:mean", lambda E: (E * g).mean(-1).unsqueeze(1))  # (1, 1, n)
        sq_p = ctx.get(f"{X.tag}:sq", lambda E: ((E * g) ** 2).sum(-1).unsqueeze(1))
        coef, rows = X.stacked()  # (B, R, n), (B, R, 256)
        mean_y = mean_p + rows.mean(-1).unsqueeze(1) @ coef  # (B, 1, n)
        # |E g + U|^2 = |E g|^2 + 2 sum_r coef_r (E g . rows_r) + coef^T Gram coef; the middle term block
        # by block, so the (E g . rows) products are never concatenated
        cross = None
        for blk in X.blocks:
            term = _sum_of_products(blk.coef, self._e_dot(ctx, X, blk))
            cross = term if cross is None else cross + term
        quad = _sum_of_products((rows @ rows.transpose(1, 2)) @ coef, coef)
        sq_y = sq_p + 2 * cross + quad
        if X.c is None:
            mean, sq = mean_y, sq_y
        else:
            mean, sq = mean_y * X.c, sq_y * X.c * X.c
        inv = torch.rsqrt(sq / dim - mean * mean + norm.eps)  # (B, 1, n)
        c = inv if X.c is None else X.c * inv
        unit = 1 / c
        gamma, beta = norm.weight, norm.bias
        blocks = [blk.with_gain(gamma) for blk in X.blocks]
        blocks.append(_Block(f"{tag}.center", -mean_y, gamma.reshape(1, -1)))
        blocks.append(_Block(f"{tag}.beta", unit, beta.reshape(1, -1)))
        return _ImageTokens(tag, g * gamma, blocks, c, unit)

    def _token_to_image(self, ctx, attn, queries_with_pe: torch.Tensor, X: _ImageTokens, name: str):
        qp = _heads(attn.q_proj(queries_with_pe), attn.num_heads)
        d = qp.shape[-1]
        # 1/sqrt(d) on the few query vectors, not on the (B, H, T, n) logits
        logits = self._project_dot(ctx, X, attn.k_proj, qp / (d ** 0.5), name, f"{name}.k")
        out = self._weighted_sum(ctx, X, attn.v_proj, logits.softmax(dim=-1), f"{name}.v")
        b, h, t, _ = out.shape
        return attn.out_proj(out.transpose(1, 2).reshape(b, t, h * d))

    def _image_to_token(self, ctx, attn, X: _ImageTokens, keys_with_pe: torch.Tensor, values: torch.Tensor,
                        name: str) -> _ImageTokens:
        kt = _heads(attn.k_proj(keys_with_pe), attn.num_heads)
        vt = _heads(attn.v_proj(values), attn.num_heads)
        heads, d = kt.shape[1], kt.shape[-1]
        logits = self._project_dot(ctx, X, attn.q_proj, kt / (d ** 0.5), name, f"{name}.q")
        # softmax over the prompt tokens, divided by c as every coefficient of X is: (B, H, T, n)
        S = _softmax_middle(logits, 2, None if X.c is None else X.c.unsqueeze(1))
        b, _, t, n = S.shape
        wo = attn.out_proj.weight  # (256, H*d)
        F = wo.T.reshape(heads, d, wo.shape[0])
        return X.plus([_Block(f"{name}.out", S.reshape(b, heads * t, n), F, vt),
                       _Block(f"{name}.bias", X.unit, attn.out_proj.bias.reshape(1, -1))])

    def _masks(self, ctx: _Context, X: _ImageTokens, hyper: torch.Tensor) -> torch.Tensor:
        return self.upscaled_masks(ctx, X.tag, X.g, *X.split_form(), hyper)

    def upscaled_masks(self, ctx: _Context, tag: str, g: torch.Tensor, scale: torch.Tensor, coef: torch.Tensor,
                       rows: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        """output_upscaling + the hypernetwork product of the final image tokens X = scale * (E * g +
        coef^T @ rows) (scale (B, 1, n), coef (B, R, n), rows (B, R, 256)), hyper (B, M, 32) -> masks
        (B, M, 256, 256).

        Both transposed convs (2x2, stride 2) map each input pixel to its own 2x2 block, and LayerNorm2d,
        GELU and the hypernetwork product work per pixel, so everything stays token-major (channels
        last: LayerNorm over the last axis, plain matmuls) and only the M-channel result is rearranged
        into the image. Same arithmetic as the modules, without a pixel shuffle of 64- or 32-channel maps."""
        conv1, norm, act1, conv2, act2 = self.mask_decoder.output_upscaling
        cin, c1 = conv1.weight.shape[:2]
        W1 = conv1.weight.permute(0, 2, 3, 1).reshape(cin, 4 * c1)  # columns (a, b, out)
        y = ctx.get(f"{tag}:upscale", lambda E: (E * g) @ W1)  # (1, n, 4*c1)
        y = (y + coef.transpose(1, 2) @ (rows @ W1)) * scale.transpose(1, 2)
        y = y + self._upscale_addend(ctx, 1, conv1.bias.repeat(4))
        b, n, _ = y.shape
        y = act1(nn.functional.layer_norm(y.reshape(b, n * 4, c1), (c1,), norm.weight, norm.bias, norm.eps))
        c2 = conv2.weight.shape[1]
        W2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)  # columns (a', b', out)
        # the bias as (1, 1, 4*c2): a 1-D bias makes ORT fuse Add + Gelu into BiasGelu, slower than the two
        # (MobileSAM masks stage at batch 16, 2-core AVX-512 EPYC)
        addend = self._upscale_addend(ctx, 0, conv2.bias.repeat(4).reshape(1, 1, -1))
        z = act2(y @ W2 + addend).reshape(b, n * 16, c2)
        masks = hyper @ z.transpose(1, 2)  # (B, M, n*16): columns (i, j, a, b, a', b'); a transposed matmul
        side, m = int(round(n ** 0.5)), hyper.shape[1]
        # pixel order per mask, with B and M merged: a 7-D permute is faster than the 8-D one that also
        # moves the mask axis
        masks = masks.reshape(b * m, side, side, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
        return masks.reshape(b, m, side * 4, side * 4)  # row 4i + 2a + a', column 4j + 2b + b'

    def _upscale_addend(self, ctx: _Context, level: int, bias: torch.Tensor) -> torch.Tensor:
        """What is added after transposed conv 2 - level: its bias, plus (SAM 2.1) high_res_feats_<level>
        rearranged per image into the token-major layout: level 1 (1, 64, 128, 128) -> (1, n, 4 * 64), columns
        (a, b, out); level 0 (1, 32, 256, 256) -> (1, 4n, 4 * 32), rows (token, a, b), columns (a', b', out)."""
        if not self.high_res:
            return bias
        side = int(round(self.tokens ** 0.5))

        def tokens(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
            feat = inputs[1 + level]
            c = feat.shape[1]
            if level == 1:  # pixel (2i + a, 2j + b)
                t = feat.reshape(1, c, side, 2, side, 2).permute(0, 2, 4, 3, 5, 1)
                return t.reshape(1, self.tokens, 4 * c) + bias
            # pixel (4i + 2a + a', 4j + 2b + b')
            t = feat.reshape(1, c, side, 2, 2, side, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
            return t.reshape(1, self.tokens * 4, 4 * c) + bias
        return ctx.get_from_inputs(f"high_res_{level}", tokens)

    def _output_tokens(self) -> tuple[torch.Tensor, int]:
        """The decoder's learned output tokens (iou, mask tokens; SAM 2.1: object score first) and the
        index of the IoU token."""
        md = self.mask_decoder
        first = [md.obj_score_token.weight] if self.high_res else []
        return torch.cat([*first, md.iou_token.weight, md.mask_tokens.weight], dim=0), len(first)

    def _initial_blocks(self, mask_input: torch.Tensor | None, has_mask_input: torch.Tensor | None,
                        like: torch.Tensor, ones: torch.Tensor) -> list[_Block]:
        """The dense prompt embedding added to every image token: the no-mask embedding, or (with a mask
        prior) mask_downscaling(mask): its last layer is a 1x1 conv from 16 channels, so per token it is
        m16[n] @ W16 + b16, a rank-16 term with fixed rows W16. ones: (1, 1, n), X0's unit coefficient."""
        no_mask = self.no_mask_embed.reshape(1, -1)
        if not self.with_mask:
            return [_Block("no_mask", ones, no_mask)]
        last = self.mask_downscaling[-1]
        m16 = self.mask_downscaling[:-1](mask_input)  # (B, 16, 64, 64)
        b = m16.shape[0]
        has = has_mask_input.reshape(-1, 1, 1).to(like.dtype)
        return [_Block("mask", m16.reshape(b, m16.shape[1], -1) * has, last.weight[:, :, 0, 0].T),
                _Block("mask_bias", ones * has, last.bias.reshape(1, -1)),
                _Block("no_mask", ones * (1 - has), no_mask)]

    def forward(self, ctx: _Context, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor | None = None,
                has_mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        iou, hyper, X = self.transformer_pass(ctx, point_coords, point_labels, mask_input, has_mask_input)
        return self._masks(ctx, X, hyper), iou

    def transformer_pass(self, ctx: _Context, point_coords: torch.Tensor, point_labels: torch.Tensor,
                         mask_input: torch.Tensor | None = None, has_mask_input: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, _ImageTokens]:
        """The two-way transformer and both heads' inputs: iou (B, 4), hyper (B, 4, 32) and the final image
        tokens X, everything the masks need and nothing of their upscaling."""
        md = self.mask_decoder
        sparse = embed_prompt_rows(self.pe_layer, self.point_embeddings, self.not_a_point, self.image_size,
                                   point_coords, point_labels)
        b = sparse.shape[0]
        output_tokens, iou_index = self._output_tokens()
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        ones = torch.ones(1, 1, self.tokens, dtype=sparse.dtype)
        X = _ImageTokens("x0", torch.ones_like(self.no_mask_embed[0]),
                         self._initial_blocks(mask_input, has_mask_input, sparse, ones), unit=ones)
        queries, query_pe = tokens, tokens
        for i, layer in enumerate(md.transformer.layers):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(queries, queries, queries)
            else:
                q = queries + query_pe
                queries = queries + layer.self_attn(q, q, queries)
            queries = layer.norm1(queries)
            name = f"layers.{i}.cross_attn_token_to_image"
            queries = layer.norm2(queries + self._token_to_image(ctx, layer.cross_attn_token_to_image,
                                                                 queries + query_pe, X, name))
            queries = layer.norm3(queries + layer.mlp(queries))
            X = self._image_to_token(ctx, layer.cross_attn_image_to_token, X, queries + query_pe, queries,
                                     f"layers.{i}.cross_attn_image_to_token")
            X = self._layer_norm(ctx, X, layer.norm4, f"x{i + 1}")
        t = md.transformer
        # the last attention is per query token, and only the IoU and mask tokens are read after it: the
        # other tokens (points; SAM 2.1's object score) are not attended from (2 of 7 tokens for one click)
        used = slice(iou_index, iou_index + 1 + md.num_mask_tokens)
        queries, query_pe = queries[:, used], query_pe[:, used]
        queries = t.norm_final_attn(queries + self._token_to_image(ctx, t.final_attn_token_to_image,
                                                                   queries + query_pe, X, "final_attn_token_to_image"))
        iou = md.iou_prediction_head(queries[:, 0, :])
        mask_tokens = queries[:, 1:1 + md.num_mask_tokens, :]
        hyper = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1)
        return iou, hyper, X


def _record_context(engine: _Engine) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    high_res = tuple(torch.zeros(*s) for s in SAM2_HIGH_RES_SHAPES) if engine.high_res else ()
    ctx = _Context(inputs=(torch.zeros(1, engine.tokens, engine.dim), *high_res))
    mask = (torch.zeros(1, 1, 256, 256), torch.ones(1)) if engine.with_mask else ()
    with torch.no_grad():
        engine(ctx, torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]]), *mask)
    return list(ctx.recorded.items())


def context_names(count: int) -> tuple[str, ...]:
    """The context tensors' graph names, in order: context_00, context_01, ..."""
    return tuple(f"{CONTEXT_OUTPUT_PREFIX}{i:02d}" for i in range(count))


def _context_keys(sam: Sam) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """Every per-image product either prompt graph reads (without and with a mask prior), in first-use order."""
    items: dict = {}
    for with_mask in (False, True):
        for key, fn in _record_context(_Engine(sam, with_mask)):
            items.setdefault(key, fn)
    return list(items.items())


class ContextGraph(nn.Module):
    """(1, 256, 64, 64) image embedding [+ SAM 2.1: high_res_feats_0 (1, 32, 256, 256), high_res_feats_1
    (1, 64, 128, 128)] -> the per-image products the prompt graphs read, as separate tensors (context_00 ...;
    separate because slicing one packed tensor costs a copy per prompt)."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.engine = _Engine(sam, with_mask=True)  # holds the parameters the products use
        self.items = _context_keys(sam)
        self.output_names = context_names(len(self.items))

    def forward(self, image_embeddings: torch.Tensor, *high_res_feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = (image_embeddings.flatten(2).transpose(1, 2), *high_res_feats)  # E: (1, 4096, 256)
        return tuple(fn(inputs).contiguous() for _, fn in self.items)


class PromptGraph(nn.Module):
    """point rows (B, N, 2), (B, N) [, mask_input (B, 1, 256, 256), has_mask_input (B,) or (1,)] + the context
    tensors it reads -> low_res_masks (B, 4, 256, 256), iou_predictions (B, 4): DecoderGraph's outputs.
    with_mask False: prompts without a mask prior only (the cheaper graph)."""

    def __init__(self, sam: Sam, with_mask: bool = False) -> None:
        super().__init__()
        self.engine = _Engine(sam, with_mask)
        all_keys = [key for key, _ in _context_keys(sam)]
        mine = {key for key, _ in _record_context(self.engine)}
        self.keys = [k for k in all_keys if k in mine]
        names = dict(zip(all_keys, context_names(len(all_keys))))
        self.context_names = tuple(names[k] for k in self.keys)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = 4 if self.engine.with_mask else 2
        context = _Context(tensors=dict(zip(self.keys, inputs[lead:])))
        return self.engine(context, *inputs[:lead])


def _record_mask_keys(engine: _Engine) -> tuple[str, torch.Tensor, set[str]]:
    """The final image tokens' tag and gain, and the context keys the upscaling alone reads."""
    high_res = tuple(torch.zeros(*s) for s in SAM2_HIGH_RES_SHAPES) if engine.high_res else ()
    inputs = (torch.zeros(1, engine.tokens, engine.dim), *high_res)
    with torch.no_grad():
        iou, hyper, X = engine.transformer_pass(_Context(inputs=inputs), torch.zeros(1, 2, 2),
                                                torch.tensor([[1.0, -1.0]]))
        masks_ctx = _Context(inputs=inputs)
        engine._masks(masks_ctx, X, hyper)
    return X.tag, X.g, set(masks_ctx.recorded)


class _StagedGraph(nn.Module):
    def __init__(self, sam: Sam, keys: set[str]) -> None:
        super().__init__()
        self.engine = _Engine(sam, with_mask=False)
        all_keys = [key for key, _ in _context_keys(sam)]
        self.keys = [k for k in all_keys if k in keys]
        names = dict(zip(all_keys, context_names(len(all_keys))))
        self.context_names = tuple(names[k] for k in self.keys)


class ScoresGraph(_StagedGraph):
    """The prompt graph's first stage: point rows (B, N, 2), (B, N) + context tensors -> iou_predictions (B, 4)
    and the mask state (contract.MASK_STATE): hyper_in (B, 4, 32), scale (B, 1, n), coef (B, R, n), rows
    (B, R, 256). Everything but the output upscaling, which is about half of a prompt's work: segment
    everything runs MasksGraph only for prompts with a candidate that passes pred_iou_thresh."""

    def __init__(self, sam: Sam) -> None:
        engine = _Engine(sam, with_mask=False)
        _, _, mask_keys = _record_mask_keys(engine)
        super().__init__(sam, {key for key, _ in _record_context(engine)} - mask_keys)

    def forward(self, point_coords: torch.Tensor, point_labels: torch.Tensor,
                *context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx = _Context(tensors=dict(zip(self.keys, context)))
        iou, hyper, X = self.engine.transformer_pass(ctx, point_coords, point_labels)
        return (iou, hyper, *X.split_form())


class MasksGraph(_StagedGraph):
    """The second stage: the mask state of B prompts (ScoresGraph's outputs) + context tensors ->
    low_res_masks (B, 4, 256, 256), equal to PromptGraph's."""

    def __init__(self, sam: Sam) -> None:
        tag, g, keys = _record_mask_keys(_Engine(sam, with_mask=False))
        super().__init__(sam, keys)
        self.tag = tag
        self.register_buffer("gain", g.detach().clone())

    def forward(self, hyper: torch.Tensor, scale: torch.Tensor, coef: torch.Tensor, rows: torch.Tensor,
                *context: torch.Tensor) -> torch.Tensor:
        ctx = _Context(tensors=dict(zip(self.keys, context)))
        return self.engine.upscaled_masks(ctx, self.tag, self.gain, scale, coef, rows, hyper)
