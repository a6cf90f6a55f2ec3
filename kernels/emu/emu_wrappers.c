/* emu_wrappers.c — generated from the ps_kernels table in kernels.h (one
 * wrapper per entry): each checks that its pointer arguments are device
 * memory of the emulator, opens the device arena, runs the stand-in table's
 * entry and closes the arena again. Included by emu_table.c only. A new
 * table entry needs a wrapper here; emu_table.c refuses to start while one
 * is missing. */

static void w_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                             int64_t N, int64_t C, int64_t OC) {
  emu_dev(out, "linear_forward", "out");
  emu_dev(inp, "linear_forward", "inp");
  emu_dev(weight, "linear_forward", "weight");
  emu_dev(bias, "linear_forward", "bias");
  emu_open();
  emu_cpu.linear_forward(out, inp, weight, bias, N, C, OC);
  emu_close();
}

static void w_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, int64_t N, int64_t C,
                              int64_t OC) {
  emu_dev(dinp, "linear_backward", "dinp");
  emu_dev(dweight, "linear_backward", "dweight");
  emu_dev(dbias, "linear_backward", "dbias");
  emu_dev(dout, "linear_backward", "dout");
  emu_dev(inp, "linear_backward", "inp");
  emu_dev(weight, "linear_backward", "weight");
  emu_open();
  emu_cpu.linear_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
  emu_close();
}

static void w_bmm_forward(float *out, const float *a, const float *m, int64_t Bt, int64_t M,
                          int64_t N, int64_t K, int trans_m, int64_t sa, int64_t sm) {
  emu_dev(out, "bmm_forward", "out");
  emu_dev(a, "bmm_forward", "a");
  emu_dev(m, "bmm_forward", "m");
  emu_open();
  emu_cpu.bmm_forward(out, a, m, Bt, M, N, K, trans_m, sa, sm);
  emu_close();
}

static void w_bmm_backward(float *da, float *dm, const float *dout, const float *a, const float *m,
                           int64_t Bt, int64_t M, int64_t N, int64_t K, int trans_m, int64_t sa,
                           int64_t sm) {
  emu_dev(da, "bmm_backward", "da");
  emu_dev(dm, "bmm_backward", "dm");
  emu_dev(dout, "bmm_backward", "dout");
  emu_dev(a, "bmm_backward", "a");
  emu_dev(m, "bmm_backward", "m");
  emu_open();
  emu_cpu.bmm_backward(da, dm, dout, a, m, Bt, M, N, K, trans_m, sa, sm);
  emu_close();
}

static int64_t w_conv2d_scratch(const ps_conv2d_desc *d) {
  emu_open();
  int64_t r = emu_cpu.conv2d_scratch(d);
  emu_close();
  return r;
}

static void w_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                             const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats) {
  emu_dev(out, "conv2d_forward", "out");
  emu_dev(inp, "conv2d_forward", "inp");
  emu_dev(weight, "conv2d_forward", "weight");
  emu_dev(bias, "conv2d_forward", "bias");
  emu_dev(scratch, "conv2d_forward", "scratch");
  emu_open();
  emu_cpu.conv2d_forward(out, inp, weight, bias, d, scratch, scratch_floats);
  emu_close();
}

static void w_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const ps_conv2d_desc *d,
                              float *scratch, int64_t scratch_floats) {
  emu_dev(dinp, "conv2d_backward", "dinp");
  emu_dev(dweight, "conv2d_backward", "dweight");
  emu_dev(dbias, "conv2d_backward", "dbias");
  emu_dev(dout, "conv2d_backward", "dout");
  emu_dev(inp, "conv2d_backward", "inp");
  emu_dev(weight, "conv2d_backward", "weight");
  emu_dev(scratch, "conv2d_backward", "scratch");
  emu_open();
  emu_cpu.conv2d_backward(dinp, dweight, dbias, dout, inp, weight, d, scratch, scratch_floats);
  emu_close();
}

static int64_t w_convt2x2_scratch(int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC) {
  emu_open();
  int64_t r = emu_cpu.convt2x2_scratch(B, C, H, W, OC);
  emu_close();
  return r;
}

static void w_convt2x2_forward(float *out, const float *inp, const float *weight, const float *bias,
                               int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC,
                               float *scratch, int64_t scratch_floats) {
  emu_dev(out, "convt2x2_forward", "out");
  emu_dev(inp, "convt2x2_forward", "inp");
  emu_dev(weight, "convt2x2_forward", "weight");
  emu_dev(bias, "convt2x2_forward", "bias");
  emu_dev(scratch, "convt2x2_forward", "scratch");
  emu_open();
  emu_cpu.convt2x2_forward(out, inp, weight, bias, B, C, H, W, OC, scratch, scratch_floats);
  emu_close();
}

static void w_convt2x2_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, int64_t B, int64_t C,
                                int64_t H, int64_t W, int64_t OC, float *scratch,
                                int64_t scratch_floats) {
  emu_dev(dinp, "convt2x2_backward", "dinp");
  emu_dev(dweight, "convt2x2_backward", "dweight");
  emu_dev(dbias, "convt2x2_backward", "dbias");
  emu_dev(dout, "convt2x2_backward", "dout");
  emu_dev(inp, "convt2x2_backward", "inp");
  emu_dev(weight, "convt2x2_backward", "weight");
  emu_dev(scratch, "convt2x2_backward", "scratch");
  emu_open();
  emu_cpu.convt2x2_backward(dinp, dweight, dbias, dout, inp, weight, B, C, H, W, OC, scratch,
                            scratch_floats);
  emu_close();
}

static void w_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int64_t N, int64_t C,
                                float eps) {
  emu_dev(out, "layernorm_forward", "out");
  emu_dev(mean, "layernorm_forward", "mean");
  emu_dev(rstd, "layernorm_forward", "rstd");
  emu_dev(inp, "layernorm_forward", "inp");
  emu_dev(weight, "layernorm_forward", "weight");
  emu_dev(bias, "layernorm_forward", "bias");
  emu_open();
  emu_cpu.layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
  emu_close();
}

static void w_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight, const float *mean,
                                 const float *rstd, int64_t N, int64_t C) {
  emu_dev(dinp, "layernorm_backward", "dinp");
  emu_dev(dweight, "layernorm_backward", "dweight");
  emu_dev(dbias, "layernorm_backward", "dbias");
  emu_dev(dout, "layernorm_backward", "dout");
  emu_dev(inp, "layernorm_backward", "inp");
  emu_dev(weight, "layernorm_backward", "weight");
  emu_dev(mean, "layernorm_backward", "mean");
  emu_dev(rstd, "layernorm_backward", "rstd");
  emu_open();
  emu_cpu.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  emu_close();
}

static void w_layernorm2d_forward(float *out, float *mean, float *rstd, const float *inp,
                                  const float *weight, const float *bias, int64_t B, int64_t C,
                                  int64_t HW, float eps) {
  emu_dev(out, "layernorm2d_forward", "out");
  emu_dev(mean, "layernorm2d_forward", "mean");
  emu_dev(rstd, "layernorm2d_forward", "rstd");
  emu_dev(inp, "layernorm2d_forward", "inp");
  emu_dev(weight, "layernorm2d_forward", "weight");
  emu_dev(bias, "layernorm2d_forward", "bias");
  emu_open();
  emu_cpu.layernorm2d_forward(out, mean, rstd, inp, weight, bias, B, C, HW, eps);
  emu_close();
}

static void w_layernorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                   const float *inp, const float *weight, const float *mean,
                                   const float *rstd, int64_t B, int64_t C, int64_t HW) {
  emu_dev(dinp, "layernorm2d_backward", "dinp");
  emu_dev(dweight, "layernorm2d_backward", "dweight");
  emu_dev(dbias, "layernorm2d_backward", "dbias");
  emu_dev(dout, "layernorm2d_backward", "dout");
  emu_dev(inp, "layernorm2d_backward", "inp");
  emu_dev(weight, "layernorm2d_backward", "weight");
  emu_dev(mean, "layernorm2d_backward", "mean");
  emu_dev(rstd, "layernorm2d_backward", "rstd");
  emu_open();
  emu_cpu.layernorm2d_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, C, HW);
  emu_close();
}

static void w_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                              int64_t N, int64_t C, float eps) {
  emu_dev(out, "rmsnorm_forward", "out");
  emu_dev(rstd, "rmsnorm_forward", "rstd");
  emu_dev(inp, "rmsnorm_forward", "inp");
  emu_dev(weight, "rmsnorm_forward", "weight");
  emu_open();
  emu_cpu.rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
  emu_close();
}

static void w_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, const float *rstd, int64_t N, int64_t C) {
  emu_dev(dinp, "rmsnorm_backward", "dinp");
  emu_dev(dweight, "rmsnorm_backward", "dweight");
  emu_dev(dout, "rmsnorm_backward", "dout");
  emu_dev(inp, "rmsnorm_backward", "inp");
  emu_dev(weight, "rmsnorm_backward", "weight");
  emu_dev(rstd, "rmsnorm_backward", "rstd");
  emu_open();
  emu_cpu.rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
  emu_close();
}

static void w_gelu_forward(float *out, const float *inp, int64_t n) {
  emu_dev(out, "gelu_forward", "out");
  emu_dev(inp, "gelu_forward", "inp");
  emu_open();
  emu_cpu.gelu_forward(out, inp, n);
  emu_close();
}

static void w_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  emu_dev(dinp, "gelu_backward", "dinp");
  emu_dev(inp, "gelu_backward", "inp");
  emu_dev(dout, "gelu_backward", "dout");
  emu_open();
  emu_cpu.gelu_backward(dinp, inp, dout, n);
  emu_close();
}

static void w_relu_forward(float *out, const float *inp, int64_t n) {
  emu_dev(out, "relu_forward", "out");
  emu_dev(inp, "relu_forward", "inp");
  emu_open();
  emu_cpu.relu_forward(out, inp, n);
  emu_close();
}

static void w_relu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  emu_dev(dinp, "relu_backward", "dinp");
  emu_dev(inp, "relu_backward", "inp");
  emu_dev(dout, "relu_backward", "dout");
  emu_open();
  emu_cpu.relu_backward(dinp, inp, dout, n);
  emu_close();
}

static void w_silu_forward(float *out, const float *inp, int64_t n) {
  emu_dev(out, "silu_forward", "out");
  emu_dev(inp, "silu_forward", "inp");
  emu_open();
  emu_cpu.silu_forward(out, inp, n);
  emu_close();
}

static void w_silu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  emu_dev(dinp, "silu_backward", "dinp");
  emu_dev(inp, "silu_backward", "inp");
  emu_dev(dout, "silu_backward", "dout");
  emu_open();
  emu_cpu.silu_backward(dinp, inp, dout, n);
  emu_close();
}

static void w_swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t C,
                             int64_t ld) {
  emu_dev(out, "swiglu_forward", "out");
  emu_dev(gate, "swiglu_forward", "gate");
  emu_dev(up, "swiglu_forward", "up");
  emu_open();
  emu_cpu.swiglu_forward(out, gate, up, N, C, ld);
  emu_close();
}

static void w_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                              const float *up, int64_t N, int64_t C, int64_t ld) {
  emu_dev(dgate, "swiglu_backward", "dgate");
  emu_dev(dup, "swiglu_backward", "dup");
  emu_dev(dout, "swiglu_backward", "dout");
  emu_dev(gate, "swiglu_backward", "gate");
  emu_dev(up, "swiglu_backward", "up");
  emu_open();
  emu_cpu.swiglu_backward(dgate, dup, dout, gate, up, N, C, ld);
  emu_close();
}

static void w_layerscale_forward(float *out, const float *inp, const float *gamma, int64_t N,
                                 int64_t C) {
  emu_dev(out, "layerscale_forward", "out");
  emu_dev(inp, "layerscale_forward", "inp");
  emu_dev(gamma, "layerscale_forward", "gamma");
  emu_open();
  emu_cpu.layerscale_forward(out, inp, gamma, N, C);
  emu_close();
}

static void w_layerscale_backward(float *dinp, float *dgamma, const float *dout, const float *inp,
                                  const float *gamma, int64_t N, int64_t C) {
  emu_dev(dinp, "layerscale_backward", "dinp");
  emu_dev(dgamma, "layerscale_backward", "dgamma");
  emu_dev(dout, "layerscale_backward", "dout");
  emu_dev(inp, "layerscale_backward", "inp");
  emu_dev(gamma, "layerscale_backward", "gamma");
  emu_open();
  emu_cpu.layerscale_backward(dinp, dgamma, dout, inp, gamma, N, C);
  emu_close();
}

static void w_add_forward(float *out, const float *a, const float *b, int64_t n) {
  emu_dev(out, "add_forward", "out");
  emu_dev(a, "add_forward", "a");
  emu_dev(b, "add_forward", "b");
  emu_open();
  emu_cpu.add_forward(out, a, b, n);
  emu_close();
}

static void w_mul_forward(float *out, const float *a, const float *b, int64_t n) {
  emu_dev(out, "mul_forward", "out");
  emu_dev(a, "mul_forward", "a");
  emu_dev(b, "mul_forward", "b");
  emu_open();
  emu_cpu.mul_forward(out, a, b, n);
  emu_close();
}

static void w_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                           int64_t n) {
  emu_dev(da, "mul_backward", "da");
  emu_dev(db, "mul_backward", "db");
  emu_dev(dout, "mul_backward", "dout");
  emu_dev(a, "mul_backward", "a");
  emu_dev(b, "mul_backward", "b");
  emu_open();
  emu_cpu.mul_backward(da, db, dout, a, b, n);
  emu_close();
}

static void w_axpy(float *y, float alpha, const float *x, int64_t n) {
  emu_dev(y, "axpy", "y");
  emu_dev(x, "axpy", "x");
  emu_open();
  emu_cpu.axpy(y, alpha, x, n);
  emu_close();
}

static void w_scale(float *out, const float *inp, float alpha, int64_t n) {
  emu_dev(out, "scale", "out");
  emu_dev(inp, "scale", "inp");
  emu_open();
  emu_cpu.scale(out, inp, alpha, n);
  emu_close();
}

static void w_fill(float *x, float value, int64_t n) {
  emu_dev(x, "fill", "x");
  emu_open();
  emu_cpu.fill(x, value, n);
  emu_close();
}

static void w_transpose_forward(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N) {
  emu_dev(out, "transpose_forward", "out");
  emu_dev(inp, "transpose_forward", "inp");
  emu_open();
  emu_cpu.transpose_forward(out, inp, Bt, M, N);
  emu_close();
}

static void w_transpose_backward(float *dinp, const float *dout, int64_t Bt, int64_t M, int64_t N) {
  emu_dev(dinp, "transpose_backward", "dinp");
  emu_dev(dout, "transpose_backward", "dout");
  emu_open();
  emu_cpu.transpose_backward(dinp, dout, Bt, M, N);
  emu_close();
}

static void w_softmax_forward(float *out, const float *inp, int64_t N, int64_t C) {
  emu_dev(out, "softmax_forward", "out");
  emu_dev(inp, "softmax_forward", "inp");
  emu_open();
  emu_cpu.softmax_forward(out, inp, N, C);
  emu_close();
}

static void w_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                               int64_t C) {
  emu_dev(dinp, "softmax_backward", "dinp");
  emu_dev(dout, "softmax_backward", "dout");
  emu_dev(out, "softmax_backward", "out");
  emu_open();
  emu_cpu.softmax_backward(dinp, dout, out, N, C);
  emu_close();
}

static int64_t w_attention_scratch(const ps_attention_desc *d, int backward) {
  emu_dev_desc(d, "attention_scratch");
  emu_open();
  int64_t r = emu_cpu.attention_scratch(d, backward);
  emu_close();
  return r;
}

static void w_attention_forward(float *out, float *lse, const float *q, const float *k,
                                const float *v, const ps_attention_desc *d, float *scratch,
                                int64_t scratch_floats) {
  emu_dev(out, "attention_forward", "out");
  emu_dev(lse, "attention_forward", "lse");
  emu_dev(q, "attention_forward", "q");
  emu_dev(k, "attention_forward", "k");
  emu_dev(v, "attention_forward", "v");
  emu_dev_desc(d, "attention_forward");
  emu_dev(scratch, "attention_forward", "scratch");
  emu_open();
  emu_cpu.attention_forward(out, lse, q, k, v, d, scratch, scratch_floats);
  emu_close();
}

static void w_attention_backward(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                                 float *drel_w, const float *dout, const float *q, const float *k,
                                 const float *v, const float *out, const float *lse,
                                 const ps_attention_desc *d, float *scratch,
                                 int64_t scratch_floats) {
  emu_dev(dq, "attention_backward", "dq");
  emu_dev(dk, "attention_backward", "dk");
  emu_dev(dv, "attention_backward", "dv");
  emu_dev(dbias, "attention_backward", "dbias");
  emu_dev(drel_h, "attention_backward", "drel_h");
  emu_dev(drel_w, "attention_backward", "drel_w");
  emu_dev(dout, "attention_backward", "dout");
  emu_dev(q, "attention_backward", "q");
  emu_dev(k, "attention_backward", "k");
  emu_dev(v, "attention_backward", "v");
  emu_dev(out, "attention_backward", "out");
  emu_dev(lse, "attention_backward", "lse");
  emu_dev_desc(d, "attention_backward");
  emu_dev(scratch, "attention_backward", "scratch");
  emu_open();
  emu_cpu.attention_backward(dq, dk, dv, dbias, drel_h, drel_w, dout, q, k, v, out, lse, d, scratch,
                             scratch_floats);
  emu_close();
}

static void w_window_partition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                       int64_t W, int64_t C, int64_t ws) {
  emu_dev(out, "window_partition_forward", "out");
  emu_dev(inp, "window_partition_forward", "inp");
  emu_open();
  emu_cpu.window_partition_forward(out, inp, B, H, W, C, ws);
  emu_close();
}

static void w_window_partition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                        int64_t W, int64_t C, int64_t ws) {
  emu_dev(dinp, "window_partition_backward", "dinp");
  emu_dev(dout, "window_partition_backward", "dout");
  emu_open();
  emu_cpu.window_partition_backward(dinp, dout, B, H, W, C, ws);
  emu_close();
}

static void w_window_unpartition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                         int64_t W, int64_t C, int64_t ws) {
  emu_dev(out, "window_unpartition_forward", "out");
  emu_dev(inp, "window_unpartition_forward", "inp");
  emu_open();
  emu_cpu.window_unpartition_forward(out, inp, B, H, W, C, ws);
  emu_close();
}

static void w_window_unpartition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                          int64_t W, int64_t C, int64_t ws) {
  emu_dev(dinp, "window_unpartition_backward", "dinp");
  emu_dev(dout, "window_unpartition_backward", "dout");
  emu_open();
  emu_cpu.window_unpartition_backward(dinp, dout, B, H, W, C, ws);
  emu_close();
}

static void w_rel_pos_forward(float *rel_h, float *rel_w, const float *q, const float *rel_pos_h,
                              const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                              int64_t D, int64_t ldq) {
  emu_dev(rel_h, "rel_pos_forward", "rel_h");
  emu_dev(rel_w, "rel_pos_forward", "rel_w");
  emu_dev(q, "rel_pos_forward", "q");
  emu_dev(rel_pos_h, "rel_pos_forward", "rel_pos_h");
  emu_dev(rel_pos_w, "rel_pos_forward", "rel_pos_w");
  emu_open();
  emu_cpu.rel_pos_forward(rel_h, rel_w, q, rel_pos_h, rel_pos_w, B, H, gh, gw, D, ldq);
  emu_close();
}

static void w_rel_pos_backward(float *dq, float *drel_pos_h, float *drel_pos_w, const float *drel_h,
                               const float *drel_w, const float *q, const float *rel_pos_h,
                               const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                               int64_t D, int64_t ldq) {
  emu_dev(dq, "rel_pos_backward", "dq");
  emu_dev(drel_pos_h, "rel_pos_backward", "drel_pos_h");
  emu_dev(drel_pos_w, "rel_pos_backward", "drel_pos_w");
  emu_dev(drel_h, "rel_pos_backward", "drel_h");
  emu_dev(drel_w, "rel_pos_backward", "drel_w");
  emu_dev(q, "rel_pos_backward", "q");
  emu_dev(rel_pos_h, "rel_pos_backward", "rel_pos_h");
  emu_dev(rel_pos_w, "rel_pos_backward", "rel_pos_w");
  emu_open();
  emu_cpu.rel_pos_backward(dq, drel_pos_h, drel_pos_w, drel_h, drel_w, q, rel_pos_h, rel_pos_w, B,
                           H, gh, gw, D, ldq);
  emu_close();
}

static void w_rope_forward(float *out, const float *inp, const int32_t *pos,
                           const ps_rope_desc *d) {
  emu_dev(out, "rope_forward", "out");
  emu_dev(inp, "rope_forward", "inp");
  emu_dev(pos, "rope_forward", "pos");
  emu_open();
  emu_cpu.rope_forward(out, inp, pos, d);
  emu_close();
}

static void w_rope_backward(float *dinp, const float *dout, const int32_t *pos,
                            const ps_rope_desc *d) {
  emu_dev(dinp, "rope_backward", "dinp");
  emu_dev(dout, "rope_backward", "dout");
  emu_dev(pos, "rope_backward", "pos");
  emu_open();
  emu_cpu.rope_backward(dinp, dout, pos, d);
  emu_close();
}

static void w_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                                int64_t V, int64_t C) {
  emu_dev(out, "embedding_forward", "out");
  emu_dev(ids, "embedding_forward", "ids");
  emu_dev(table, "embedding_forward", "table");
  emu_open();
  emu_cpu.embedding_forward(out, ids, table, N, V, C);
  emu_close();
}

static void w_embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                                 int64_t V, int64_t C) {
  emu_dev(dtable, "embedding_backward", "dtable");
  emu_dev(ids, "embedding_backward", "ids");
  emu_dev(dout, "embedding_backward", "dout");
  emu_open();
  emu_cpu.embedding_backward(dtable, ids, dout, N, V, C);
  emu_close();
}

static float w_crossentropy(float *dlogits, float *row_loss, const float *logits,
                            const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                            float denom, float dloss) {
  emu_dev(dlogits, "crossentropy", "dlogits");
  emu_dev(row_loss, "crossentropy", "row_loss");
  emu_dev(logits, "crossentropy", "logits");
  emu_dev(targets, "crossentropy", "targets");
  emu_open();
  float r =
      emu_cpu.crossentropy(dlogits, row_loss, logits, targets, N, V, ignore_index, denom, dloss);
  emu_close();
  return r;
}

static void w_bce_logits_forward(float *losses, const float *logits, const float *targets,
                                 int64_t M, int64_t P) {
  emu_dev(losses, "bce_logits_forward", "losses");
  emu_dev(logits, "bce_logits_forward", "logits");
  emu_dev(targets, "bce_logits_forward", "targets");
  emu_open();
  emu_cpu.bce_logits_forward(losses, logits, targets, M, P);
  emu_close();
}

static void w_bce_logits_backward(float *dlogits, const float *dlosses, const float *logits,
                                  const float *targets, int64_t M, int64_t P) {
  emu_dev(dlogits, "bce_logits_backward", "dlogits");
  emu_dev(dlosses, "bce_logits_backward", "dlosses");
  emu_dev(logits, "bce_logits_backward", "logits");
  emu_dev(targets, "bce_logits_backward", "targets");
  emu_open();
  emu_cpu.bce_logits_backward(dlogits, dlosses, logits, targets, M, P);
  emu_close();
}

static void w_dice_forward(float *losses, const float *logits, const float *targets, int64_t M,
                           int64_t P, const ps_dice_desc *d) {
  emu_dev(losses, "dice_forward", "losses");
  emu_dev(logits, "dice_forward", "logits");
  emu_dev(targets, "dice_forward", "targets");
  emu_open();
  emu_cpu.dice_forward(losses, logits, targets, M, P, d);
  emu_close();
}

static void w_dice_backward(float *dlogits, const float *dlosses, const float *logits,
                            const float *targets, int64_t M, int64_t P, const ps_dice_desc *d) {
  emu_dev(dlogits, "dice_backward", "dlogits");
  emu_dev(dlosses, "dice_backward", "dlosses");
  emu_dev(logits, "dice_backward", "logits");
  emu_dev(targets, "dice_backward", "targets");
  emu_open();
  emu_cpu.dice_backward(dlogits, dlosses, logits, targets, M, P, d);
  emu_close();
}

static void w_resize_forward(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                             int64_t OH, int64_t OW, float scale_h, float scale_w,
                             ps_resize_mode mode) {
  emu_dev(out, "resize_forward", "out");
  emu_dev(inp, "resize_forward", "inp");
  emu_open();
  emu_cpu.resize_forward(out, inp, NC, H, W, OH, OW, scale_h, scale_w, mode);
  emu_close();
}

static void w_resize_backward(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                              int64_t OH, int64_t OW, float scale_h, float scale_w,
                              ps_resize_mode mode) {
  emu_dev(dinp, "resize_backward", "dinp");
  emu_dev(dout, "resize_backward", "dout");
  emu_open();
  emu_cpu.resize_backward(dinp, dout, NC, H, W, OH, OW, scale_h, scale_w, mode);
  emu_close();
}

static void w_linear_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, const ps_bf16 *weight,
                                  const ps_bf16 *bias, int64_t N, int64_t C, int64_t OC) {
  emu_dev(out, "linear_forward_bf16", "out");
  emu_dev(inp, "linear_forward_bf16", "inp");
  emu_dev(weight, "linear_forward_bf16", "weight");
  emu_dev(bias, "linear_forward_bf16", "bias");
  emu_open();
  emu_cpu.linear_forward_bf16(out, inp, weight, bias, N, C, OC);
  emu_close();
}

static void w_linear_backward_bf16(ps_bf16 *dinp, float *dweight, float *dbias, const ps_bf16 *dout,
                                   const ps_bf16 *inp, const ps_bf16 *weight, int64_t N, int64_t C,
                                   int64_t OC) {
  emu_dev(dinp, "linear_backward_bf16", "dinp");
  emu_dev(dweight, "linear_backward_bf16", "dweight");
  emu_dev(dbias, "linear_backward_bf16", "dbias");
  emu_dev(dout, "linear_backward_bf16", "dout");
  emu_dev(inp, "linear_backward_bf16", "inp");
  emu_dev(weight, "linear_backward_bf16", "weight");
  emu_open();
  emu_cpu.linear_backward_bf16(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
  emu_close();
}

static void w_layernorm_forward_bf16(ps_bf16 *out, float *mean, float *rstd, const ps_bf16 *inp,
                                     const ps_bf16 *weight, const ps_bf16 *bias, int64_t N,
                                     int64_t C, float eps) {
  emu_dev(out, "layernorm_forward_bf16", "out");
  emu_dev(mean, "layernorm_forward_bf16", "mean");
  emu_dev(rstd, "layernorm_forward_bf16", "rstd");
  emu_dev(inp, "layernorm_forward_bf16", "inp");
  emu_dev(weight, "layernorm_forward_bf16", "weight");
  emu_dev(bias, "layernorm_forward_bf16", "bias");
  emu_open();
  emu_cpu.layernorm_forward_bf16(out, mean, rstd, inp, weight, bias, N, C, eps);
  emu_close();
}

static void w_layernorm_backward_bf16(ps_bf16 *dinp, float *dweight, float *dbias,
                                      const ps_bf16 *dout, const ps_bf16 *inp,
                                      const ps_bf16 *weight, const float *mean, const float *rstd,
                                      int64_t N, int64_t C) {
  emu_dev(dinp, "layernorm_backward_bf16", "dinp");
  emu_dev(dweight, "layernorm_backward_bf16", "dweight");
  emu_dev(dbias, "layernorm_backward_bf16", "dbias");
  emu_dev(dout, "layernorm_backward_bf16", "dout");
  emu_dev(inp, "layernorm_backward_bf16", "inp");
  emu_dev(weight, "layernorm_backward_bf16", "weight");
  emu_dev(mean, "layernorm_backward_bf16", "mean");
  emu_dev(rstd, "layernorm_backward_bf16", "rstd");
  emu_open();
  emu_cpu.layernorm_backward_bf16(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  emu_close();
}

static void w_rmsnorm_forward_bf16(ps_bf16 *out, float *rstd, const ps_bf16 *inp,
                                   const ps_bf16 *weight, int64_t N, int64_t C, float eps) {
  emu_dev(out, "rmsnorm_forward_bf16", "out");
  emu_dev(rstd, "rmsnorm_forward_bf16", "rstd");
  emu_dev(inp, "rmsnorm_forward_bf16", "inp");
  emu_dev(weight, "rmsnorm_forward_bf16", "weight");
  emu_open();
  emu_cpu.rmsnorm_forward_bf16(out, rstd, inp, weight, N, C, eps);
  emu_close();
}

static void w_rmsnorm_backward_bf16(ps_bf16 *dinp, float *dweight, const ps_bf16 *dout,
                                    const ps_bf16 *inp, const ps_bf16 *weight, const float *rstd,
                                    int64_t N, int64_t C) {
  emu_dev(dinp, "rmsnorm_backward_bf16", "dinp");
  emu_dev(dweight, "rmsnorm_backward_bf16", "dweight");
  emu_dev(dout, "rmsnorm_backward_bf16", "dout");
  emu_dev(inp, "rmsnorm_backward_bf16", "inp");
  emu_dev(weight, "rmsnorm_backward_bf16", "weight");
  emu_dev(rstd, "rmsnorm_backward_bf16", "rstd");
  emu_open();
  emu_cpu.rmsnorm_backward_bf16(dinp, dweight, dout, inp, weight, rstd, N, C);
  emu_close();
}

static void w_gelu_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t n) {
  emu_dev(out, "gelu_forward_bf16", "out");
  emu_dev(inp, "gelu_forward_bf16", "inp");
  emu_open();
  emu_cpu.gelu_forward_bf16(out, inp, n);
  emu_close();
}

static void w_gelu_backward_bf16(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout,
                                 int64_t n) {
  emu_dev(dinp, "gelu_backward_bf16", "dinp");
  emu_dev(inp, "gelu_backward_bf16", "inp");
  emu_dev(dout, "gelu_backward_bf16", "dout");
  emu_open();
  emu_cpu.gelu_backward_bf16(dinp, inp, dout, n);
  emu_close();
}

static void w_silu_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t n) {
  emu_dev(out, "silu_forward_bf16", "out");
  emu_dev(inp, "silu_forward_bf16", "inp");
  emu_open();
  emu_cpu.silu_forward_bf16(out, inp, n);
  emu_close();
}

static void w_silu_backward_bf16(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout,
                                 int64_t n) {
  emu_dev(dinp, "silu_backward_bf16", "dinp");
  emu_dev(inp, "silu_backward_bf16", "inp");
  emu_dev(dout, "silu_backward_bf16", "dout");
  emu_open();
  emu_cpu.silu_backward_bf16(dinp, inp, dout, n);
  emu_close();
}

static void w_swiglu_forward_bf16(ps_bf16 *out, const ps_bf16 *gate, const ps_bf16 *up, int64_t N,
                                  int64_t C, int64_t ld) {
  emu_dev(out, "swiglu_forward_bf16", "out");
  emu_dev(gate, "swiglu_forward_bf16", "gate");
  emu_dev(up, "swiglu_forward_bf16", "up");
  emu_open();
  emu_cpu.swiglu_forward_bf16(out, gate, up, N, C, ld);
  emu_close();
}

static void w_swiglu_backward_bf16(ps_bf16 *dgate, ps_bf16 *dup, const ps_bf16 *dout,
                                   const ps_bf16 *gate, const ps_bf16 *up, int64_t N, int64_t C,
                                   int64_t ld) {
  emu_dev(dgate, "swiglu_backward_bf16", "dgate");
  emu_dev(dup, "swiglu_backward_bf16", "dup");
  emu_dev(dout, "swiglu_backward_bf16", "dout");
  emu_dev(gate, "swiglu_backward_bf16", "gate");
  emu_dev(up, "swiglu_backward_bf16", "up");
  emu_open();
  emu_cpu.swiglu_backward_bf16(dgate, dup, dout, gate, up, N, C, ld);
  emu_close();
}

static void w_softmax_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t N, int64_t C) {
  emu_dev(out, "softmax_forward_bf16", "out");
  emu_dev(inp, "softmax_forward_bf16", "inp");
  emu_open();
  emu_cpu.softmax_forward_bf16(out, inp, N, C);
  emu_close();
}

static void w_softmax_backward_bf16(ps_bf16 *dinp, const ps_bf16 *dout, const ps_bf16 *out,
                                    int64_t N, int64_t C) {
  emu_dev(dinp, "softmax_backward_bf16", "dinp");
  emu_dev(dout, "softmax_backward_bf16", "dout");
  emu_dev(out, "softmax_backward_bf16", "out");
  emu_open();
  emu_cpu.softmax_backward_bf16(dinp, dout, out, N, C);
  emu_close();
}

static int64_t w_attention_scratch_bf16(const ps_attention_desc *d, int backward) {
  emu_dev_desc(d, "attention_scratch_bf16");
  emu_open();
  int64_t r = emu_cpu.attention_scratch_bf16(d, backward);
  emu_close();
  return r;
}

static void w_attention_forward_bf16(ps_bf16 *out, float *lse, const ps_bf16 *q, const ps_bf16 *k,
                                     const ps_bf16 *v, const ps_attention_desc *d, float *scratch,
                                     int64_t scratch_floats) {
  emu_dev(out, "attention_forward_bf16", "out");
  emu_dev(lse, "attention_forward_bf16", "lse");
  emu_dev(q, "attention_forward_bf16", "q");
  emu_dev(k, "attention_forward_bf16", "k");
  emu_dev(v, "attention_forward_bf16", "v");
  emu_dev_desc(d, "attention_forward_bf16");
  emu_dev(scratch, "attention_forward_bf16", "scratch");
  emu_open();
  emu_cpu.attention_forward_bf16(out, lse, q, k, v, d, scratch, scratch_floats);
  emu_close();
}

static void w_attention_backward_bf16(ps_bf16 *dq, ps_bf16 *dk, ps_bf16 *dv, float *dbias,
                                      float *drel_h, float *drel_w, const ps_bf16 *dout,
                                      const ps_bf16 *q, const ps_bf16 *k, const ps_bf16 *v,
                                      const ps_bf16 *out, const float *lse,
                                      const ps_attention_desc *d, float *scratch,
                                      int64_t scratch_floats) {
  emu_dev(dq, "attention_backward_bf16", "dq");
  emu_dev(dk, "attention_backward_bf16", "dk");
  emu_dev(dv, "attention_backward_bf16", "dv");
  emu_dev(dbias, "attention_backward_bf16", "dbias");
  emu_dev(drel_h, "attention_backward_bf16", "drel_h");
  emu_dev(drel_w, "attention_backward_bf16", "drel_w");
  emu_dev(dout, "attention_backward_bf16", "dout");
  emu_dev(q, "attention_backward_bf16", "q");
  emu_dev(k, "attention_backward_bf16", "k");
  emu_dev(v, "attention_backward_bf16", "v");
  emu_dev(out, "attention_backward_bf16", "out");
  emu_dev(lse, "attention_backward_bf16", "lse");
  emu_dev_desc(d, "attention_backward_bf16");
  emu_dev(scratch, "attention_backward_bf16", "scratch");
  emu_open();
  emu_cpu.attention_backward_bf16(dq, dk, dv, dbias, drel_h, drel_w, dout, q, k, v, out, lse, d,
                                  scratch, scratch_floats);
  emu_close();
}

static void w_rope_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, const int32_t *pos,
                                const ps_rope_desc *d) {
  emu_dev(out, "rope_forward_bf16", "out");
  emu_dev(inp, "rope_forward_bf16", "inp");
  emu_dev(pos, "rope_forward_bf16", "pos");
  emu_open();
  emu_cpu.rope_forward_bf16(out, inp, pos, d);
  emu_close();
}

static void w_rope_backward_bf16(ps_bf16 *dinp, const ps_bf16 *dout, const int32_t *pos,
                                 const ps_rope_desc *d) {
  emu_dev(dinp, "rope_backward_bf16", "dinp");
  emu_dev(dout, "rope_backward_bf16", "dout");
  emu_dev(pos, "rope_backward_bf16", "pos");
  emu_open();
  emu_cpu.rope_backward_bf16(dinp, dout, pos, d);
  emu_close();
}

static void w_embedding_forward_bf16(ps_bf16 *out, const int32_t *ids, const ps_bf16 *table,
                                     int64_t N, int64_t V, int64_t C) {
  emu_dev(out, "embedding_forward_bf16", "out");
  emu_dev(ids, "embedding_forward_bf16", "ids");
  emu_dev(table, "embedding_forward_bf16", "table");
  emu_open();
  emu_cpu.embedding_forward_bf16(out, ids, table, N, V, C);
  emu_close();
}

static void w_embedding_backward_bf16(float *dtable, const int32_t *ids, const ps_bf16 *dout,
                                      int64_t N, int64_t V, int64_t C) {
  emu_dev(dtable, "embedding_backward_bf16", "dtable");
  emu_dev(ids, "embedding_backward_bf16", "ids");
  emu_dev(dout, "embedding_backward_bf16", "dout");
  emu_open();
  emu_cpu.embedding_backward_bf16(dtable, ids, dout, N, V, C);
  emu_close();
}

static float w_crossentropy_bf16(ps_bf16 *dlogits, float *row_loss, const ps_bf16 *logits,
                                 const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                                 float denom, float dloss) {
  emu_dev(dlogits, "crossentropy_bf16", "dlogits");
  emu_dev(row_loss, "crossentropy_bf16", "row_loss");
  emu_dev(logits, "crossentropy_bf16", "logits");
  emu_dev(targets, "crossentropy_bf16", "targets");
  emu_open();
  float r = emu_cpu.crossentropy_bf16(dlogits, row_loss, logits, targets, N, V, ignore_index, denom,
                                      dloss);
  emu_close();
  return r;
}

static void w_copy_2d(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                      int64_t cols, int accumulate) {
  emu_dev(dst, "copy_2d", "dst");
  emu_dev(src, "copy_2d", "src");
  emu_open();
  emu_cpu.copy_2d(dst, ldd, src, lds, rows, cols, accumulate);
  emu_close();
}

static void w_add_rows(float *out, const float *inp, const float *row, int64_t N, int64_t C) {
  emu_dev(out, "add_rows", "out");
  emu_dev(inp, "add_rows", "inp");
  emu_dev(row, "add_rows", "row");
  emu_open();
  emu_cpu.add_rows(out, inp, row, N, C);
  emu_close();
}

static void w_sum_rows(float *drow, const float *dout, int64_t N, int64_t C) {
  emu_dev(drow, "sum_rows", "drow");
  emu_dev(dout, "sum_rows", "dout");
  emu_open();
  emu_cpu.sum_rows(drow, dout, N, C);
  emu_close();
}

static void w_mask_counts(int64_t *counts, const float *logits, const float *targets, int64_t M,
                          int64_t P) {
  emu_dev(counts, "mask_counts", "counts");
  emu_dev(logits, "mask_counts", "logits");
  emu_dev(targets, "mask_counts", "targets");
  emu_open();
  emu_cpu.mask_counts(counts, logits, targets, M, P);
  emu_close();
}

static double w_sum_squares(const float *x, int64_t n) {
  emu_dev(x, "sum_squares", "x");
  emu_open();
  double r = emu_cpu.sum_squares(x, n);
  emu_close();
  return r;
}

static int64_t w_find_nonfinite(const float *x, int64_t n) {
  emu_dev(x, "find_nonfinite", "x");
  emu_open();
  int64_t r = emu_cpu.find_nonfinite(x, n);
  emu_close();
  return r;
}

static void w_adamw_step(float *p, const float *grad, float *m, float *v, ps_bf16 *p_bf16,
                         int64_t n, float clip, float beta1, float beta2, float wd, float step_size,
                         float inv_sqrt_c2, float eps) {
  emu_dev(p, "adamw_step", "p");
  emu_dev(grad, "adamw_step", "grad");
  emu_dev(m, "adamw_step", "m");
  emu_dev(v, "adamw_step", "v");
  emu_dev(p_bf16, "adamw_step", "p_bf16");
  emu_open();
  emu_cpu.adamw_step(p, grad, m, v, p_bf16, n, clip, beta1, beta2, wd, step_size, inv_sqrt_c2, eps);
  emu_close();
}

static void w_to_bf16(ps_bf16 *out, const float *inp, int64_t n) {
  emu_dev(out, "to_bf16", "out");
  emu_dev(inp, "to_bf16", "inp");
  emu_open();
  emu_cpu.to_bf16(out, inp, n);
  emu_close();
}

static void w_from_bf16(float *out, const ps_bf16 *inp, int64_t n) {
  emu_dev(out, "from_bf16", "out");
  emu_dev(inp, "from_bf16", "inp");
  emu_open();
  emu_cpu.from_bf16(out, inp, n);
  emu_close();
}

static void emu_fill_table(ps_kernels *t) {
  t->linear_forward = w_linear_forward;
  t->linear_backward = w_linear_backward;
  t->bmm_forward = w_bmm_forward;
  t->bmm_backward = w_bmm_backward;
  t->conv2d_scratch = w_conv2d_scratch;
  t->conv2d_forward = w_conv2d_forward;
  t->conv2d_backward = w_conv2d_backward;
  t->convt2x2_scratch = w_convt2x2_scratch;
  t->convt2x2_forward = w_convt2x2_forward;
  t->convt2x2_backward = w_convt2x2_backward;
  t->layernorm_forward = w_layernorm_forward;
  t->layernorm_backward = w_layernorm_backward;
  t->layernorm2d_forward = w_layernorm2d_forward;
  t->layernorm2d_backward = w_layernorm2d_backward;
  t->rmsnorm_forward = w_rmsnorm_forward;
  t->rmsnorm_backward = w_rmsnorm_backward;
  t->gelu_forward = w_gelu_forward;
  t->gelu_backward = w_gelu_backward;
  t->relu_forward = w_relu_forward;
  t->relu_backward = w_relu_backward;
  t->silu_forward = w_silu_forward;
  t->silu_backward = w_silu_backward;
  t->swiglu_forward = w_swiglu_forward;
  t->swiglu_backward = w_swiglu_backward;
  t->layerscale_forward = w_layerscale_forward;
  t->layerscale_backward = w_layerscale_backward;
  t->add_forward = w_add_forward;
  t->mul_forward = w_mul_forward;
  t->mul_backward = w_mul_backward;
  t->axpy = w_axpy;
  t->scale = w_scale;
  t->fill = w_fill;
  t->transpose_forward = w_transpose_forward;
  t->transpose_backward = w_transpose_backward;
  t->softmax_forward = w_softmax_forward;
  t->softmax_backward = w_softmax_backward;
  t->attention_scratch = w_attention_scratch;
  t->attention_forward = w_attention_forward;
  t->attention_backward = w_attention_backward;
  t->window_partition_forward = w_window_partition_forward;
  t->window_partition_backward = w_window_partition_backward;
  t->window_unpartition_forward = w_window_unpartition_forward;
  t->window_unpartition_backward = w_window_unpartition_backward;
  t->rel_pos_forward = w_rel_pos_forward;
  t->rel_pos_backward = w_rel_pos_backward;
  t->rope_forward = w_rope_forward;
  t->rope_backward = w_rope_backward;
  t->embedding_forward = w_embedding_forward;
  t->embedding_backward = w_embedding_backward;
  t->crossentropy = w_crossentropy;
  t->bce_logits_forward = w_bce_logits_forward;
  t->bce_logits_backward = w_bce_logits_backward;
  t->dice_forward = w_dice_forward;
  t->dice_backward = w_dice_backward;
  t->resize_forward = w_resize_forward;
  t->resize_backward = w_resize_backward;
  t->linear_forward_bf16 = w_linear_forward_bf16;
  t->linear_backward_bf16 = w_linear_backward_bf16;
  t->layernorm_forward_bf16 = w_layernorm_forward_bf16;
  t->layernorm_backward_bf16 = w_layernorm_backward_bf16;
  t->rmsnorm_forward_bf16 = w_rmsnorm_forward_bf16;
  t->rmsnorm_backward_bf16 = w_rmsnorm_backward_bf16;
  t->gelu_forward_bf16 = w_gelu_forward_bf16;
  t->gelu_backward_bf16 = w_gelu_backward_bf16;
  t->silu_forward_bf16 = w_silu_forward_bf16;
  t->silu_backward_bf16 = w_silu_backward_bf16;
  t->swiglu_forward_bf16 = w_swiglu_forward_bf16;
  t->swiglu_backward_bf16 = w_swiglu_backward_bf16;
  t->softmax_forward_bf16 = w_softmax_forward_bf16;
  t->softmax_backward_bf16 = w_softmax_backward_bf16;
  t->attention_scratch_bf16 = w_attention_scratch_bf16;
  t->attention_forward_bf16 = w_attention_forward_bf16;
  t->attention_backward_bf16 = w_attention_backward_bf16;
  t->rope_forward_bf16 = w_rope_forward_bf16;
  t->rope_backward_bf16 = w_rope_backward_bf16;
  t->embedding_forward_bf16 = w_embedding_forward_bf16;
  t->embedding_backward_bf16 = w_embedding_backward_bf16;
  t->crossentropy_bf16 = w_crossentropy_bf16;
  t->copy_2d = w_copy_2d;
  t->add_rows = w_add_rows;
  t->sum_rows = w_sum_rows;
  t->mask_counts = w_mask_counts;
  t->sum_squares = w_sum_squares;
  t->find_nonfinite = w_find_nonfinite;
  t->adamw_step = w_adamw_step;
  t->to_bf16 = w_to_bf16;
  t->from_bf16 = w_from_bf16;
}
