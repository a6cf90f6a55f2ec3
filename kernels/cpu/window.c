/* window.c — SAM's window partition (zero padding bottom/right) and its
 * inverse (reassemble and crop), forward and backward, on the CPU. */
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

/* Visits every window pixel: window w, row y, column x of the window and the
 * matching grid position; `inside` says whether it is real (not padding).
 * mode 0: win = grid (padding 0); 1: grid += win; 2: grid = win; 3: win += grid. */
static void window_map(float *win, float *grid, int64_t B, int64_t H, int64_t W, int64_t C,
                       int64_t ws, int mode) {
  int64_t nh = ps_windows_per_dim(H, ws), nw = ps_windows_per_dim(W, ws);
  int64_t rows = B * nh * nw * ws; /* one unit = one row of one window */
#pragma omp parallel for schedule(static) if (rows * ws * C > PS_OMP_MIN_WORK)
  for (int64_t u = 0; u < rows; u++) {
    int64_t wi = u / ws, y = u % ws;
    int64_t b = wi / (nh * nw), wy = (wi / nw) % nh, wx = wi % nw;
    int64_t gy = wy * ws + y;
    float *wrow = win + u * ws * C;
    for (int64_t x = 0; x < ws; x++) {
      int64_t gx = wx * ws + x;
      float *wp = wrow + x * C;
      int inside = gy < H && gx < W;
      float *gp = inside ? grid + ((b * H + gy) * W + gx) * C : NULL;
      switch (mode) {
      case 0:
        if (inside)
          memcpy(wp, gp, (size_t)C * sizeof(float));
        else
          memset(wp, 0, (size_t)C * sizeof(float));
        break;
      case 1:
        if (inside) {
#pragma omp simd
          for (int64_t c = 0; c < C; c++) gp[c] += wp[c];
        }
        break;
      case 2:
        if (inside) memcpy(gp, wp, (size_t)C * sizeof(float));
        break;
      default:
        if (inside) {
#pragma omp simd
          for (int64_t c = 0; c < C; c++) wp[c] += gp[c];
        }
        break;
      }
    }
  }
}

void ps_cpu_window_partition_forward(float *out, const float *inp, int64_t B, int64_t H, int64_t W,
                                     int64_t C, int64_t ws) {
  /* out: (B*nh*nw, ws, ws, C); inp: (B, H, W, C) (read only: mode 0) */
  window_map(out, (float *)inp, B, H, W, C, ws, 0);
}

void ps_cpu_window_partition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                      int64_t W, int64_t C, int64_t ws) {
  /* dinp: (B, H, W, C) += dout: (B*nh*nw, ws, ws, C) without the padding (mode 1) */
  window_map((float *)dout, dinp, B, H, W, C, ws, 1);
}

void ps_cpu_window_unpartition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                       int64_t W, int64_t C, int64_t ws) {
  /* out: (B, H, W, C); inp: (B*nh*nw, ws, ws, C) (read only: mode 2) */
  window_map((float *)inp, out, B, H, W, C, ws, 2);
}

void ps_cpu_window_unpartition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                        int64_t W, int64_t C, int64_t ws) {
  /* dinp: (B*nh*nw, ws, ws, C) += dout: (B, H, W, C) (mode 3; padding gets nothing) */
  window_map(dinp, (float *)dout, B, H, W, C, ws, 3);
}
