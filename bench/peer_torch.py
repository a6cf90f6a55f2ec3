#!/usr/bin/python3
"""peer_torch.py — the PyTorch (CPU) peer for bench_attention: the same two
attention shapes, forward + backward through autograd, with the same thread
count. Benchmark-only (never part of the pathseg build or tests).

  mha:        softmax(q k^T / sqrt(D)) v, q/k/v sliced from one packed
              (B, T, 3, H, D) projection as in the model;
  sam_window: SAM's windowed Attention with add_decomposed_rel_pos
              (segment_anything/modeling/image_encoder.py), 25 windows of 14x14.

Usage: peer_torch.py THREADS [MIN_SECONDS]  ->  RESULT lines like bench_attention.
"""
import statistics
import sys
import time

import torch


def timeit(fn, min_seconds, min_reps=5):
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return statistics.median(times), min(times)


def get_rel_pos(q_size, k_size, rel_pos):
    # SAM: no interpolation needed when rel_pos has 2*max(q,k)-1 rows.
    q_coords = torch.arange(q_size)[:, None]
    k_coords = torch.arange(k_size)[None, :]
    rel = (q_coords - k_coords) + (k_size - 1)
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
    attn = (attn.view(B, q_h, q_w, k_h, k_w) + rel_h[:, :, :, :, None]
            + rel_w[:, :, :, None, :]).view(B, q_h * q_w, k_h * k_w)
    return attn


def bench(name, B, H, T, D, rel, g, min_seconds):
    torch.manual_seed(0)
    qkv = (torch.rand(B, T, 3, H, D) * 2 - 1).requires_grad_(True)
    dout = torch.rand(B, H, T, D) * 2 - 1
    scale = D ** -0.5
    if rel:
        rph = (torch.rand(2 * g - 1, D) * 2 - 1).requires_grad_(True)
        rpw = (torch.rand(2 * g - 1, D) * 2 - 1).requires_grad_(True)

    def forward():
        # (3, B, H, T, D) as SAM's Attention does with its qkv linear output
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if rel:
            qf, kf, vf = (t.reshape(B * H, T, D) for t in (q, k, v))
            attn = (qf * scale) @ kf.transpose(-2, -1)
            attn = add_decomposed_rel_pos(attn, qf, rph, rpw, (g, g), (g, g))
            attn = attn.softmax(dim=-1)
            return (attn @ vf).view(B, H, T, D)
        attn = (q @ k.transpose(-2, -1)) * scale
        return attn.softmax(dim=-1) @ v

    def fwd():
        with torch.no_grad():
            forward()

    def fwd_bwd():
        qkv.grad = None
        out = forward()
        out.backward(dout)

    tf, tf_min = timeit(fwd, min_seconds)
    tfb, tfb_min = timeit(fwd_bwd, min_seconds)
    flops = 2.0 * B * H * T * T * D
    print(f"RESULT torch_attention {name} B={B} H={H} T={T} D={D} rel={rel} "
          f"fwd_ms={tf * 1e3:.3f} fwd_bwd_ms={tfb * 1e3:.3f} "
          f"fwd_min_ms={tf_min * 1e3:.3f} fwd_bwd_min_ms={tfb_min * 1e3:.3f} "
          f"fwd_bwd_gflops={6 * flops / tfb * 1e-9:.1f}", flush=True)


def main():
    threads = int(sys.argv[1])
    min_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    torch.set_num_threads(threads)
    print(f"# peer_torch: torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    bench("mha", 8, 4, 256, 32, 0, 0, min_seconds)
    bench("sam_window", 25, 12, 196, 64, 1, 14, min_seconds)


if __name__ == "__main__":
    main()
