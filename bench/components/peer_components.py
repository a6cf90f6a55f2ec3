#!/usr/bin/python3
"""peer_components.py — the PyTorch (CPU) peers of bench_components: the
same weights (read from the safetensors file the C side wrote), the same
inputs and thread count, written by hand because transformers and
segment_anything are not installed. Benchmark-only: never part of the
pathseg build or tests.

  qwen2 | qwen2-mv  WEIGHTS THREADS PROMPT NEW REPS TOKENS_FILE
      Qwen2 decoder (transformers modeling_qwen2 in eager mode: RMSNorm in
      f32, rotate-half RoPE, GQA by repeat_kv, SwiGLU, q/k/v bias, tied
      head), greedy generation with a preallocated KV cache: prefill the
      PROMPT ids stored in the file (input.ids), then NEW tokens. Checks the
      tokens against the ones pathseg generated (TOKENS_FILE, int32 raw).
      `qwen2` projects with F.linear on (T, D) rows as transformers does
      (one decode row is an M = 1 sgemm in OpenBLAS, which packs the whole
      weight first); `qwen2-mv` runs a decode step's projections and head
      as torch.mv (sgemv), the fastest plain-PyTorch way (side torch_mv).
  medsam WEIGHTS THREADS REPS OUT_FILE
      segment_anything ImageEncoderViT (ViT-B/1024: windows of 14 with zero
      padding, decomposed rel-pos, global blocks 2/5/8/11, neck) on
      input.image from the file; compares with pathseg's output (OUT_FILE,
      float32 raw).

Prints RESULT lines like the C side.
"""
import json
import math
import mmap
import statistics
import sys
import time

import torch
import torch.nn.functional as F

DT = {"F32": torch.float32, "I32": torch.int32, "I64": torch.int64, "BF16": torch.bfloat16,
      "F16": torch.float16}


def load_safetensors(path):
    """name -> tensor (copies out of the mapping, like torch.load would)."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = int.from_bytes(mm[:8], "little")
    header = json.loads(mm[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(mm[base + b:base + e])
        t = torch.frombuffer(buf, dtype=DT[info["dtype"]]) if e > b else torch.empty(0, dtype=DT[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    mm.close()
    return out


# ---------------------------------------------------------------------- qwen2

class Qwen2:
    def __init__(self, w, cfg, mv=False):
        self.w = w
        self.c = cfg
        self.mv = mv
        D, H, Hkv = cfg["hidden"], cfg["heads"], cfg["kv_heads"]
        self.hd = D // H
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float() / self.hd))
        self.inv_freq = inv

    def rope(self, pos):
        freqs = torch.outer(pos.float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def lin(self, h, W, b=None):
        if self.mv and h.shape[0] == 1:
            y = torch.mv(W, h[0])
            return (y if b is None else y + b)[None]
        return F.linear(h, W, b)

    def rms(self, x, w):
        var = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + self.c["rms_eps"]))

    def forward(self, ids, start, kc, vc):
        """ids: (T,) new tokens at positions start..start+T-1; kc/vc: per-layer
        (Hkv, cap, hd) caches. Returns the last row's logits."""
        c, w = self.c, self.w
        T = ids.shape[0]
        H, Hkv, hd = c["heads"], c["kv_heads"], self.hd
        x = F.embedding(ids, w["model.embed_tokens.weight"])
        cos, sin = self.rope(torch.arange(start, start + T))
        cos, sin = cos[None], sin[None]
        L = start + T
        mask = None
        if T > 1:
            mask = torch.full((T, L), float("-inf")).triu(start + 1)
        for l in range(c["layers"]):
            p = f"model.layers.{l}."
            h = self.rms(x, w[p + "input_layernorm.weight"])
            q = self.lin(h, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"])
            k = self.lin(h, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"])
            v = self.lin(h, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"])
            q = q.view(T, H, hd).transpose(0, 1)
            k = k.view(T, Hkv, hd).transpose(0, 1)
            v = v.view(T, Hkv, hd).transpose(0, 1)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            kc[l][:, start:L] = k
            vc[l][:, start:L] = v
            K = kc[l][:, :L].repeat_interleave(H // Hkv, dim=0)
            V = vc[l][:, :L].repeat_interleave(H // Hkv, dim=0)
            s = torch.matmul(q, K.transpose(1, 2)) / math.sqrt(hd)
            if mask is not None:
                s = s + mask
            a = torch.matmul(torch.softmax(s, dim=-1), V)
            a = a.transpose(0, 1).reshape(T, H * hd)
            x = x + self.lin(a, w[p + "self_attn.o_proj.weight"])
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            g = self.lin(h, w[p + "mlp.gate_proj.weight"])
            u = self.lin(h, w[p + "mlp.up_proj.weight"])
            x = x + self.lin(F.silu(g) * u, w[p + "mlp.down_proj.weight"])
        h = self.rms(x[-1:], w["model.norm.weight"])
        return self.lin(h, w["model.embed_tokens.weight"])[0]

    def generate(self, prompt, new):
        c = self.c
        cap = prompt.shape[0] + new
        kc = [torch.zeros(c["kv_heads"], cap, self.hd) for _ in range(c["layers"])]
        vc = [torch.zeros(c["kv_heads"], cap, self.hd) for _ in range(c["layers"])]
        out = []
        logits = self.forward(prompt, 0, kc, vc)
        pos = prompt.shape[0]
        for i in range(new):
            tok = int(torch.argmax(logits))
            out.append(tok)
            if i + 1 == new:
                break
            logits = self.forward(torch.tensor([tok]), pos, kc, vc)
            pos += 1
        return out


def run_qwen2(path, threads, prompt_len, new, reps, tokens_file, mv=False):
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    w = load_safetensors(path)
    load_s = time.perf_counter() - t0
    meta = json.loads(open(path + ".json").read())
    m = Qwen2(w, meta, mv)
    prompt = w["input.ids"].long().reshape(-1)[:prompt_len]
    times, cpu, toks = [], [], None
    with torch.inference_mode():
        m.generate(prompt, 4)  # warm-up
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            toks = m.generate(prompt, new)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    med, med_cpu = statistics.median(times), statistics.median(cpu)
    theirs = list(memoryview(open(tokens_file, "rb").read()).cast("i"))
    same = sum(1 for a, b in zip(toks, theirs) if a == b)
    first_diff = next((i for i, (a, b) in enumerate(zip(toks, theirs)) if a != b), -1)
    side = "torch_mv" if mv else "torch"
    print(f"RESULT components qwen2_generate side={side} threads={threads} prompt={prompt_len} "
          f"new={new} median_s={med:.3f} tokens_per_s={new / med:.2f} cpu_s={med_cpu:.3f} load_s={load_s:.2f} "
          f"tokens_equal={same}/{new} first_diff={first_diff}", flush=True)


# ---------------------------------------------------------------------- medsam

def get_rel_pos(q_size, k_size, rel_pos):
    q_coords = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    rel = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[rel.long()]


def add_decomposed_rel_pos(attn, q, rel_pos_h, rel_pos_w, q_size, k_size):
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)
    B, _, dim = q.shape
    r_q = q.reshape(B, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    attn = (attn.view(B, q_h, q_w, k_h, k_w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
            ).view(B, q_h * q_w, k_h * k_w)
    return attn


def window_partition(x, ws):
    B, H, W, C = x.shape
    pad_h = (ws - H % ws) % ws
    pad_w = (ws - W % ws) % ws
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, C), (Hp, Wp)


def window_unpartition(windows, ws, pad_hw, hw):
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // (Hp * Wp // ws // ws)
    x = windows.view(B, Hp // ws, Wp // ws, ws, ws, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, Hp, Wp, -1)
    return x[:, :H, :W, :].contiguous()


def layernorm2d(x, w, b, eps=1e-6):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return w[:, None, None] * x + b[:, None, None]


def sam_encoder(w, x, cfg):
    E, nH, ws, depth = cfg["embed_dim"], cfg["num_heads"], cfg["window_size"], cfg["depth"]
    glob = set(cfg["global_attn_indexes"])
    p = "image_encoder."
    x = F.conv2d(x, w[p + "patch_embed.proj.weight"], w[p + "patch_embed.proj.bias"], stride=16)
    x = x.permute(0, 2, 3, 1) + w[p + "pos_embed"]
    for i in range(depth):
        q = f"{p}blocks.{i}."
        shortcut = x
        x = F.layer_norm(x, (E,), w[q + "norm1.weight"], w[q + "norm1.bias"], eps=1e-6)
        H, W = x.shape[1], x.shape[2]
        if i not in glob:
            x, pad_hw = window_partition(x, ws)
        B, h, wd, _ = x.shape
        qkv = F.linear(x, w[q + "attn.qkv.weight"], w[q + "attn.qkv.bias"])
        qkv = qkv.reshape(B, h * wd, 3, nH, -1).permute(2, 0, 3, 1, 4)
        qq, kk, vv = qkv.reshape(3, B * nH, h * wd, -1).unbind(0)
        hd = E // nH
        attn = (qq * hd ** -0.5) @ kk.transpose(-2, -1)
        attn = add_decomposed_rel_pos(attn, qq, w[q + "attn.rel_pos_h"], w[q + "attn.rel_pos_w"],
                                      (h, wd), (h, wd))
        attn = attn.softmax(dim=-1)
        x = (attn @ vv).view(B, nH, h, wd, -1).permute(0, 2, 3, 1, 4).reshape(B, h, wd, -1)
        x = F.linear(x, w[q + "attn.proj.weight"], w[q + "attn.proj.bias"])
        if i not in glob:
            x = window_unpartition(x, ws, pad_hw, (H, W))
        x = shortcut + x
        y = F.layer_norm(x, (E,), w[q + "norm2.weight"], w[q + "norm2.bias"], eps=1e-6)
        y = F.linear(F.gelu(F.linear(y, w[q + "mlp.lin1.weight"], w[q + "mlp.lin1.bias"])),
                     w[q + "mlp.lin2.weight"], w[q + "mlp.lin2.bias"])
        x = x + y
    x = x.permute(0, 3, 1, 2)
    x = F.conv2d(x, w[p + "neck.0.weight"])
    x = layernorm2d(x, w[p + "neck.1.weight"], w[p + "neck.1.bias"])
    x = F.conv2d(x, w[p + "neck.2.weight"], padding=1)
    x = layernorm2d(x, w[p + "neck.3.weight"], w[p + "neck.3.bias"])
    return x


def run_medsam(path, threads, reps, out_file):
    torch.set_num_threads(threads)
    w = load_safetensors(path)
    cfg = json.loads(open(path + ".json").read())
    img = w["input.image"]
    times, cpu = [], []
    with torch.inference_mode():
        out = sam_encoder(w, img, cfg)  # warm-up
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            out = sam_encoder(w, img, cfg)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    med, med_cpu = statistics.median(times), statistics.median(cpu)
    theirs = torch.frombuffer(bytearray(open(out_file, "rb").read()), dtype=torch.float32)
    diff = (out.reshape(-1) - theirs).abs().max().item() if theirs.numel() == out.numel() else float("nan")
    print(f"RESULT components medsam_encoder side=torch threads={threads} batch={img.shape[0]} "
          f"img={img.shape[-1]} median_s={med:.3f} images_per_s={img.shape[0] / med:.3f} cpu_s={med_cpu:.3f} "
          f"max_abs_diff_vs_pathseg={diff:.3g} out_absmax={out.abs().max().item():.3g}", flush=True)


if __name__ == "__main__":
    a = sys.argv
    if a[1] in ("qwen2", "qwen2-mv"):
        run_qwen2(a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]), a[7], a[1] == "qwen2-mv")
    elif a[1] == "medsam":
        run_medsam(a[2], int(a[3]), int(a[4]), a[5])
    else:
        sys.exit("usage: peer_components.py qwen2|qwen2-mv|medsam ...")
