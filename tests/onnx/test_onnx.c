/* test_onnx.c — ONNX backend conformance for the CPU kernels.
 *
 * Walks every node test of Debian's libonnx-testdata
 * (/usr/share/libonnx-testdata/data/node/test_* /{model.onnx,test_data_set_0})
 * whose model is one node of an op the kernel table covers, runs the kernel on
 * input_N.pb and compares with output_0.pb (|got - want| <= 1e-4 + 1e-4 |want|).
 *
 * A case of a covered op that the kernels cannot express must be listed in
 * `skip_table` with its reason; a case that the op handler cannot express but
 * that is not listed is a FAILURE (no silent skips), and so is a listed case
 * that turns out to run (the table must not go stale).
 *
 * Ops mapped (onnx 1.12 test data, Debian 12): Gemm and MatMul (linear, bmm;
 * transposes and alpha done here), Conv (conv2d), ConvTranspose (convt2x2:
 * every case in the data has another kernel size or stride, so all are
 * listed), LayerNormalization (every axis, by reshaping), Softmax (last axis),
 * Resize (linear/cubic, half_pixel), Relu, Add, Mul, Transpose (batched 2-D),
 * Gather (axis 0 = embedding) and SoftmaxCrossEntropyLoss (crossentropy).
 * This ONNX version has no Gelu test; the table has no Sigmoid.
 *
 * Usage: test_onnx [DATA_DIR] [CASE_SUBSTRING]
 * DATA_DIR defaults to $PATHSEG_ONNX_DATA or /usr/share/libonnx-testdata/data/node.
 * A missing directory is a failure: run tools/install-deps.sh. */
#include <math.h>
#include <pathseg/kernels.h>
#include <string.h>

#include "onnx_pb.h"
#include "ps_test.h"

#define DEFAULT_DATA_DIR "/usr/share/libonnx-testdata/data/node"
#define TOL 1e-4

/* Covered-op cases that the kernels cannot represent, with the reason. */
static const struct {
  const char *name;
  const char *reason;
} skip_table[] = {
    /* Gemm, MatMul, LayerNormalization (every axis, by reshape), Gather axis 0
     * and the unweighted SoftmaxCrossEntropyLoss cases all map. */
    {"test_add_bcast", "Add with broadcasting: add_forward takes two same-size arrays"},
    {"test_add_uint8", "uint8 tensors: the kernels are f32"},
    {"test_mul_bcast", "Mul with broadcasting: mul_forward takes two same-size arrays"},
    {"test_mul_uint8", "uint8 tensors: the kernels are f32"},
    {"test_conv_with_strides_and_asymmetric_padding",
     "pads (1, 0, 1, 0): ps_conv2d_desc has one symmetric pad for both axes"},
    {"test_convtranspose", "kernel 3x3 stride 1: only the 2x2 stride-2 ConvTranspose exists"},
    {"test_convtranspose_1d", "1-D: only the 2-D 2x2 stride-2 ConvTranspose exists"},
    {"test_convtranspose_3d", "3-D: only the 2-D 2x2 stride-2 ConvTranspose exists"},
    {"test_convtranspose_autopad_same", "kernel 3x3: only 2x2 stride 2 exists"},
    {"test_convtranspose_dilations", "dilations 2 stride 1: only 2x2 stride 2 exists"},
    {"test_convtranspose_kernel_shape", "kernel 3x3 strides (3, 2): only 2x2 stride 2 exists"},
    {"test_convtranspose_output_shape", "kernel 3x3 strides (3, 2): only 2x2 stride 2 exists"},
    {"test_convtranspose_pad", "kernel 3x3 strides (3, 2): only 2x2 stride 2 exists"},
    {"test_convtranspose_pads", "kernel 3x3 strides (3, 2): only 2x2 stride 2 exists"},
    {"test_convtranspose_with_kernel", "kernel 3x3 strides (3, 2): only 2x2 stride 2 exists"},
    {"test_gather_1", "Gather on axis 1: embedding_forward gathers rows (axis 0)"},
    {"test_gather_2d_indices", "Gather on axis 1: embedding_forward gathers rows (axis 0)"},
    {"test_resize_downsample_scales_cubic_A_n0p5_exclude_outside",
     "cubic A = -0.5 and exclude_outside: the kernel is PyTorch's A = -0.75"},
    {"test_resize_upsample_scales_cubic_A_n0p5_exclude_outside",
     "cubic A = -0.5 and exclude_outside: the kernel is PyTorch's A = -0.75"},
    {"test_resize_downsample_scales_cubic_align_corners", "align_corners: the kernel is half_pixel"},
    {"test_resize_downsample_scales_linear_align_corners", "align_corners: the kernel is half_pixel"},
    {"test_resize_upsample_scales_cubic_align_corners", "align_corners: the kernel is half_pixel"},
    {"test_resize_upsample_scales_linear_align_corners", "align_corners: the kernel is half_pixel"},
    {"test_resize_upsample_scales_cubic_asymmetric", "asymmetric coordinates: the kernel is half_pixel"},
    {"test_resize_tf_crop_and_resize", "tf_crop_and_resize with roi: the kernel is half_pixel"},
    {"test_resize_downsample_sizes_linear_pytorch_half_pixel",
     "ONNX maps a 1-pixel output to source 0; PyTorch interpolate (and the kernel) use 1.5"},
    {"test_resize_downsample_scales_nearest", "mode nearest: the kernel is bilinear/bicubic"},
    {"test_resize_downsample_sizes_nearest", "mode nearest: the kernel is bilinear/bicubic"},
    {"test_resize_upsample_scales_nearest", "mode nearest: the kernel is bilinear/bicubic"},
    {"test_resize_upsample_sizes_nearest", "mode nearest: the kernel is bilinear/bicubic"},
    {"test_resize_upsample_sizes_nearest_ceil_half_pixel", "mode nearest: the kernel is bilinear/bicubic"},
    {"test_resize_upsample_sizes_nearest_floor_align_corners",
     "mode nearest: the kernel is bilinear/bicubic"},
    {"test_resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric",
     "mode nearest: the kernel is bilinear/bicubic"},
    {"test_sce_NCd1_mean_weight_negative_ii", "class weights: crossentropy has none"},
    {"test_sce_NCd1_mean_weight_negative_ii_log_prob", "class weights: crossentropy has none"},
    {"test_sce_NCd1d2d3_sum_weight_high_ii", "class weights: crossentropy has none"},
    {"test_sce_NCd1d2d3_sum_weight_high_ii_log_prob", "class weights: crossentropy has none"},
    {"test_sce_NCd1d2d3d4d5_mean_weight", "class weights: crossentropy has none"},
    {"test_sce_NCd1d2d3d4d5_mean_weight_log_prob", "class weights: crossentropy has none"},
    {"test_sce_mean_weight", "class weights: crossentropy has none"},
    {"test_sce_mean_weight_ii", "class weights: crossentropy has none"},
    {"test_sce_mean_weight_ii_3d", "class weights: crossentropy has none"},
    {"test_sce_mean_weight_ii_3d_log_prob", "class weights: crossentropy has none"},
    {"test_sce_mean_weight_ii_4d", "class weights: crossentropy has none"},
    {"test_sce_mean_weight_ii_4d_log_prob", "class weights: crossentropy has none"},
    {"test_sce_mean_weight_ii_log_prob", "class weights: crossentropy has none"},
    {"test_sce_mean_weight_log_prob", "class weights: crossentropy has none"},
    {"test_sce_none_weights", "class weights: crossentropy has none"},
    {"test_sce_none_weights_log_prob", "class weights: crossentropy has none"},
    {"test_softmax_axis_0", "softmax over axis 0 of 3: the kernel normalises the last axis"},
    {"test_softmax_axis_1", "softmax over axis 1 of 3: the kernel normalises the last axis"},
    {"test_transpose_all_permutations_2", "perm (1, 0, 2) is not one batched 2-D transpose"},
    {"test_transpose_all_permutations_5", "perm (2, 1, 0) is not one batched 2-D transpose"},
    {"test_transpose_default", "perm (2, 1, 0) is not one batched 2-D transpose"},
    {NULL, NULL}, /* sentinel */
};

static const char *skip_reason(const char *name) {
  for (size_t k = 0; k < G_N_ELEMENTS(skip_table); k++)
    if (skip_table[k].name && g_str_equal(skip_table[k].name, name)) return skip_table[k].reason;
  return NULL;
}

/* One case: the node, its inputs by position (NULL for an omitted optional
 * input) and the expected first output. */
typedef struct {
  const char *name;
  const onnx_node *node;
  const onnx_tensor *in[8];
  int n_in;
  const onnx_tensor *want;
  const ps_kernels *k;
  int64_t opset;
} onnx_case;

/* What a handler did: ran (out filled, same numel as want) or could not
 * express the case (why says so). */
typedef struct {
  float *out;      /* g_malloc'd, numel of want */
  float *extra[2]; /* optional outputs 1 and 2 (e.g. LayerNorm mean, rstd), or NULL */
  char *why;       /* g_strdup'd; non-NULL means "cannot express" */
  const char *missing; /* the kernel-table entry that is NULL, if any */
} case_result;

typedef case_result (*op_handler)(const onnx_case *c);

static case_result cannot(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static case_result cannot(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  case_result r = {.why = g_strdup_vprintf(fmt, ap)};
  va_end(ap);
  return r;
}

/* A table entry the op needs is NULL: a failure, not a skip. */
#define NEED(fn)                                                                \
  do {                                                                          \
    if (!c->k->fn) return (case_result){.missing = #fn};                        \
  } while (0)

static case_result ran(float *out) { return (case_result){.out = out}; }

static gboolean is_f32(const onnx_tensor *t) { return t && t->f && t->data_type == ONNX_FLOAT; }

/* ---------------------------------------------------------------- Gemm */

/* Y(M, N) = alpha * A'(M, K) @ B'(K, N) + beta * C, mapped onto
 * linear_forward(out, inp = alpha A', weight = B'^T (N, K), bias). The
 * transposes and the alpha scaling happen here; a vector / scalar C becomes
 * the bias (times beta); a matrix C (M, N) or column C (M, 1) is added here
 * after a bias-free linear, since the kernel's bias is per output column. */
static case_result run_gemm(const onnx_case *c) {
  NEED(linear_forward);
  const onnx_tensor *A = c->in[0], *B = c->in[1], *C = c->n_in > 2 ? c->in[2] : NULL;
  if (!is_f32(A) || !is_f32(B) || (C && !is_f32(C))) return cannot("non-f32 inputs");
  if (A->ndim != 2 || B->ndim != 2) return cannot("A, B must be 2-D");
  int64_t transA = onnx_attr_int(c->node, "transA", 0);
  int64_t transB = onnx_attr_int(c->node, "transB", 0);
  float alpha = onnx_attr_float(c->node, "alpha", 1.0f);
  float beta = onnx_attr_float(c->node, "beta", 1.0f);
  int64_t M = transA ? A->dims[1] : A->dims[0], K = transA ? A->dims[0] : A->dims[1];
  int64_t KB = transB ? B->dims[1] : B->dims[0], N = transB ? B->dims[0] : B->dims[1];
  if (K != KB) return cannot("inner dimensions differ");
  if (c->want->numel != M * N) return cannot("output size mismatch");

  g_autofree float *inp = g_new(float, M * K); /* (M, K) */
  g_autofree float *w = g_new(float, N * K);   /* (N, K) */
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++)
      inp[m * K + k] = alpha * (transA ? A->f[k * M + m] : A->f[m * K + k]);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) w[n * K + k] = transB ? B->f[n * K + k] : B->f[k * N + n];

  g_autofree float *bias = NULL; /* (N) */
  gboolean matrix_c = FALSE;
  if (C) {
    if (C->numel == 1 || (C->numel == N && C->dims[C->ndim - 1] == N)) {
      bias = g_new(float, N);
      for (int64_t n = 0; n < N; n++) bias[n] = beta * C->f[C->numel == 1 ? 0 : n];
    } else if (C->numel == M * N || (C->numel == M && C->ndim == 2 && C->dims[1] == 1)) {
      matrix_c = TRUE;
    } else {
      return cannot("C of %" G_GINT64_FORMAT " elements does not broadcast", C->numel);
    }
  }
  float *out = g_new(float, M * N);
  c->k->linear_forward(out, inp, w, bias, M, K, N);
  if (matrix_c)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++)
        out[m * N + n] += beta * C->f[C->numel == M * N ? m * N + n : m];
  return ran(out);
}

/* -------------------------------------------------------------- MatMul */

/* Y(..., M, N) = A(..., M, K) @ B(..., K, N) with equal batch dims, or a 2-D
 * B shared by every batch (batch stride 0): one bmm_forward. */
static case_result run_matmul(const onnx_case *c) {
  NEED(bmm_forward);
  const onnx_tensor *A = c->in[0], *B = c->in[1];
  if (!is_f32(A) || !is_f32(B)) return cannot("non-f32 inputs");
  if (A->ndim < 2 || B->ndim < 2) return cannot("1-D operands");
  int64_t M = A->dims[A->ndim - 2], K = A->dims[A->ndim - 1];
  int64_t KB = B->dims[B->ndim - 2], N = B->dims[B->ndim - 1];
  if (K != KB) return cannot("inner dimensions differ");
  int64_t batch = A->numel / (M * K), bbatch = B->numel / (K * N);
  if (bbatch != 1 && bbatch != batch) return cannot("broadcast batch dimensions");
  if (c->want->numel != batch * M * N) return cannot("output size mismatch");
  float *out = g_new(float, batch * M * N);
  c->k->bmm_forward(out, A->f, B->f, batch, M, N, K, 0, M * K, bbatch == 1 ? 0 : K * N);
  return ran(out);
}

/* ---------------------------------------------------------------- Conv */

/* 2-D, group 1, no dilation, equal strides, the same padding on all four
 * sides (explicit or from auto_pad SAME_*), optional bias. */
static case_result run_conv(const onnx_case *c) {
  NEED(conv2d_forward);
  NEED(conv2d_scratch);
  const onnx_tensor *X = c->in[0], *W = c->in[1], *b = c->n_in > 2 ? c->in[2] : NULL;
  if (!is_f32(X) || !is_f32(W) || (b && !is_f32(b))) return cannot("non-f32 inputs");
  if (X->ndim != 4 || W->ndim != 4) return cannot("not 2-D");
  if (onnx_attr_int(c->node, "group", 1) != 1) return cannot("grouped convolution");
  guint n;
  const int64_t *dil = onnx_attr_ints(c->node, "dilations", &n);
  for (guint i = 0; i < n; i++)
    if (dil[i] != 1) return cannot("dilation");
  const int64_t *st = onnx_attr_ints(c->node, "strides", &n);
  int64_t stride = n ? st[0] : 1;
  for (guint i = 0; i < n; i++)
    if (st[i] != stride) return cannot("different strides per axis");
  ps_conv2d_desc d = {.B = X->dims[0], .C = X->dims[1], .H = X->dims[2], .W = X->dims[3],
                      .OC = W->dims[0], .KH = W->dims[2], .KW = W->dims[3], .stride = stride};
  if (W->dims[1] != d.C) return cannot("channel mismatch");
  const char *autopad = onnx_attr_string(c->node, "auto_pad", "NOTSET");
  int64_t pads[4] = {0, 0, 0, 0};
  if (g_str_equal(autopad, "SAME_UPPER") || g_str_equal(autopad, "SAME_LOWER")) {
    int64_t in[2] = {d.H, d.W}, k[2] = {d.KH, d.KW};
    for (int a = 0; a < 2; a++) {
      int64_t out = (in[a] + stride - 1) / stride;
      int64_t total = MAX(0, (out - 1) * stride + k[a] - in[a]);
      int64_t small = total / 2, big = total - small;
      gboolean upper = g_str_equal(autopad, "SAME_UPPER");
      pads[a] = upper ? small : big;
      pads[a + 2] = upper ? big : small;
    }
  } else if (g_str_equal(autopad, "NOTSET")) {
    const int64_t *p = onnx_attr_ints(c->node, "pads", &n);
    if (n == 4) memcpy(pads, p, sizeof pads);
    else if (n) return cannot("pads of length %u", n);
  } else {
    return cannot("auto_pad %s", autopad);
  }
  for (int i = 1; i < 4; i++)
    if (pads[i] != pads[0]) return cannot("asymmetric padding");
  d.pad = pads[0];
  int64_t OH = (d.H + 2 * d.pad - d.KH) / d.stride + 1, OW = (d.W + 2 * d.pad - d.KW) / d.stride + 1;
  if (c->want->numel != d.B * d.OC * OH * OW) return cannot("output size mismatch");
  int64_t sf = c->k->conv2d_scratch(&d);
  g_autofree float *scratch = g_new0(float, MAX(sf, 1));
  float *out = g_new(float, c->want->numel);
  c->k->conv2d_forward(out, X->f, W->f, b ? b->f : NULL, &d, scratch, sf);
  return ran(out);
}

/* ------------------------------------------------------- ConvTranspose */

/* Only the SAM upscaler's form: kernel 2x2, stride 2, no padding, group 1. */
static case_result run_convtranspose(const onnx_case *c) {
  NEED(convt2x2_forward);
  NEED(convt2x2_scratch);
  const onnx_tensor *X = c->in[0], *W = c->in[1], *b = c->n_in > 2 ? c->in[2] : NULL;
  if (!is_f32(X) || !is_f32(W) || (b && !is_f32(b))) return cannot("non-f32 inputs");
  if (X->ndim != 4 || W->ndim != 4) return cannot("not 2-D");
  if (W->dims[2] != 2 || W->dims[3] != 2) return cannot("kernel is not 2x2");
  if (onnx_attr_int(c->node, "group", 1) != 1) return cannot("grouped");
  guint n;
  const int64_t *st = onnx_attr_ints(c->node, "strides", &n);
  if (n != 2 || st[0] != 2 || st[1] != 2) return cannot("stride is not 2");
  const char *attrs[] = {"pads", "output_padding", "output_shape", "dilations"};
  for (size_t a = 0; a < G_N_ELEMENTS(attrs); a++) {
    const int64_t *v = onnx_attr_ints(c->node, attrs[a], &n);
    for (guint i = 0; i < n; i++)
      if (v[i] != (g_str_equal(attrs[a], "dilations") ? 1 : 0)) return cannot("%s", attrs[a]);
  }
  int64_t B = X->dims[0], C = X->dims[1], H = X->dims[2], Wd = X->dims[3], OC = W->dims[1];
  if (c->want->numel != B * OC * 4 * H * Wd) return cannot("output size mismatch");
  int64_t sf = c->k->convt2x2_scratch(B, C, H, Wd, OC);
  g_autofree float *scratch = g_new0(float, MAX(sf, 1));
  float *out = g_new(float, c->want->numel);
  c->k->convt2x2_forward(out, X->f, W->f, b ? b->f : NULL, B, C, H, Wd, OC, scratch, sf);
  return ran(out);
}

/* -------------------------------------------------- LayerNormalization */

/* Normalising over axes [axis, ndim) of a row-major tensor is the last-dim
 * layernorm of its (prod(dims[:axis]), prod(dims[axis:])) reshape, with the
 * scale and bias flattened the same way, so every axis maps. Mean and
 * InvStdDev (outputs 1 and 2) are compared too. */
static case_result run_layernorm(const onnx_case *c) {
  NEED(layernorm_forward);
  const onnx_tensor *X = c->in[0], *S = c->in[1], *B = c->n_in > 2 ? c->in[2] : NULL;
  if (!is_f32(X) || !is_f32(S) || (B && !is_f32(B))) return cannot("non-f32 inputs");
  int64_t axis = onnx_attr_int(c->node, "axis", -1);
  if (axis < 0) axis += X->ndim;
  if (axis < 0 || axis >= X->ndim) return cannot("axis out of range");
  if (onnx_attr_int(c->node, "stash_type", 1) != 1) return cannot("stash_type");
  int64_t N = 1, C = 1;
  for (int i = 0; i < X->ndim; i++) *(i < axis ? &N : &C) *= X->dims[i];
  if (S->numel != C || (B && B->numel != C)) return cannot("broadcast scale / bias");
  float eps = onnx_attr_float(c->node, "epsilon", 1e-5f);
  case_result r = ran(g_new(float, N * C));
  r.extra[0] = g_new(float, N);
  r.extra[1] = g_new(float, N);
  c->k->layernorm_forward(r.out, r.extra[0], r.extra[1], X->f, S->f, B ? B->f : NULL, N, C, eps);
  return r;
}

/* ------------------------------------------------------------- Softmax */

/* Opset >= 13: softmax over one axis, which must be the last. Opset < 13:
 * over the flattened dims [axis, ndim), which is the last dim of a reshape. */
static case_result run_softmax(const onnx_case *c, int64_t opset) {
  NEED(softmax_forward);
  const onnx_tensor *X = c->in[0];
  if (!is_f32(X)) return cannot("non-f32 input");
  int64_t axis = onnx_attr_int(c->node, "axis", opset >= 13 ? -1 : 1);
  if (axis < 0) axis += X->ndim;
  if (opset >= 13 && axis != X->ndim - 1) return cannot("softmax over a non-last axis");
  int64_t N = 1, C = 1;
  for (int i = 0; i < X->ndim; i++) *(i < axis ? &N : &C) *= X->dims[i];
  float *out = g_new(float, N * C);
  c->k->softmax_forward(out, X->f, N, C);
  return ran(out);
}

static case_result run_softmax_any(const onnx_case *c) { return run_softmax(c, c->opset); }

/* -------------------------------------------------------------- Resize */

/* linear / cubic on the last two dims of an (N, C, H, W) tensor, half_pixel
 * coordinates (PyTorch align_corners=False), cubic A = -0.75, no
 * exclude_outside, no antialias, scales or sizes (no roi). */
static case_result run_resize(const onnx_case *c) {
  NEED(resize_forward);
  const onnx_tensor *X = c->in[0];
  const onnx_tensor *roi = c->n_in > 1 ? c->in[1] : NULL;
  const onnx_tensor *scales = c->n_in > 2 ? c->in[2] : NULL;
  const onnx_tensor *sizes = c->n_in > 3 ? c->in[3] : NULL;
  if (!is_f32(X) || X->ndim != 4) return cannot("not a 4-D f32 input");
  const char *mode = onnx_attr_string(c->node, "mode", "nearest");
  ps_resize_mode m;
  if (g_str_equal(mode, "linear")) m = PS_RESIZE_BILINEAR;
  else if (g_str_equal(mode, "cubic")) m = PS_RESIZE_BICUBIC;
  else return cannot("mode %s", mode);
  const char *ctm = onnx_attr_string(c->node, "coordinate_transformation_mode", "half_pixel");
  if (!g_str_equal(ctm, "half_pixel") && !g_str_equal(ctm, "pytorch_half_pixel"))
    return cannot("coordinate_transformation_mode %s", ctm);
  if (m == PS_RESIZE_BICUBIC && onnx_attr_float(c->node, "cubic_coeff_a", -0.75f) != -0.75f)
    return cannot("cubic_coeff_a is not -0.75");
  if (onnx_attr_int(c->node, "exclude_outside", 0)) return cannot("exclude_outside");
  if (onnx_attr_int(c->node, "antialias", 0)) return cannot("antialias");
  if (roi && roi->numel) return cannot("roi");
  int64_t NC = X->dims[0] * X->dims[1], H = X->dims[2], W = X->dims[3], OH, OW;
  float sh = 0.0f, sw = 0.0f; /* input pixels per output pixel; <= 0: H/OH */
  if (scales && scales->numel) {
    if (!scales->f || scales->numel != 4 || scales->f[0] != 1 || scales->f[1] != 1)
      return cannot("scales on N or C");
    OH = (int64_t)floor(H * (double)scales->f[2]);
    OW = (int64_t)floor(W * (double)scales->f[3]);
    sh = 1.0f / scales->f[2];
    sw = 1.0f / scales->f[3];
  } else if (sizes && sizes->i && sizes->numel == 4) {
    if (sizes->i[0] != X->dims[0] || sizes->i[1] != X->dims[1]) return cannot("sizes on N or C");
    OH = sizes->i[2];
    OW = sizes->i[3];
  } else {
    return cannot("neither scales nor sizes");
  }
  /* ONNX's pytorch_half_pixel maps a 1-pixel output to source 0; PyTorch's
   * interpolate (which the kernel follows) and half_pixel do not. */
  if (g_str_equal(ctm, "pytorch_half_pixel") && (OH == 1 || OW == 1))
    return cannot("pytorch_half_pixel with a 1-pixel output");
  if (c->want->numel != NC * OH * OW) return cannot("output size mismatch");
  float *out = g_new(float, NC * OH * OW);
  c->k->resize_forward(out, X->f, NC, H, W, OH, OW, sh, sw, m);
  return ran(out);
}

/* ------------------------------------------------------- elementwise */

static case_result run_relu(const onnx_case *c) {
  NEED(relu_forward);
  if (!is_f32(c->in[0])) return cannot("non-f32 input");
  float *out = g_new(float, c->in[0]->numel);
  c->k->relu_forward(out, c->in[0]->f, c->in[0]->numel);
  return ran(out);
}

/* Add / Mul of two same-shape tensors (broadcasting is not in the kernels). */
static case_result run_binary(const onnx_case *c, gboolean mul) {
  if (mul) NEED(mul_forward);
  else NEED(add_forward);
  const onnx_tensor *a = c->in[0], *b = c->in[1];
  if (!is_f32(a) || !is_f32(b)) return cannot("non-f32 inputs");
  if (a->ndim != b->ndim || memcmp(a->dims, b->dims, sizeof(int64_t) * a->ndim))
    return cannot("broadcasting");
  float *out = g_new(float, a->numel);
  (mul ? c->k->mul_forward : c->k->add_forward)(out, a->f, b->f, a->numel);
  return ran(out);
}
static case_result run_add(const onnx_case *c) { return run_binary(c, FALSE); }
static case_result run_mul(const onnx_case *c) { return run_binary(c, TRUE); }

/* ----------------------------------------------------------- Transpose */

/* A permutation that keeps a prefix [0, a) and rotates the rest, i.e. perm =
 * [0..a) ++ [b..n) ++ [a..b), is the batched 2-D transpose of
 * (prod dims[:a], prod dims[a:b], prod dims[b:]). */
static case_result run_transpose(const onnx_case *c) {
  NEED(transpose_forward);
  const onnx_tensor *X = c->in[0];
  if (!is_f32(X)) return cannot("non-f32 input");
  int n = X->ndim;
  int64_t perm[ONNX_MAX_DIMS];
  guint np;
  const int64_t *p = onnx_attr_ints(c->node, "perm", &np);
  for (int i = 0; i < n; i++) perm[i] = np ? p[i] : n - 1 - i;
  if (np && (int)np != n) return cannot("perm length");
  int a = 0;
  while (a < n && perm[a] == a) a++;
  if (a == n) a = n - 1; /* identity: a 1 x 1 transpose of each element... */
  int b = (int)perm[a];
  for (int i = a; i < n; i++) {
    int64_t expect = i < a + (n - b) ? b + (i - a) : a + (i - a - (n - b));
    if (perm[i] != expect) return cannot("permutation is not a batched 2-D transpose");
  }
  int64_t Bt = 1, M = 1, N = 1;
  for (int i = 0; i < n; i++) *(i < a ? &Bt : i < b ? &M : &N) *= X->dims[i];
  float *out = g_new(float, X->numel);
  c->k->transpose_forward(out, X->f, Bt, M, N);
  return ran(out);
}

/* -------------------------------------------------------------- Gather */

/* Gather on axis 0 is an embedding lookup: table (V, C) with C =
 * prod(dims[1:]). Negative indices count from the end in ONNX; normalising
 * them is the caller's job for the kernel (it documents ids in [0, V)). */
static case_result run_gather(const onnx_case *c) {
  NEED(embedding_forward);
  const onnx_tensor *D = c->in[0], *I = c->in[1];
  if (!is_f32(D) || !I || !I->i) return cannot("non-f32 data or non-integer indices");
  if (onnx_attr_int(c->node, "axis", 0) != 0) return cannot("axis is not 0");
  int64_t V = D->dims[0], C = D->numel / MAX(V, 1), N = I->numel;
  g_autofree int32_t *ids = g_new(int32_t, MAX(N, 1));
  for (int64_t k = 0; k < N; k++) ids[k] = (int32_t)(I->i[k] < 0 ? I->i[k] + V : I->i[k]);
  if (c->want->numel != N * C) return cannot("output size mismatch");
  float *out = g_new(float, N * C);
  c->k->embedding_forward(out, ids, D->f, N, V, C);
  return ran(out);
}

/* --------------------------------------------- SoftmaxCrossEntropyLoss */

/* scores (N, C) or (N, C, d1, ...), labels (N) or (N, d1, ...); no class
 * weights. The (N, C, D) form is transposed here into (N*D, C) rows. */
static case_result run_sce(const onnx_case *c) {
  NEED(crossentropy);
  const onnx_tensor *X = c->in[0], *Y = c->in[1], *Wt = c->n_in > 2 ? c->in[2] : NULL;
  if (!is_f32(X) || !Y || !Y->i) return cannot("non-f32 scores or non-integer labels");
  if (Wt) return cannot("class weights");
  const char *red = onnx_attr_string(c->node, "reduction", "mean");
  int64_t N = X->dims[0], C = X->dims[1], D = X->numel / MAX(N * C, 1), R = N * D;
  g_autofree float *logits = g_new(float, MAX(R * C, 1)); /* (N*D, C) */
  g_autofree int32_t *targets = g_new(int32_t, MAX(R, 1));
  for (int64_t n = 0; n < N; n++)
    for (int64_t ch = 0; ch < C; ch++)
      for (int64_t d = 0; d < D; d++) logits[(n * D + d) * C + ch] = X->f[(n * C + ch) * D + d];
  for (int64_t r = 0; r < R; r++) targets[r] = (int32_t)Y->i[r];
  const onnx_attr *ii = onnx_node_attr(c->node, "ignore_index");
  /* No ignore_index: every label counts; INT32_MIN never equals one. */
  int32_t ignore = ii ? (int32_t)ii->i : INT32_MIN;
  if (g_str_equal(red, "none")) {
    if (c->want->numel != R) return cannot("output size mismatch");
    float *out = g_new(float, R);
    c->k->crossentropy(NULL, out, logits, targets, R, C, ignore, 1.0f, 1.0f);
    return ran(out);
  }
  if (!g_str_equal(red, "mean") && !g_str_equal(red, "sum")) return cannot("reduction %s", red);
  float *out = g_new(float, 1);
  out[0] = c->k->crossentropy(NULL, NULL, logits, targets, R, C, ignore,
                              g_str_equal(red, "sum") ? 1.0f : 0.0f, 1.0f);
  return ran(out);
}

/* ------------------------------------------------------------ the ops */

static const struct {
  const char *op_type;
  op_handler run;
} handlers[] = {
    {"Gemm", run_gemm},
    {"MatMul", run_matmul},
    {"Conv", run_conv},
    {"ConvTranspose", run_convtranspose},
    {"LayerNormalization", run_layernorm},
    {"Softmax", run_softmax_any},
    {"Resize", run_resize},
    {"Relu", run_relu},
    {"Add", run_add},
    {"Mul", run_mul},
    {"Transpose", run_transpose},
    {"Gather", run_gather},
    {"SoftmaxCrossEntropyLoss", run_sce},
};

static op_handler find_handler(const char *op_type) {
  for (size_t k = 0; k < G_N_ELEMENTS(handlers); k++)
    if (g_str_equal(handlers[k].op_type, op_type)) return handlers[k].run;
  return NULL;
}

typedef struct {
  int ran, passed, skipped, failed, missing, not_covered;
} summary;

/* Compares got with want; returns the max abs error (NaN if any is NaN). */
static gboolean compare(const float *got, const onnx_tensor *want, double *max_err) {
  gboolean ok = want->f != NULL;
  *max_err = 0.0;
  for (int64_t i = 0; ok && i < want->numel; i++) {
    double d = fabs((double)got[i] - want->f[i]);
    if (!(d <= TOL + TOL * fabs(want->f[i]))) ok = FALSE;
    if (!(d <= *max_err)) *max_err = d; /* NaN propagates */
  }
  return ok;
}

/* Loads and runs one case directory. */
static void run_case(const char *dir, const char *name, const ps_kernels *k, summary *s) {
  GError *err = NULL;
  g_autofree char *model_path = g_build_filename(dir, name, "model.onnx", NULL);
  g_autoptr(onnx_model) m = onnx_model_load(model_path, &err);
  if (!m) {
    PS_CHECK_MSG(m != NULL, "%s", err->message);
    g_clear_error(&err);
    s->failed++;
    return;
  }
  const onnx_node *node = m->nodes->len == 1 ? g_ptr_array_index(m->nodes, 0) : NULL;
  op_handler run = node && (!node->domain || !*node->domain) ? find_handler(node->op_type) : NULL;
  if (!run) {
    s->not_covered++;
    return;
  }
  const char *reason = skip_reason(name);

  /* The graph's inputs are input_0.pb, input_1.pb, ... in order; bind them to
   * the node's inputs by name (an omitted optional input is ""). */
  g_autoptr(GPtrArray) loaded = g_ptr_array_new_with_free_func((GDestroyNotify)onnx_tensor_free);
  for (guint i = 0; i < m->inputs->len; i++) {
    g_autofree char *fn = g_strdup_printf("input_%u.pb", i);
    g_autofree char *path = g_build_filename(dir, name, "test_data_set_0", fn, NULL);
    onnx_tensor *t = onnx_tensor_load(path, &err);
    if (!t) {
      PS_CHECK_MSG(t != NULL, "%s", err->message);
      g_clear_error(&err);
      s->failed++;
      return;
    }
    g_ptr_array_add(loaded, t);
  }
  g_autofree char *out_path = g_build_filename(dir, name, "test_data_set_0", "output_0.pb", NULL);
  g_autoptr(onnx_tensor) want = onnx_tensor_load(out_path, &err);
  if (!want) {
    PS_CHECK_MSG(want != NULL, "%s", err->message);
    g_clear_error(&err);
    s->failed++;
    return;
  }
  onnx_case c = {.name = name, .node = node, .want = want, .k = k, .opset = m->opset};
  c.n_in = (int)MIN(node->inputs->len, G_N_ELEMENTS(c.in));
  for (int i = 0; i < c.n_in; i++) {
    const char *in_name = g_ptr_array_index(node->inputs, i);
    for (guint g = 0; g < m->inputs->len && *in_name; g++)
      if (g_str_equal(g_ptr_array_index(m->inputs, g), in_name)) c.in[i] = g_ptr_array_index(loaded, g);
    for (guint g = 0; g < m->initializers->len && *in_name && !c.in[i]; g++) {
      const onnx_tensor *t = g_ptr_array_index(m->initializers, g);
      if (t->name && g_str_equal(t->name, in_name)) c.in[i] = t;
    }
  }

  case_result r = run(&c);
  if (r.missing) {
    printf("  MISS %-58s the CPU table has no %s\n", name, r.missing);
    PS_CHECK_MSG(FALSE, "%s: kernel table entry %s is NULL", name, r.missing);
    s->missing++;
    return;
  }
  if (r.why) {
    if (reason) {
      printf("  SKIP %-58s %s\n", name, reason);
      s->skipped++;
    } else {
      PS_CHECK_MSG(FALSE, "%s: cannot express (%s) and not in skip_table", name, r.why);
      s->failed++;
    }
    g_free(r.why);
    return;
  }
  s->ran++;
  double max_err = 0.0;
  gboolean ok = compare(r.out, want, &max_err);
  /* Extra outputs (LayerNorm's Mean and InvStdDev) when the data has them. */
  for (int e = 0; e < 2; e++) {
    if (!r.extra[e]) continue;
    g_autofree char *fn = g_strdup_printf("output_%d.pb", e + 1);
    g_autofree char *path = g_build_filename(dir, name, "test_data_set_0", fn, NULL);
    if (!g_file_test(path, G_FILE_TEST_EXISTS)) continue;
    g_autoptr(onnx_tensor) w = onnx_tensor_load(path, &err);
    PS_CHECK_OK(w != NULL, err);
    double e_err = 0.0;
    if (w && !compare(r.extra[e], w, &e_err)) ok = FALSE;
    if (!(e_err <= max_err)) max_err = e_err;
  }
  printf("  %s %-58s max|err| %.3g\n", ok ? "ok  " : "FAIL", name, max_err);
  PS_CHECK_MSG(ok, "%s: max error %.3g over tolerance", name, max_err);
  PS_CHECK_MSG(!reason, "%s runs but is listed in skip_table (%s): remove it", name,
               reason ? reason : "");
  if (ok) s->passed++;
  else s->failed++;
  g_free(r.out);
  g_free(r.extra[0]);
  g_free(r.extra[1]);
}

static gint cmp_str(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : g_getenv("PATHSEG_ONNX_DATA");
  if (!dir) dir = DEFAULT_DATA_DIR;
  const char *only = argc > 2 ? argv[2] : NULL;

  GError *err = NULL;
  g_autoptr(GDir) d = g_dir_open(dir, 0, &err);
  if (!d) {
    fprintf(stderr,
            "test_onnx: the ONNX test data is missing (%s): run tools/install-deps.sh "
            "(Debian package libonnx-testdata)\n",
            err->message);
    g_clear_error(&err);
    return 1;
  }
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, &err);
  PS_CHECK_OK(k != NULL, err);
  if (!k) return ps_test_finish();

  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  for (const char *e; (e = g_dir_read_name(d));)
    if (g_str_has_prefix(e, "test_") && (!only || strstr(e, only)))
      g_ptr_array_add(names, g_strdup(e));
  g_ptr_array_sort(names, cmp_str);

  summary s = {0};
  for (guint i = 0; i < names->len; i++) run_case(dir, g_ptr_array_index(names, i), k, &s);

  printf("onnx: %d cases run (%d passed, %d failed), %d skipped (listed in skip_table), "
         "%d with a kernel missing from the table, %d cases of ops the kernels do not cover\n",
         s.ran, s.passed, s.failed, s.skipped, s.missing, s.not_covered);
  /* The data set has hundreds of covered cases; running none means the walk broke. */
  PS_CHECK_MSG(only || s.ran >= 10, "only %d cases ran", s.ran);
  return ps_test_finish();
}
