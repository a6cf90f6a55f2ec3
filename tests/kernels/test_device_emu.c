/* test_device_emu.c — the kernel table's memory and optimizer entries
 * (kernels.h, ABI 1.2), device tensors (tensor.h) and the CUDA emulator
 * (kernels/emu) that lets the CUDA code paths run in this test suite:
 *  - the CPU table's AdamW, squared sum, finiteness scan and bf16
 *    conversions against double-precision / bitwise references;
 *  - the emulator's table gives the CPU table's results bit for bit;
 *  - the emulator catches what would be wrong on a GPU: the host reading
 *    device memory (SIGSEGV) and a host pointer given to a kernel (abort);
 *  - device tensors: new_on, ensure_on, copy_into in every direction,
 *    ps_tensor_copy / to_f32 from the device, safetensors from the device. */
#include <math.h>
#include <pathseg/kernels.h>
#include <pathseg/safetensors.h>
#include <pathseg/tensor.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emu_device.h"
#include "ps_test.h"

static float frand(guint32 *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* AdamW of the CPU table against a double-precision evaluation of the same
 * formula (float rounding only), and the bf16 copy equal to rounding p. */
static void test_adamw_cpu(const ps_kernels *cpu) {
  enum { N = 1000 };
  static float p[N], g[N], m[N], v[N], p0[N], m0[N], v0[N];
  static ps_bf16 pb[N];
  guint32 s = 7;
  for (int i = 0; i < N; i++) {
    p[i] = p0[i] = frand(&s);
    g[i] = frand(&s) * 3;
    m[i] = m0[i] = frand(&s) * 0.1f;
    v[i] = v0[i] = fabsf(frand(&s)) * 0.01f;
  }
  const float clip = 0.5f, b1 = 0.9f, b2 = 0.999f, wd = 1e-3f, ss = 0.0123f, isc = 3.7f,
              eps = 1e-8f;
  cpu->adamw_step(p, g, m, v, pb, N, clip, b1, b2, wd, ss, isc, eps);
  double worst = 0;
  int bf16_ok = 1;
  for (int i = 0; i < N; i++) {
    double gg = (double)g[i] * clip;
    double mm = b1 * (double)m0[i] + (1.0 - b1) * gg;
    double vv = b2 * (double)v0[i] + (1.0 - b2) * gg * gg;
    double pp = (double)p0[i] - wd * (double)p0[i];
    pp -= ss * mm / (sqrt(vv) * isc + eps);
    worst = fmax(worst, fabs(pp - p[i]) / (fabs(pp) + 1e-6));
    worst = fmax(worst, fabs(mm - m[i]) / (fabs(mm) + 1e-9));
    worst = fmax(worst, fabs(vv - v[i]) / (fabs(vv) + 1e-12));
    if (pb[i] != ps_f32_to_bf16(p[i])) bf16_ok = 0;
  }
  PS_CHECK_MSG(worst < 1e-5, "AdamW worst relative error %.3g", worst);
  PS_CHECK(bf16_ok);
  /* The first step from zero moments (clip 1, no decay, eps 0, the bias
   * corrections of step 1) moves every parameter by exactly lr against the
   * sign of its gradient: Adam's known first step. */
  const float lr = 0.1f;
  for (int i = 0; i < N; i++) p[i] = p0[i], m[i] = v[i] = 0;
  cpu->adamw_step(p, g, m, v, NULL, N, 1.0f, b1, b2, 0.0f, lr / (1 - b1), 1.0f / sqrtf(1 - b2),
                  0.0f);
  int sign_ok = 1;
  for (int i = 0; i < N; i++)
    if (g[i] != 0 && fabs((p0[i] - p[i]) - copysign(lr, g[i])) > 1e-5) sign_ok = 0;
  PS_CHECK(sign_ok);
}

static void test_reductions_cpu(const ps_kernels *cpu) {
  enum { N = 200001 };
  float *x = g_new(float, N);
  guint32 s = 3;
  double want = 0;
  for (int i = 0; i < N; i++) {
    x[i] = frand(&s);
    want += (double)x[i] * x[i];
  }
  PS_CHECK_NEAR(cpu->sum_squares(x, N), want, 1e-9 * want);
  PS_CHECK(cpu->sum_squares(x, 0) == 0.0);
  PS_CHECK(cpu->find_nonfinite(x, N) == -1);
  x[12345] = NAN;
  x[150000] = INFINITY;
  PS_CHECK(cpu->find_nonfinite(x, N) == 12345);
  x[12345] = 0;
  PS_CHECK(cpu->find_nonfinite(x, N) == 150000);
  /* bf16 round trip: to_bf16 is round-to-nearest-even, from_bf16 exact */
  ps_bf16 *b = g_new(ps_bf16, N);
  float *back = g_new(float, N);
  cpu->to_bf16(b, x, N);
  cpu->from_bf16(back, b, N);
  int ok = 1;
  for (int i = 0; i < N; i++)
    if (b[i] != ps_f32_to_bf16(x[i]) || back[i] != ps_bf16_to_f32(b[i])) ok = 0;
  PS_CHECK(ok);
  g_free(x), g_free(b), g_free(back);
}

/* The child's own SIGSEGV handler: a fault exits with FAULTED (under ASan
 * too, whose handler would otherwise turn it into an abort). */
enum { FAULTED = 42 };
static void on_segv(int sig) {
  (void)sig;
  _exit(FAULTED);
}

/* Runs fn in a child; returns FAULTED for a segmentation fault, the signal
 * that ended it otherwise (SIGABRT for an abort), or 0. */
static int child_signal(void (*fn)(const ps_kernels *), const ps_kernels *k) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);
    fn(k);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == FAULTED) return FAULTED;
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static float *g_dev; /* a device buffer for the children */

static void host_reads_device(const ps_kernels *k) {
  (void)k;
  volatile float x = g_dev[3];
  (void)x;
}

static void host_pointer_to_kernel(const ps_kernels *k) {
  float host[4] = {1, 2, 3, 4};
  fprintf(stderr, "(expected abort follows)\n");
  k->axpy(g_dev, 1.0f, host, 4);
}

static void host_writes_device(const ps_kernels *k) {
  (void)k;
  g_dev[0] = 1.0f;
}

static void test_emulator(const ps_kernels *cpu, const ps_kernels *emu) {
  PS_CHECK(strcmp(emu->name, "cuda-emulator") == 0);
  /* every entry of the table is there (the emulator refuses to start otherwise) */
  PS_CHECK(emu->linear_forward_bf16 && emu->adamw_step && emu->mem_alloc);

  /* linear forward + backward on the device equals the CPU table bit for bit */
  enum { Nr = 5, C = 7, OC = 3 };
  float x[Nr * C], w[OC * C], bias[OC], y_cpu[Nr * OC], y_emu[Nr * OC];
  guint32 s = 11;
  for (int i = 0; i < Nr * C; i++) x[i] = frand(&s);
  for (int i = 0; i < OC * C; i++) w[i] = frand(&s);
  for (int i = 0; i < OC; i++) bias[i] = frand(&s);
  cpu->linear_forward(y_cpu, x, w, bias, Nr, C, OC);
  float *dx = emu->mem_alloc(sizeof x), *dw = emu->mem_alloc(sizeof w),
        *db = emu->mem_alloc(sizeof bias), *dy = emu->mem_alloc(sizeof y_emu);
  PS_CHECK(dx && dw && db && dy);
  emu->copy_to_device(dx, x, sizeof x);
  emu->copy_to_device(dw, w, sizeof w);
  emu->copy_to_device(db, bias, sizeof bias);
  emu->linear_forward(dy, dx, dw, db, Nr, C, OC);
  emu->copy_to_host(y_emu, dy, sizeof y_emu);
  PS_CHECK(memcmp(y_cpu, y_emu, sizeof y_cpu) == 0);
  /* fresh allocations are zero; mem_zero and copy_on_device */
  float zeros[Nr * OC] = {0}, back[Nr * OC];
  float *dz = emu->mem_alloc(sizeof zeros);
  emu->copy_to_host(back, dz, sizeof back);
  PS_CHECK(memcmp(back, zeros, sizeof back) == 0);
  emu->copy_on_device(dz, dy, sizeof y_emu);
  emu->copy_to_host(back, dz, sizeof back);
  PS_CHECK(memcmp(back, y_cpu, sizeof back) == 0);
  emu->mem_zero(dz, sizeof zeros);
  emu->copy_to_host(back, dz, sizeof back);
  PS_CHECK(memcmp(back, zeros, sizeof back) == 0);
  PS_CHECK(emu->sum_squares(dy, Nr * OC) == cpu->sum_squares(y_cpu, Nr * OC));
  /* freed memory is reused and zeroed again */
  emu->mem_free(dz);
  float *dz2 = emu->mem_alloc(sizeof zeros);
  PS_CHECK(dz2 == dz);
  emu->copy_to_host(back, dz2, sizeof back);
  PS_CHECK(memcmp(back, zeros, sizeof back) == 0);

  /* what a GPU would not allow */
  g_dev = dy;
  PS_CHECK_MSG(child_signal(host_reads_device, emu) == FAULTED, "host read of device memory");
  PS_CHECK_MSG(child_signal(host_writes_device, emu) == FAULTED, "host write to device memory");
  PS_CHECK_MSG(child_signal(host_pointer_to_kernel, emu) == SIGABRT, "host pointer to a kernel");
  emu->mem_free(dx), emu->mem_free(dw), emu->mem_free(db), emu->mem_free(dy), emu->mem_free(dz2);
}

static void test_device_tensors(void) {
  GError *err = NULL;
  const int64_t shape[2] = {3, 4};
  g_autoptr(ps_tensor) host = ps_tensor_new(PS_DTYPE_F32, 2, shape, &err);
  for (int i = 0; i < 12; i++) ps_f32(host)[i] = (float)i - 5.5f;
  ps_tensor *dev = ps_tensor_new_on(PS_DEVICE_CUDA, PS_DTYPE_F32, 2, shape, &err);
  PS_CHECK_OK(dev != NULL, err);
  if (!dev) return;
  PS_CHECK(dev->device == PS_DEVICE_CUDA && dev->nbytes == 48);
  PS_CHECK_OK(ps_tensor_copy_into(dev, host, &err), err);
  /* ensure_on keeps a matching tensor, replaces one on another device */
  ps_tensor *kept = dev;
  PS_CHECK_OK(ps_tensor_ensure_on(&dev, PS_DEVICE_CUDA, PS_DTYPE_F32, 2, shape, &err), err);
  PS_CHECK(dev == kept);
  g_autoptr(ps_tensor) back = ps_tensor_copy(dev, &err);
  PS_CHECK(back && back->device == PS_DEVICE_CPU && memcmp(back->data, host->data, 48) == 0);
  g_autoptr(ps_tensor) f = ps_tensor_to_f32(dev, &err);
  PS_CHECK(f && memcmp(f->data, host->data, 48) == 0);
  g_autoptr(ps_tensor) dev2 = ps_tensor_to_device(dev, PS_DEVICE_CUDA, &err);
  g_autoptr(ps_tensor) back2 = dev2 ? ps_tensor_copy(dev2, &err) : NULL;
  PS_CHECK(back2 && memcmp(back2->data, host->data, 48) == 0);
  /* wrong size or dtype is an error naming both */
  const int64_t other[1] = {5};
  g_autoptr(ps_tensor) small = ps_tensor_new(PS_DTYPE_F32, 1, other, &err);
  PS_CHECK_FAILS_WITH(ps_tensor_copy_into(dev, small, &err), err, "cannot receive");
  /* a checkpoint written from device tensors holds their values */
  g_autofree char *dir = g_dir_make_tmp("pathseg-emu-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "t.safetensors", NULL);
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  PS_CHECK_OK(ps_safetensors_writer_add(w, "x", dev, &err), err);
  PS_CHECK_OK(ps_safetensors_writer_write(w, path, &err), err);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
  const ps_tensor *x = st ? ps_safetensors_get(st, "x", &err) : NULL;
  PS_CHECK(x && memcmp(x->data, host->data, 48) == 0);
  g_clear_pointer(&st, ps_safetensors_close);
  unlink(path);
  rmdir(dir);
  ps_tensor_free(dev);
}

/* The layout entries against plain loops, on the CPU and (bitwise) on the
 * emulated device. */
static void test_layout(const ps_kernels *cpu, const ps_kernels *emu) {
  enum { R = 37, C = 300, LDS = 311, LDD = 305 };
  float *src = g_new0(float, R *LDS), *dst = g_new0(float, R *LDD), *ref = g_new0(float, R *LDD);
  float *row = g_new0(float, C), *out = g_new0(float, R *C), *out_emu = g_new0(float, R *C);
  guint32 s = 5;
  for (int i = 0; i < R * LDS; i++) src[i] = frand(&s);
  for (int i = 0; i < R * LDD; i++) dst[i] = ref[i] = frand(&s);
  for (int i = 0; i < C; i++) row[i] = frand(&s);
  cpu->copy_2d(dst, LDD, src, LDS, R, C, 1);
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) ref[r * LDD + c] += src[r * LDS + c];
  PS_CHECK(memcmp(dst, ref, sizeof(float) * R * LDD) == 0);
  cpu->copy_2d(dst, LDD, src, LDS, R, C, 0);
  int ok = 1;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < LDD; c++)
      if (dst[r * LDD + c] != (c < C ? src[r * LDS + c] : ref[r * LDD + c])) ok = 0;
  PS_CHECK(ok);                       /* the padding columns are untouched */
  cpu->add_rows(out, src, row, R, C); /* inp with ld C: the first R*C floats of src */
  ok = 1;
  for (int i = 0; i < R * C; i++)
    if (out[i] != src[i] + row[i % C]) ok = 0;
  PS_CHECK(ok);
  float *sum = g_new0(float, C);
  cpu->sum_rows(sum, src, R, C);
  double worst = 0;
  for (int c = 0; c < C; c++) {
    double want = 0;
    for (int r = 0; r < R; r++) want += src[r * C + c];
    worst = fmax(worst, fabs(want - sum[c]));
  }
  PS_CHECK_MSG(worst < 1e-5, "sum_rows worst %.3g", worst);
  /* the same three on the device */
  float *d_src = emu->mem_alloc(sizeof(float) * R * LDS),
        *d_out = emu->mem_alloc(sizeof(float) * R * C), *d_row = emu->mem_alloc(sizeof(float) * C),
        *d_sum = emu->mem_alloc(sizeof(float) * C);
  emu->copy_to_device(d_src, src, sizeof(float) * R * LDS);
  emu->copy_to_device(d_row, row, sizeof(float) * C);
  emu->add_rows(d_out, d_src, d_row, R, C);
  emu->copy_to_host(out_emu, d_out, sizeof(float) * R * C);
  PS_CHECK(memcmp(out, out_emu, sizeof(float) * R * C) == 0);
  emu->sum_rows(d_sum, d_src, R, C);
  float *sum_emu = g_new0(float, C);
  emu->copy_to_host(sum_emu, d_sum, sizeof(float) * C);
  PS_CHECK(memcmp(sum, sum_emu, sizeof(float) * C) == 0);
  emu->copy_2d(d_out, C, d_src, LDS, R, C, 0);
  emu->copy_to_host(out_emu, d_out, sizeof(float) * R * C);
  ok = 1;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++)
      if (out_emu[r * C + c] != src[r * LDS + c]) ok = 0;
  PS_CHECK(ok);
  emu->mem_free(d_src), emu->mem_free(d_out), emu->mem_free(d_row), emu->mem_free(d_sum);
  g_free(src), g_free(dst), g_free(ref), g_free(row), g_free(out), g_free(out_emu), g_free(sum),
      g_free(sum_emu);
}

/* move_to keeps the header (parameter lists point at it) and the values;
 * on_device returns the tensor itself when it is there, else a cached copy. */
static void test_move(void) {
  GError *err = NULL;
  const int64_t shape[1] = {6};
  g_autoptr(ps_tensor) t = ps_tensor_new(PS_DTYPE_F32, 1, shape, &err);
  for (int i = 0; i < 6; i++) ps_f32(t)[i] = (float)i * 0.5f;
  ps_tensor *header = t;
  PS_CHECK_OK(ps_tensor_move_to(t, PS_DEVICE_CUDA, &err), err);
  PS_CHECK(t == header && t->device == PS_DEVICE_CUDA && t->owns_data);
  g_autoptr(ps_tensor) back = ps_tensor_copy(t, &err);
  PS_CHECK(back && ps_f32(back)[5] == 2.5f);
  PS_CHECK(ps_tensor_on_device(t, PS_DEVICE_CUDA, NULL, &err) == t);
  ps_tensor *cache = NULL;
  const ps_tensor *h = ps_tensor_on_device(t, PS_DEVICE_CPU, &cache, &err);
  PS_CHECK(h == cache && h && h->device == PS_DEVICE_CPU && ps_f32(h)[3] == 1.5f);
  ps_tensor *first = cache;
  h = ps_tensor_on_device(t, PS_DEVICE_CPU, &cache, &err);
  PS_CHECK(cache == first); /* reused */
  PS_CHECK_OK(ps_tensor_move_to(t, PS_DEVICE_CPU, &err), err);
  PS_CHECK(t->device == PS_DEVICE_CPU && ps_f32(t)[4] == 2.0f);
  ps_tensor_free(cache);
}

/* mask_counts against counting by hand, including values at the thresholds
 * (0 is not > 0, 0.5 is not > 0.5), and on the emulated device. */
static void test_mask_counts(const ps_kernels *cpu, const ps_kernels *emu) {
  enum { M = 3, P = 1001 };
  float *x = g_new(float, M * P), *t = g_new(float, M * P);
  guint32 s = 9;
  for (int i = 0; i < M * P; i++) {
    x[i] = i % 7 == 0 ? 0.0f : frand(&s);
    t[i] = i % 11 == 0 ? 0.5f : (frand(&s) > 0 ? 1.0f : 0.0f);
  }
  int64_t got[3 * M], want[3 * M] = {0}, dev_got[3 * M];
  for (int m = 0; m < M; m++)
    for (int i = 0; i < P; i++) {
      int pi = x[m * P + i] > 0, ti = t[m * P + i] > 0.5f;
      want[3 * m] += pi, want[3 * m + 1] += ti, want[3 * m + 2] += pi && ti;
    }
  cpu->mask_counts(got, x, t, M, P);
  PS_CHECK(memcmp(got, want, sizeof want) == 0);
  float *dx = emu->mem_alloc(sizeof(float) * M * P), *dt = emu->mem_alloc(sizeof(float) * M * P);
  int64_t *dc = emu->mem_alloc(sizeof dev_got);
  emu->copy_to_device(dx, x, sizeof(float) * M * P);
  emu->copy_to_device(dt, t, sizeof(float) * M * P);
  emu->mask_counts(dc, dx, dt, M, P);
  emu->copy_to_host(dev_got, dc, sizeof dev_got);
  PS_CHECK(memcmp(dev_got, want, sizeof want) == 0);
  emu->mem_free(dx), emu->mem_free(dt), emu->mem_free(dc);
  g_free(x), g_free(t);
}

int main(void) {
  ps_test_use_cuda_emulator();
  GError *err = NULL;
  const ps_kernels *cpu = ps_kernels_get(PS_DEVICE_CPU, &err);
  PS_CHECK_OK(cpu != NULL, err);
  test_adamw_cpu(cpu);
  test_reductions_cpu(cpu);
  const ps_kernels *emu = ps_kernels_get(PS_DEVICE_CUDA, &err);
  PS_CHECK_OK(emu != NULL, err);
  if (emu) {
    test_emulator(cpu, emu);
    test_device_tensors();
    test_layout(cpu, emu);
    test_move();
    test_mask_counts(cpu, emu);
  }
  return ps_test_finish();
}
