#!/usr/bin/env python3
"""peer_train_step.py — the PyTorch peer of bench_train_step: the quickstart's
sft model at the tiny preset written by hand in PyTorch (Debian python3-torch
1.13, CPU), one training step = forward + backward + AdamW, timed.

Same model as pipelines/quickstart.yaml's sft graph (sizes from the plugins'
tiny presets and the YAML's `with:` keys, parameter names as pathseg's):
  ruipath   DINOv2 ViT: width 64, 2 blocks, 4 heads, patch 16, 128 px, no
            registers, LayerScale, LoRA r 4 (alpha 16, dropout 0.1) on qkv.
            Backbone frozen, LoRA trains.
  projector Qwen2.5-VL patch merger: RMSNorm(64), 2x2 merge, 256 -> 256 GELU
            -> 128. Trains.
  medsam    SAM ViT: width 64, 4 blocks, 2 heads, patch 16, 128 px, windows
            of 4 (blocks 0, 2), global blocks 1, 3, decomposed rel-pos, neck to
            32 channels, AdaptFormer adapters (dim 16, scale 0.1, dropout 0.1),
            MedSAM min-max input. Everything trains ("image_encoder.*": full).
  llm       Qwen2: hidden 128, 2 layers, 4 heads, 2 kv heads, MLP 344, vocab
            512, tied lm_head, RoPE theta 1e6, LoRA r 8 (alpha 16, dropout
            0.1) on q/k/v/o. Everything trains ("model.*": full).
  seg_adapter  LISA text_hidden_fcs 128 -> 128 ReLU -> 32 on hidden[pos - 1].
  decoder   SAM prompt encoder (frozen) + mask decoder (width 32, 2 heads,
            MLP 64, 4 mask tokens, IoU head 32), trains.
  loss      CE(llm) + BCE (pos_weight 2) + LISA Dice of the 32x32 mask
            logits upsampled (bilinear) to 128x128.
The YAML's keys are copied here by hand (as of 2026-11-27 11:30): run.sh's
same-function check (bench_train_step --dump, then --load here) shows when
they drift apart.
AdamW as stage.fit: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01
on tensors of 2+ dims only, global grad-norm clip 1.0 (multi-tensor `foreach`
AdamW, gradients set to None between steps). Frozen parameters have
requires_grad False. Dropout as pathseg: 0.1 on the LoRA inputs and inside
the MedSAM adapters. The batch has the C side's shapes and layout (image
pixels come from torch's generator instead of the C xorshift).

  peer_train_step.py [--threads N] [--steps N] [--warmup N] [--batch B] [--params] [--lockstep]
prints a RESULT line in bench/run.sh's format (medians over the timed steps;
peak RSS is ru_maxrss; base = after `import torch`, built = model and batch
built, before the first step: AdamW's state appears at the first step);
--params prints one PARAM line per parameter (compare with bench_train_step
--params); --lockstep takes one timed step per input line (run.sh pairs it
with bench_train_step).
"""
import argparse
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SEQ, IMG, IMAGE_TOKENS, IMAGE_TOKEN_ID = 256, 128, 16, 510


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


BASE_RSS = rss_mb()  # after importing torch


class LoRALinear(nn.Module):
    """peft's Linear with LoRA: x W^T + b + (alpha / r) B(A(dropout(x)))."""

    def __init__(self, inp, out, bias=True, r=0, alpha=16.0, dropout=0.1, std=0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out, inp) * std)
        self.bias = nn.Parameter(torch.zeros(out)) if bias else None
        self.r = r
        if r > 0:
            bound = 1.0 / math.sqrt(inp)
            self.lora_A = nn.Parameter(torch.empty(r, inp).uniform_(-bound, bound))
            self.lora_B = nn.Parameter(torch.zeros(out, r))
            self.scaling = alpha / r
            self.drop = nn.Dropout(dropout)

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if self.r > 0:
            y = y + F.linear(F.linear(self.drop(x), self.lora_A), self.lora_B) * self.scaling
        return y


def linear(inp, out, bias=True, std=0.02):
    return LoRALinear(inp, out, bias, std=std)


def attention(q, k, v, scale):
    """q: (B, H, Tq, D), k, v: (B, H, Tk, D) -> (B, H, Tq, D)."""
    a = torch.matmul(q * scale, k.transpose(-1, -2)).softmax(-1)
    return torch.matmul(a, v)


# ---------------------------------------------------------------------------
# RuiPath (DINOv2 DinoVisionTransformer)

class RpBlock(nn.Module):
    def __init__(self, D, H, F_, lora_r):
        super().__init__()
        self.H = H
        self.norm1 = nn.LayerNorm(D, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = LoRALinear(D, 3 * D, True, lora_r, 16.0, 0.1)
        self.attn.proj = linear(D, D)
        self.ls1 = nn.Module()
        self.ls1.gamma = nn.Parameter(torch.ones(D))
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = linear(D, F_)
        self.mlp.fc2 = linear(F_, D)
        self.ls2 = nn.Module()
        self.ls2.gamma = nn.Parameter(torch.ones(D))

    def forward(self, x):
        B, T, D = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(B, T, 3, self.H, D // self.H).permute(2, 0, 3, 1, 4)
        o = attention(qkv[0], qkv[1], qkv[2], (D // self.H) ** -0.5)
        o = self.attn.proj(o.transpose(1, 2).reshape(B, T, D))
        x = x + self.ls1.gamma * o
        return x + self.ls2.gamma * self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class RuiPath(nn.Module):
    def __init__(self, D=64, depth=2, H=4, patch=16, img=128, lora_r=4):
        super().__init__()
        M = img // patch
        self.cls_token = nn.Parameter(torch.randn(1, 1, D) * 1e-6)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + M * M, D) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, D))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, D, patch, patch)
        self.blocks = nn.ModuleList([RpBlock(D, H, 4 * D, lora_r) for _ in range(depth)])
        self.norm = nn.LayerNorm(D, eps=1e-6)

    def forward(self, img):
        x = self.patch_embed.proj(img).flatten(2).transpose(1, 2)  # (B, N, D)
        # 128 px / 16 = the pos_embed grid: DINOv2's interpolation is the identity
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.norm(x)[:, 1:]  # patch tokens (B, N, D)


# ---------------------------------------------------------------------------
# Projector (Qwen2.5-VL patch merger)

class Projector(nn.Module):
    def __init__(self, C=64, out=128, m=2):
        super().__init__()
        self.m, K = m, m * m * C
        self.ln_q = nn.Module()
        self.ln_q.weight = nn.Parameter(torch.ones(C))
        self.mlp = nn.ModuleDict({"0": linear(K, K), "2": linear(K, out)})

    def forward(self, x, gh, gw):
        B, N, C = x.shape
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.ln_q.weight
        m = self.m
        x = x.reshape(B, gh // m, m, gw // m, m, C).permute(0, 1, 3, 2, 4, 5).reshape(B, -1, m * m * C)
        return self.mlp["2"](F.gelu(self.mlp["0"](x)))


# ---------------------------------------------------------------------------
# MedSAM image encoder (SAM ImageEncoderViT + AdaptFormer)

def rel_index(S):
    i = torch.arange(S)
    return (i[:, None] - i[None, :] + S - 1)


class SamAttn(nn.Module):
    def __init__(self, E, H, S):
        super().__init__()
        self.H, self.S = H, S
        self.qkv = linear(E, 3 * E)
        self.proj = linear(E, E)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * S - 1, E // H))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * S - 1, E // H))
        self.register_buffer("idx", rel_index(S), persistent=False)

    def forward(self, x):  # x: (B, S, S, E)
        B, h, w, E = x.shape
        hd = E // self.H
        qkv = self.qkv(x).reshape(B, h * w, 3, self.H, hd).permute(2, 0, 3, 1, 4).reshape(3, B * self.H, h * w, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.matmul(q * hd ** -0.5, k.transpose(-1, -2))
        Rh, Rw = self.rel_pos_h[self.idx], self.rel_pos_w[self.idx]  # (S, S, hd)
        rq = q.reshape(B * self.H, h, w, hd)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, Rh)
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, Rw)
        a = (a.view(-1, h, w, h, w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).view(-1, h * w, h * w)
        o = torch.matmul(a.softmax(-1), v).view(B, self.H, h, w, hd).permute(0, 2, 3, 1, 4).reshape(B, h, w, E)
        return self.proj(o)


class SamBlock(nn.Module):
    def __init__(self, E, H, G, window, adapter_dim):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(E, eps=1e-6)
        self.attn = SamAttn(E, H, window if window else G)
        self.norm2 = nn.LayerNorm(E, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.lin1 = linear(E, 4 * E)
        self.mlp.lin2 = linear(4 * E, E)
        self.adaptmlp = nn.Module()
        self.adaptmlp.down_proj = linear(E, adapter_dim)
        self.adaptmlp.up_proj = linear(adapter_dim, E)
        nn.init.zeros_(self.adaptmlp.down_proj.bias)
        nn.init.zeros_(self.adaptmlp.up_proj.weight)
        self.adrop = nn.Dropout(0.1)

    def forward(self, x):  # (B, G, G, E)
        B, G, _, E = x.shape
        y = self.norm1(x)
        if self.window:
            s = self.window  # 8 / 4: no padding
            n = G // s
            y = y.view(B, n, s, n, s, E).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, E)
            y = self.attn(y)
            y = y.view(B, n, n, s, s, E).permute(0, 1, 3, 2, 4, 5).reshape(B, G, G, E)
        else:
            y = self.attn(y)
        x1 = x + y
        out = x1 + self.mlp.lin2(F.gelu(self.mlp.lin1(self.norm2(x1))))
        ad = self.adaptmlp.up_proj(self.adrop(F.relu(self.adaptmlp.down_proj(x1))))
        return out + 0.1 * ad


class LayerNorm2d(nn.Module):
    def __init__(self, C, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.bias = nn.Parameter(torch.zeros(C))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MedSAM(nn.Module):
    def __init__(self, E=64, depth=4, H=2, patch=16, img=128, window=4, glob=(1, 3), out=32, adapter_dim=16):
        super().__init__()
        G = img // patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, E, patch, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, G, G, E))
        self.blocks = nn.ModuleList(
            [SamBlock(E, H, G, 0 if i in glob else window, adapter_dim) for i in range(depth)])
        self.neck = nn.Sequential(nn.Conv2d(E, out, 1, bias=False), LayerNorm2d(out),
                                  nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))

    def forward(self, img):
        B = img.shape[0]
        flat = img.reshape(B, -1)  # MedSAM: per-image min-max to [0, 1]
        lo, hi = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
        img = ((flat - lo) / (hi - lo).clamp_min(1e-8)).view_as(img)
        x = self.patch_embed.proj(img).permute(0, 2, 3, 1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.neck(x.permute(0, 3, 1, 2))  # (B, out, G, G)


# ---------------------------------------------------------------------------
# Qwen2 decoder

class RMSNorm(nn.Module):
    def __init__(self, D, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(D))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class QwenLayer(nn.Module):
    def __init__(self, D, H, KV, hd, I, r):
        super().__init__()
        self.H, self.KV, self.hd = H, KV, hd
        self.input_layernorm = RMSNorm(D)
        self.self_attn = nn.Module()
        self.self_attn.q_proj = LoRALinear(D, H * hd, True, r, 16.0, 0.1)
        self.self_attn.k_proj = LoRALinear(D, KV * hd, True, r, 16.0, 0.1)
        self.self_attn.v_proj = LoRALinear(D, KV * hd, True, r, 16.0, 0.1)
        self.self_attn.o_proj = LoRALinear(H * hd, D, False, r, 16.0, 0.1)
        self.post_attention_layernorm = RMSNorm(D)
        self.mlp = nn.Module()
        self.mlp.gate_proj = linear(D, I, False)
        self.mlp.up_proj = linear(D, I, False)
        self.mlp.down_proj = linear(I, D, False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        a = self.self_attn
        h = self.input_layernorm(x)
        q = a.q_proj(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = a.k_proj(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = a.v_proj(h).view(B, T, self.KV, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.H // self.KV
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        s = torch.matmul(q, k.transpose(-1, -2)) * self.hd ** -0.5 + mask
        o = torch.matmul(s.softmax(-1), v).transpose(1, 2).reshape(B, T, -1)
        x = x + a.o_proj(o)
        h = self.post_attention_layernorm(x)
        m = self.mlp
        return x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h))


class Qwen2(nn.Module):
    def __init__(self, D=128, L=2, H=4, KV=2, I=344, V=512, r=8, theta=1e6):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(V, D)
        nn.init.normal_(self.model.embed_tokens.weight, std=0.02)
        self.model.layers = nn.ModuleList([QwenLayer(D, H, KV, D // H, I, r) for _ in range(L)])
        self.model.norm = RMSNorm(D)
        hd = D // H
        inv = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
        f = torch.arange(SEQ).float()[:, None] * inv[None]
        emb = torch.cat([f, f], -1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.register_buffer("mask", torch.full((SEQ, SEQ), float("-inf")).triu(1), persistent=False)

    def forward(self, ids, image_embeds, labels):
        x = self.model.embed_tokens(ids)
        is_img = (ids == IMAGE_TOKEN_ID).unsqueeze(-1)
        x = x.masked_scatter(is_img, image_embeds.to(x.dtype))  # Qwen2.5-VL's placement
        T = ids.shape[1]
        cos, sin, mask = self.cos[:T], self.sin[:T], self.mask[:T, :T]
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        hidden = self.model.norm(x)
        logits = F.linear(hidden, self.model.embed_tokens.weight)  # tied lm_head
        V = logits.shape[-1]
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
        return hidden, loss


# ---------------------------------------------------------------------------
# SEG adapter, SAM prompt encoder + mask decoder

class SegAdapter(nn.Module):
    def __init__(self, H=128, out=32):
        super().__init__()
        # init_std 0.15 as quickstart.yaml sets it
        self.text_hidden_fcs = nn.ModuleList([nn.ModuleDict({"0": linear(H, H, std=0.15),
                                                             "2": linear(H, out, std=0.15)})])

    def forward(self, hidden, seg_pos):
        h = hidden[torch.arange(hidden.shape[0]), seg_pos.long() - 1]  # the state before <SEG>
        f = self.text_hidden_fcs[0]
        return f["2"](F.relu(f["0"](h))).unsqueeze(1)  # (B, 1, out)


class TwAttn(nn.Module):
    def __init__(self, C, H, rate=1):
        super().__init__()
        ci = C // rate
        self.H = H
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = linear(C, ci), linear(C, ci), linear(C, ci), linear(ci, C)

    def forward(self, q, k, v):
        B = q.shape[0]
        q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
        c = q.shape[-1] // self.H
        sp = lambda t: t.view(B, -1, self.H, c).transpose(1, 2)
        o = attention(sp(q), sp(k), sp(v), c ** -0.5)
        return self.out_proj(o.transpose(1, 2).reshape(B, -1, self.H * c))


class TwBlock(nn.Module):
    def __init__(self, C, H, mlp, skip_pe):
        super().__init__()
        self.skip_pe = skip_pe
        self.self_attn = TwAttn(C, H, 1)
        self.norm1 = nn.LayerNorm(C)
        self.cross_attn_token_to_image = TwAttn(C, H, 2)
        self.norm2 = nn.LayerNorm(C)
        self.mlp = nn.Module()
        self.mlp.lin1 = linear(C, mlp)
        self.mlp.lin2 = linear(mlp, C)
        self.norm3 = nn.LayerNorm(C)
        self.norm4 = nn.LayerNorm(C)
        self.cross_attn_image_to_token = TwAttn(C, H, 2)

    def forward(self, q, k, qpe, kpe):
        if self.skip_pe:
            q = self.self_attn(q, q, q)
        else:
            t = q + qpe
            q = q + self.self_attn(t, t, q)
        q = self.norm1(q)
        q = self.norm2(q + self.cross_attn_token_to_image(q + qpe, k + kpe, k))
        q = self.norm3(q + self.mlp.lin2(F.relu(self.mlp.lin1(q))))
        k = self.norm4(k + self.cross_attn_image_to_token(k + kpe, q + qpe, q))
        return q, k


class SamMLP(nn.Module):
    def __init__(self, i, h, o, n=3):
        super().__init__()
        self.layers = nn.ModuleList([linear(i if j == 0 else h, o if j == n - 1 else h) for j in range(n)])

    def forward(self, x):
        for j, l in enumerate(self.layers):
            x = l(x)
            if j < len(self.layers) - 1:
                x = F.relu(x)
        return x


class SamDecoder(nn.Module):
    def __init__(self, C=32, S=8, H=2, mlp=64, iou_hidden=32, NM=4, mask_in=4):
        super().__init__()
        self.S, self.NM = S, NM
        pe = nn.Module()  # prompt encoder: frozen
        pe.pe_layer = nn.Module()
        pe.pe_layer.positional_encoding_gaussian_matrix = nn.Parameter(torch.randn(2, C // 2))
        pe.point_embeddings = nn.ModuleList([nn.Embedding(1, C) for _ in range(4)])
        pe.not_a_point_embed = nn.Embedding(1, C)
        pe.no_mask_embed = nn.Embedding(1, C)
        q = mask_in // 4
        pe.mask_downscaling = nn.Sequential(nn.Conv2d(1, q, 2, 2), LayerNorm2d(q), nn.GELU(),
                                            nn.Conv2d(q, mask_in, 2, 2), LayerNorm2d(mask_in), nn.GELU(),
                                            nn.Conv2d(mask_in, C, 1))
        self.prompt_encoder = pe
        md = nn.Module()
        md.iou_token = nn.Embedding(1, C)
        md.mask_tokens = nn.Embedding(NM, C)
        md.transformer = nn.Module()
        md.transformer.layers = nn.ModuleList([TwBlock(C, H, mlp, i == 0) for i in range(2)])
        md.transformer.final_attn_token_to_image = TwAttn(C, H, 2)
        md.transformer.norm_final_attn = nn.LayerNorm(C)
        md.output_upscaling = nn.Sequential(nn.ConvTranspose2d(C, C // 4, 2, 2), LayerNorm2d(C // 4), nn.GELU(),
                                            nn.ConvTranspose2d(C // 4, C // 8, 2, 2), nn.GELU())
        md.output_hypernetworks_mlps = nn.ModuleList([SamMLP(C, C, C // 8) for _ in range(NM)])
        md.iou_prediction_head = SamMLP(C, iou_hidden, NM)
        self.mask_decoder = md
        for p in self.prompt_encoder.parameters():
            p.requires_grad_(False)

    def dense_pe(self):
        S = self.S
        c = (torch.arange(S, dtype=torch.float32) + 0.5) / S
        y, x = torch.meshgrid(c, c, indexing="ij")
        coords = torch.stack([x, y], -1) * 2 - 1
        v = 2 * math.pi * (coords @ self.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix)
        return torch.cat([v.sin(), v.cos()], -1).reshape(S * S, -1)  # (HW, C)

    def forward(self, img_emb, text):
        md = self.mask_decoder
        B, C = img_emb.shape[0], img_emb.shape[1]
        kpe = self.dense_pe().unsqueeze(0)
        tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], 0).unsqueeze(0).expand(B, -1, -1)
        tokens = torch.cat([tokens, text], 1)  # (B, 1 + NM + 1, C)
        src = img_emb + self.prompt_encoder.no_mask_embed.weight.view(1, C, 1, 1)
        k = src.flatten(2).transpose(1, 2)
        q = tokens
        for layer in md.transformer.layers:
            q, k = layer(q, k, tokens, kpe)
        q = md.transformer.norm_final_attn(q + md.transformer.final_attn_token_to_image(q + tokens, k + kpe, k))
        up = md.output_upscaling(k.transpose(1, 2).reshape(B, C, self.S, self.S))  # (B, C/8, 4S, 4S)
        hyper = torch.stack([md.output_hypernetworks_mlps[i](q[:, 1 + i]) for i in range(self.NM)], 1)
        b, c, h, w = up.shape
        masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
        iou = md.iou_prediction_head(q[:, 0])
        return masks[:, 0:1], iou[:, 0:1]  # multimask_output false: mask 0


POS_WEIGHT = torch.tensor(2.0)  # quickstart.yaml's seg_loss pos_weight


def seg_loss(logits, target):
    """BCE (pos_weight 2) + LISA Dice (scale 1000, eps 1e-6) at the target's size, mean over masks."""
    up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False).flatten(1)
    t = target.flatten(1)
    bce = F.binary_cross_entropy_with_logits(up, t, pos_weight=POS_WEIGHT, reduction="none").mean(1)
    p = up.sigmoid()
    num = 2 * (p / 1000 * t).sum(1)
    den = (p / 1000).sum(1) + (t / 1000).sum(1)
    dice = 1 - (num + 1e-6) / (den + 1e-6)
    with torch.no_grad():  # the hard Dice metric pathseg's loss also computes
        _ = ((up > 0) & (t > 0.5)).sum(1)
    return (bce + dice).mean()


class SftModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.ruipath = RuiPath()
        self.projector = Projector()
        self.medsam = MedSAM()
        self.llm = Qwen2()
        self.seg_adapter = SegAdapter()
        self.decoder = SamDecoder()
        # roles: RuiPath backbone frozen (only LoRA trains); everything else
        # trains except the SAM prompt encoder (frozen in SamDecoder).
        for n, p in self.ruipath.named_parameters():
            p.requires_grad_("lora_" in n)

    def forward(self, image, mask, ids, labels, seg_pos, parts=None):
        patches = self.ruipath(image)
        tokens = self.projector(patches, 8, 8)
        hidden, ce = self.llm(ids, tokens, labels)
        prompt = self.seg_adapter(hidden, seg_pos)
        emb = self.medsam(image)
        low, _ = self.decoder(emb, prompt)
        seg = seg_loss(low, mask)
        if parts is not None:
            parts.update(llm=ce.item(), seg=seg.item())
        return 1.0 * ce + 1.0 * seg


def load_dump(model, path):
    """Copies bench_train_step --dump's parameters into `model` (pathseg names
    mapped to this file's) and returns the dumped batch image."""
    import json
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    own = dict(model.named_parameters())
    image, seen = None, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32).reshape(info["shape"])
        if name == "batch.image":
            image = t
        if name.startswith("batch.") or name.startswith("out."):
            continue
        key = name.replace("medsam.image_encoder.", "medsam.").replace(".lora_A.weight", ".lora_A")
        key = key.replace(".lora_B.weight", ".lora_B")
        with torch.no_grad():
            own[key].copy_(t)
        seen += 1
    if seen != len(own):
        sys.exit("peer_train_step: %s has %d of the %d parameters" % (path, seen, len(own)))
    return image


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def make_batch(B):
    g = torch.Generator().manual_seed(1)
    image = torch.rand(B, 3, IMG, IMG, generator=g)
    yy, xx = torch.meshgrid(torch.arange(IMG), torch.arange(IMG), indexing="ij")
    d2 = (xx - 64) ** 2 + (yy - 64) ** 2
    mask = torch.stack([(d2 < (20 + 4 * k) ** 2).float() for k in range(B)]).unsqueeze(1)
    t = torch.arange(SEQ)
    ids = torch.stack([(t * 31 + k * 17 + 3) % 500 for k in range(B)])
    ids[:, 4:4 + IMAGE_TOKENS] = IMAGE_TOKEN_ID
    labels = ids.clone()
    for k in range(B):
        n = 150 + 10 * k
        labels[k, :40] = -100
        labels[k, n:] = -100
    seg = torch.tensor([100 + k for k in range(B)])
    return image, mask, ids, labels, seg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--params", action="store_true")
    ap.add_argument("--load", metavar="FILE",
                    help="check: bench_train_step --dump FILE's parameters and image, eval-mode loss")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch 2: torch.set_default_device)")
    ap.add_argument("--lockstep", action="store_true",
                    help="one timed step per input line, answered by 'STEP wall_ms cpu_ms' (run.sh)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    if a.device != "cpu":  # every tensor the model makes, parameters included
        torch.set_default_device(a.device)
    model = SftModel()
    model.train()
    total = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    if a.params:
        for n, p in model.named_parameters():
            print("PARAM %s %s %s" % (n, list(p.shape), "train" if p.requires_grad else "frozen"))
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    # foreach=True (multi-tensor AdamW) and set_to_none=True below are the
    # fastest documented settings of torch 1.13 on the CPU: the peer gets them.
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8, foreach=True)
    if a.device == "cpu":
        batch = make_batch(a.batch)
    else:
        with torch.device("cpu"):  # its generator is a CPU one
            batch = tuple(t.to(a.device) for t in make_batch(a.batch))
    if a.load:  # the same function as pathseg's? (dropout off, same weights and batch)
        image = load_dump(model, a.load)
        batch = (image,) + batch[1:]
        model.eval()
        with torch.no_grad():
            parts = {}
            total = model(*batch, parts=parts).item()
            print("# eval-mode loss on pathseg's initial parameters: total %.6f, llm %.6f, seg_loss %.6f"
                  % (total, parts["llm"], parts["seg"]))
        model.train()
    built_rss = rss_mb()  # model and batch built, no step yet
    state = {}

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(*batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        state["loss"] = loss.item()

    for _ in range(a.warmup):
        step()
    first = state.get("loss", float("nan"))
    times, cpu = [], []
    if a.lockstep:
        print("READY", flush=True)
    for _ in range(a.steps):
        if a.lockstep and not sys.stdin.readline():
            break
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if a.lockstep:
            print("STEP %.3f %.3f" % (1e3 * times[-1], 1e3 * cpu[-1]), flush=True)
    if not times:
        sys.exit("peer_train_step: no timed step ran")
    med, cpu_med = median(times), median(cpu)
    print("# torch %s, %d threads; loss after warm-up %.4f, after %d timed steps %.4f"
          % (torch.__version__, torch.get_num_threads(), first, len(times), state["loss"]))
    print("RESULT train_step torch device=%s threads=%d batch=%d seq=%d ms_per_step=%.2f ms_min=%.2f "
          "cpu_ms_per_step=%.2f "
          "steps=%d params_total=%d params_trainable=%d peak_rss_mb=%.1f base_rss_mb=%.1f built_rss_mb=%.1f"
          % (a.device, a.threads, a.batch, SEQ, 1e3 * med, 1e3 * min(times), 1e3 * cpu_med, len(times), total, n_train,
             rss_mb(), BASE_RSS, built_rss))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
