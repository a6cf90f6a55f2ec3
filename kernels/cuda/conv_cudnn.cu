/* conv_cudnn.cu — conv2d forward and backward through cuDNN (legacy
 * convolution API), used by conv.cu when the library was configured with
 * cuDNN (PS_HAVE_CUDNN) and cuDNN works at run time; otherwise, and for any
 * shape cuDNN cannot take within the caller's scratch, conv.cu runs its own
 * im2col + SGEMM kernels.
 *
 * What keeps it equivalent to the own kernels (and the CPU):
 *  - FP32 data with CUDNN_FMA_MATH: no TF32 tensor-core math, so results
 *    stay within the f32 bound of 1e-5.
 *  - Only algorithms cuDNN reports as deterministic, and only those whose
 *    workspace fits in the scratch the caller already provides for the own
 *    kernels (conv2d_scratch): ops allocate no device memory.
 *  - Backward adds (beta = 1) into dinp, dweight and dbias, as the table says.
 *
 * PATHSEG_NO_CUDNN=1 in the environment switches cuDNN off (read on every
 * call, so bench/gpu_check can check both paths in one run);
 * PATHSEG_CUDNN_LOG=1 prints the first algorithm choices to stderr. cuDNN 9 loads
 * its engine sub-libraries lazily: if creating the handle or querying the
 * algorithms fails, cuDNN is switched off for the process with one message,
 * and the own kernels serve. Failures while running a chosen algorithm are
 * device errors and abort, like every other CUDA error here. */
#ifdef PS_HAVE_CUDNN

#include <cudnn.h>
#include <limits.h>

#include <mutex>

#include "common.cuh"
#include "conv_cudnn.cuh"

#define PS_CUDNN_CHECK(call)                                                             \
  do {                                                                                   \
    cudnnStatus_t s_ = (call);                                                           \
    if (s_ != CUDNN_STATUS_SUCCESS) {                                                    \
      fprintf(stderr, "pathseg-cuda: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,        \
              cudnnGetErrorString(s_));                                                  \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

static cudnnHandle_t g_cudnn = nullptr;
static bool g_cudnn_broken = false; /* set once cuDNN failed to start: never retried */

static void cudnn_give_up(const char *what, cudnnStatus_t s) {
  fprintf(stderr, "pathseg-cuda: cuDNN unusable (%s: %s); using the own conv2d kernels\n", what,
          cudnnGetErrorString(s));
  g_cudnn_broken = true;
}

static cudnnHandle_t cudnn_handle(void) {
  static std::once_flag once;
  std::call_once(once, [] {
    cudnnStatus_t s = cudnnCreate(&g_cudnn);
    if (s != CUDNN_STATUS_SUCCESS) {
      g_cudnn = nullptr;
      cudnn_give_up("cudnnCreate", s);
    }
  });
  return g_cudnn_broken ? nullptr : g_cudnn;
}

static bool cudnn_wanted(void) {
  const char *off = getenv("PATHSEG_NO_CUDNN");
  return !(off && *off && strcmp(off, "0") != 0);
}

/* PATHSEG_CUDNN_LOG set: log the first 32 algorithm choices (benchmarks
 * repeat the same calls; a few lines are enough to see what cuDNN picked). */
static bool cudnn_log(void) {
  static int lines = 0;
  const char *v = getenv("PATHSEG_CUDNN_LOG");
  return v && *v && strcmp(v, "0") != 0 && lines++ < 32;
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* The descriptors of one convolution, destroyed with it. */
struct conv_descs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, b = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool ok = false;

  explicit conv_descs(const ps_conv2d_desc *d) {
    int64_t OH = (d->H + 2 * d->pad - d->KH) / d->stride + 1;
    int64_t OW = (d->W + 2 * d->pad - d->KW) / d->stride + 1;
    int64_t dims[] = {d->B, d->C, d->H, d->W, d->OC, d->KH, d->KW, d->stride, d->pad, OH, OW,
                      d->B * d->C * d->H * d->W, d->B * d->OC * OH * OW};
    for (int64_t v : dims)
      if (!fits_int(v)) return; /* cuDNN sizes are int: the own kernels take it */
    if (OH <= 0 || OW <= 0 || d->stride <= 0) return;
    PS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    PS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    PS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&b));
    PS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    PS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    PS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)d->B,
                                              (int)d->C, (int)d->H, (int)d->W));
    PS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)d->OC,
                                              (int)d->C, (int)d->KH, (int)d->KW));
    PS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, (int)d->pad, (int)d->pad, (int)d->stride,
                                                   (int)d->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    PS_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH));
    int n = 0, c = 0, h = 0, wd = 0;
    PS_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd));
    if (n != d->B || c != d->OC || h != OH || wd != OW) {
      fprintf(stderr, "pathseg-cuda: cuDNN output %dx%dx%dx%d differs from %lldx%lldx%lldx%lld\n",
              n, c, h, wd, (long long)d->B, (long long)d->OC, (long long)OH, (long long)OW);
      abort();
    }
    PS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, wd));
    PS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c, 1, 1));
    ok = true;
  }
  ~conv_descs() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (b) cudnnDestroyTensorDescriptor(b);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  conv_descs(const conv_descs &) = delete;
  conv_descs &operator=(const conv_descs &) = delete;
};

/* The first (fastest by cuDNN's heuristics) algorithm that is deterministic,
 * uses FMA math and fits in `bytes` of workspace; false if none (or if the
 * query fails, which switches cuDNN off). Perf is one of cuDNN's *Perf_t. */
template <typename Perf>
static bool pick(const Perf *perf, int n, size_t bytes, const char *op, int *algo,
                 cudnnMathType_t *math) {
  for (int i = 0; i < n; i++) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (perf[i].determinism != CUDNN_DETERMINISTIC) continue;
    if (perf[i].mathType != CUDNN_FMA_MATH) continue;
    if (perf[i].memory > bytes) continue;
    *algo = (int)perf[i].algo;
    *math = perf[i].mathType;
    if (cudnn_log())
      fprintf(stderr, "pathseg-cuda: cuDNN %s: algorithm %d, workspace %zu of %zu bytes\n", op,
              *algo, perf[i].memory, bytes);
    return true;
  }
  if (cudnn_log()) fprintf(stderr, "pathseg-cuda: cuDNN %s: no algorithm fits, own kernels\n", op);
  return false;
}

bool ps_cudnn_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                             const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats) {
  if (!cudnn_wanted()) return false;
  cudnnHandle_t h = cudnn_handle();
  if (!h) return false;
  conv_descs c(d);
  if (!c.ok) return false;
  size_t bytes = scratch ? (size_t)scratch_floats * sizeof(float) : 0;
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int n = 0;
  cudnnStatus_t s = cudnnGetConvolutionForwardAlgorithm_v7(h, c.x, c.w, c.conv, c.y,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf);
  if (s != CUDNN_STATUS_SUCCESS) {
    cudnn_give_up("cudnnGetConvolutionForwardAlgorithm_v7", s);
    return false;
  }
  int algo;
  cudnnMathType_t math;
  if (!pick(perf, n, bytes, "conv2d forward", &algo, &math)) return false;
  PS_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, math));
  const float one = 1.0f, zero = 0.0f;
  PS_CUDNN_CHECK(cudnnConvolutionForward(h, &one, c.x, inp, c.w, weight, c.conv,
                                         (cudnnConvolutionFwdAlgo_t)algo, bytes ? scratch : nullptr,
                                         bytes, &zero, c.y, out));
  if (bias) PS_CUDNN_CHECK(cudnnAddTensor(h, &one, c.b, bias, &one, c.y, out));
  return true;
}

bool ps_cudnn_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const ps_conv2d_desc *d,
                              float *scratch, int64_t scratch_floats) {
  if (!cudnn_wanted()) return false;
  cudnnHandle_t h = cudnn_handle();
  if (!h) return false;
  conv_descs c(d);
  if (!c.ok) return false;
  size_t bytes = scratch ? (size_t)scratch_floats * sizeof(float) : 0;
  /* Choose both algorithms before running anything, so that a shape cuDNN
   * cannot take falls back whole (no half-applied gradient). */
  int algo_d = 0, algo_w = 0;
  cudnnMathType_t math_d = CUDNN_FMA_MATH, math_w = CUDNN_FMA_MATH;
  int n = 0;
  cudnnStatus_t s;
  if (dinp) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    s = cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c.w, c.y, c.conv, c.x,
                                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf);
    if (s != CUDNN_STATUS_SUCCESS) {
      cudnn_give_up("cudnnGetConvolutionBackwardDataAlgorithm_v7", s);
      return false;
    }
    if (!pick(perf, n, bytes, "conv2d backward data", &algo_d, &math_d)) return false;
  }
  if (dweight) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    s = cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, c.x, c.y, c.conv, c.w,
                                                      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n,
                                                      perf);
    if (s != CUDNN_STATUS_SUCCESS) {
      cudnn_give_up("cudnnGetConvolutionBackwardFilterAlgorithm_v7", s);
      return false;
    }
    if (!pick(perf, n, bytes, "conv2d backward filter", &algo_w, &math_w)) return false;
  }
  const float one = 1.0f;
  if (dinp) {
    PS_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, math_d));
    PS_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, c.w, weight, c.y, dout, c.conv,
                                                (cudnnConvolutionBwdDataAlgo_t)algo_d,
                                                bytes ? scratch : nullptr, bytes, &one, c.x, dinp));
  }
  if (dweight) {
    PS_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, math_w));
    PS_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, c.x, inp, c.y, dout, c.conv,
                                                  (cudnnConvolutionBwdFilterAlgo_t)algo_w,
                                                  bytes ? scratch : nullptr, bytes, &one, c.w,
                                                  dweight));
  }
  if (dbias) PS_CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &one, c.y, dout, &one, c.b, dbias));
  return true;
}

#endif /* PS_HAVE_CUDNN */
