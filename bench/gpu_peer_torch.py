"""gpu_peer_torch.py -- the peer of bench/gpu_check.c's GPU benchmarks: the
same cases through PyTorch on the same GPU, timed the same way (CUDA events,
best of 20 after one warm-up), printed in the same table layout. tools/
gpu-check.sh runs it right after gpu_check when python3 has torch with CUDA.

f32 products run without TF32 (torch.backends.cuda.matmul.allow_tf32 = False,
cudnn.allow_tf32 = False), as pathseg's f32 table does; attention goes through
torch's scaled_dot_product_attention (whichever backend torch picks); conv2d
through cuDNN."""
import sys

import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    print("gpu_peer_torch: no CUDA device")
    sys.exit(2)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
dev = "cuda"


def best_ms(fn, reps=20):
    fn()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = 1e30
    for _ in range(reps):
        a.record()
        fn()
        b.record()
        b.synchronize()
        best = min(best, a.elapsed_time(b))
    return best


def row(name, ms, rate):
    print(f"  {name:<34} {ms:10.3f} {rate}")


def fwd_bwd(f, inputs, out_shape, dtype):
    dout = torch.randn(out_shape, device=dev, dtype=dtype)

    def run():
        for t in inputs:
            t.grad = None
        f().backward(dout)
    return run


print(f"\nPyTorch {torch.__version__} on {torch.cuda.get_device_name()} (best of 20, CUDA events)")
print(f"  {'case':<34} {'ms':>10} {'rate':>12}")
for dtype, tag in ((torch.float32, ""), (torch.bfloat16, "bf16 ")):
    for N, C, OC in ((4096, 768, 3072), (4096, 3072, 768), (2048, 896, 4864)):
        x = torch.randn(N, C, device=dev, dtype=dtype, requires_grad=True)
        w = torch.randn(OC, C, device=dev, dtype=dtype, requires_grad=True)
        b = torch.randn(OC, device=dev, dtype=dtype, requires_grad=True)
        ms = best_ms(fwd_bwd(lambda: F.linear(x, w, b), (x, w, b), (N, OC), dtype))
        row(f"linear {tag}fwd+bwd {N}x{C}x{OC}", ms, f"{6.0 * N * C * OC / ms * 1e-9:9.1f} TFLOP/s")
for dtype, tag in ((torch.float32, ""), (torch.bfloat16, "bf16 ")):
    cases = [(8, 4, 256, 32, "mha 8x4x256x32"), (25, 12, 196, 64, "sam window 25x12x196x64")]
    if dtype == torch.float32:
        cases.append((1, 12, 4096, 64, "sam global 1x12x4096x64"))
    for B, H, T, D, name in cases:
        q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
        ms = best_ms(fwd_bwd(lambda: F.scaled_dot_product_attention(q, k, v), (q, k, v), (B, H, T, D),
                             dtype), 3 if T == 4096 else 20)
        flops = 6.0 * 2.0 * B * H * T * T * D
        row(f"attention {tag}{name}", ms, f"{flops / ms * 1e-9:9.2f} TFLOP/s")
for (B, C, H, OC, K, S, P), name in (((1, 3, 1024, 768, 16, 16, 0), "conv2d patch16 3->768 1024px"),
                                     ((1, 256, 64, 256, 3, 1, 1), "conv2d 3x3 256->256 64x64")):
    x = torch.randn(B, C, H, H, device=dev, requires_grad=True)
    w = torch.randn(OC, C, K, K, device=dev, requires_grad=True)
    b = torch.randn(OC, device=dev, requires_grad=True)
    OH = (H + 2 * P - K) // S + 1
    ms = best_ms(fwd_bwd(lambda: F.conv2d(x, w, b, stride=S, padding=P), (x, w, b), (B, OC, OH, OH),
                         torch.float32))
    row(name, ms, f"{6.0 * B * OC * OH * OH * C * K * K / ms * 1e-9:9.2f} TFLOP/s")
ref = None
for op, name, N, C in ((3, "memcpy d2d (reference)", 16384, 768), (0, "layernorm fwd 16384x768", 16384, 768),
                       (1, "softmax fwd 8192x256", 8192, 256), (1, "softmax fwd 4096x4096", 4096, 4096),
                       (2, "gelu fwd 4096x3072", 4096, 3072)):
    x = torch.randn(N, C, device=dev)
    y = torch.empty_like(x)
    w, b = torch.randn(C, device=dev), torch.randn(C, device=dev)
    with torch.no_grad():
        f = {3: lambda: y.copy_(x), 0: lambda: F.layer_norm(x, (C,), w, b, 1e-5),
             1: lambda: torch.softmax(x, -1), 2: lambda: F.gelu(x)}[op]
        ms = best_ms(f)
    gbps = 2.0 * N * C * 4 / ms * 1e-6
    ref = ref or gbps
    row(name, ms, f"{gbps:8.0f} GB/s ({gbps / ref:.2f} of memcpy)")
