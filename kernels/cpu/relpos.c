/* relpos.c — SAM's decomposed relative-position terms on the CPU:
 * rel_h/rel_w from the UNSCALED queries and the rel_pos_h/rel_pos_w tables,
 * and their backward to q and to the tables. The attention kernel adds
 * rel_h[.., ky] + rel_w[.., kx] to the logit of key (ky, kx).
 *
 * For one query row y the table rows it meets, y - ky + gh - 1 for ky < gh,
 * are the contiguous block [y, y + gh) in reverse order, so each (batch,
 * head, grid row) is one small GEMM  q rows (gw x D) @ block^T (D x gh)
 * whose columns are then reversed; grid columns work the same way with a
 * row stride of gw * ldq. The GEMM tiles live on the stack (at most
 * RP_TILE floats); bigger grids fall back to plain dot products. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

#define RP_TILE 4096   /* floats of one gw x gh tile (a 64 x 64 SAM global grid fits) */
#define RP_TABLE 16384 /* floats of a thread's private table gradient ((2*64-1)*128 fits) */

typedef struct {
  int64_t B, H, gh, gw, D, ldq, T;
} rp_geom;

/* Axis 0 (rows, table rel_pos_h): unit u = (b, h, y) covers the gw queries
 * of grid row y, q row stride ldq, table block [y, y + gh), n = gh keys.
 * Axis 1 (columns, rel_pos_w): unit = (b, h, x) covers the gh queries of
 * grid column x, row stride gw * ldq, block [x, x + gw), n = gw keys. */
typedef struct {
  int64_t bh, line;    /* batch*H + head, grid row or column */
  int64_t m, n;        /* queries in the line, keys per query */
  int64_t q0, qstride; /* first q row index (in rows of ldq) and the step between them */
} rp_unit;

static rp_unit rp_unit_of(const rp_geom *g, int axis, int64_t u) {
  rp_unit r;
  int64_t lines = axis == 0 ? g->gh : g->gw;
  r.bh = u / lines;
  r.line = u % lines;
  int64_t b = r.bh / g->H;
  if (axis == 0) {
    r.m = g->gw, r.n = g->gh, r.q0 = b * g->T + r.line * g->gw, r.qstride = 1;
  } else {
    r.m = g->gh, r.n = g->gw, r.q0 = b * g->T + r.line, r.qstride = g->gw;
  }
  return r;
}

/* Index in rel_h / rel_w of query i (< m) of the unit, key k (< n). */
static int64_t rp_out_index(const rp_geom *g, int axis, const rp_unit *r, int64_t i, int64_t k) {
  int64_t t = axis == 0 ? r->line * g->gw + i : i * g->gw + r->line;
  return (r->bh * g->T + t) * r->n + k;
}

static float rp_dot(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static void rp_forward_axis(float *rel, const float *q, const float *table, const rp_geom *g,
                            int axis) {
  int64_t lines = axis == 0 ? g->gh : g->gw, units = g->B * g->H * lines;
  int64_t tile = g->gh * g->gw;
  int threaded = units * tile * g->D > PS_OMP_MIN_WORK && omp_get_max_threads() > 1;
  if (threaded) ps_cpu_blas_serial_begin();
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t u = 0; u < units; u++) {
    rp_unit r = rp_unit_of(g, axis, u);
    int64_t h = r.bh % g->H;
    const float *qp = q + r.q0 * g->ldq + h * g->D;
    const float *blk = table + r.line * g->D; /* rows line .. line + n - 1 */
    if (tile <= RP_TILE) {
      float G[RP_TILE]; /* G[i, c] = q_i . table[line + c]; key k = n - 1 - c */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r.m, (int)r.n, (int)g->D, 1.0f, qp,
                  (int)(r.qstride * g->ldq), blk, (int)g->D, 0.0f, G, (int)r.n);
      for (int64_t i = 0; i < r.m; i++)
        for (int64_t k = 0; k < r.n; k++)
          rel[rp_out_index(g, axis, &r, i, k)] = G[i * r.n + r.n - 1 - k];
    } else {
      for (int64_t i = 0; i < r.m; i++)
        for (int64_t k = 0; k < r.n; k++)
          rel[rp_out_index(g, axis, &r, i, k)] =
              rp_dot(qp + i * r.qstride * g->ldq, blk + (r.n - 1 - k) * g->D, g->D);
    }
  }
  if (threaded) ps_cpu_blas_serial_end();
}

void ps_cpu_rel_pos_forward(float *rel_h, float *rel_w, const float *q, const float *rel_pos_h,
                            const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                            int64_t D, int64_t ldq) {
  /* rel_h: (B, H, gh*gw, gh); rel_w: (B, H, gh*gw, gw); q: (B, gh*gw, H, D) stride ldq;
   * rel_pos_h: (2gh-1, D); rel_pos_w: (2gw-1, D) */
  if (B <= 0 || H <= 0 || gh <= 0 || gw <= 0 || D <= 0) return;
  rp_geom g = {B, H, gh, gw, D, ldq ? ldq : H * D, gh * gw};
  rp_forward_axis(rel_h, q, rel_pos_h, &g, 0);
  rp_forward_axis(rel_w, q, rel_pos_w, &g, 1);
}

/* dq rows of each unit += Gd (m x n) @ table block (n x D), where Gd[i, c] =
 * drel[i, n - 1 - c]. Units of one axis write disjoint dq rows. */
static void rp_backward_dq_axis(float *dq, const float *drel, const float *table, const rp_geom *g,
                                int axis) {
  int64_t lines = axis == 0 ? g->gh : g->gw, units = g->B * g->H * lines;
  int64_t tile = g->gh * g->gw;
  int threaded = units * tile * g->D > PS_OMP_MIN_WORK && omp_get_max_threads() > 1;
  if (threaded) ps_cpu_blas_serial_begin();
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t u = 0; u < units; u++) {
    rp_unit r = rp_unit_of(g, axis, u);
    int64_t h = r.bh % g->H;
    float *dqp = dq + r.q0 * g->ldq + h * g->D;
    const float *blk = table + r.line * g->D;
    if (tile <= RP_TILE) {
      float G[RP_TILE];
      for (int64_t i = 0; i < r.m; i++)
        for (int64_t k = 0; k < r.n; k++)
          G[i * r.n + r.n - 1 - k] = drel[rp_out_index(g, axis, &r, i, k)];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r.m, (int)g->D, (int)r.n, 1.0f, G,
                  (int)r.n, blk, (int)g->D, 1.0f, dqp, (int)(r.qstride * g->ldq));
    } else {
      for (int64_t i = 0; i < r.m; i++) {
        float *row = dqp + i * r.qstride * g->ldq;
        for (int64_t k = 0; k < r.n; k++) {
          float gv = drel[rp_out_index(g, axis, &r, i, k)];
          const float *tr = blk + (r.n - 1 - k) * g->D;
#pragma omp simd
          for (int64_t c = 0; c < g->D; c++) row[c] += gv * tr[c];
        }
      }
    }
  }
  if (threaded) ps_cpu_blas_serial_end();
}

/* dtable[line + c] += sum_i Gd[i, c] q_i over every unit: units overlap in
 * table rows, so each thread sums its (static, deterministic) share of units
 * into a private copy on its stack and the copies are added in thread order. */
static void rp_backward_table_axis(float *dtable, const float *drel, const float *q,
                                   const rp_geom *g, int axis) {
  int64_t lines = axis == 0 ? g->gh : g->gw, units = g->B * g->H * lines;
  int64_t rows = 2 * lines - 1, tile = g->gh * g->gw;
  if (tile > RP_TILE || rows * g->D > RP_TABLE) {
    /* big grids: one table row per unit of work, no private copies */
#pragma omp parallel for schedule(dynamic, 1) if (units * tile * g->D > PS_OMP_MIN_WORK)
    for (int64_t rix = 0; rix < rows; rix++) {
      float *out = dtable + rix * g->D;
      for (int64_t u = 0; u < units; u++) {
        rp_unit r = rp_unit_of(g, axis, u);
        int64_t c = rix - r.line; /* G column, key n - 1 - c */
        if (c < 0 || c >= r.n) continue;
        const float *qp = q + r.q0 * g->ldq + (r.bh % g->H) * g->D;
        for (int64_t i = 0; i < r.m; i++) {
          float gv = drel[rp_out_index(g, axis, &r, i, r.n - 1 - c)];
          const float *qr = qp + i * r.qstride * g->ldq;
#pragma omp simd
          for (int64_t e = 0; e < g->D; e++) out[e] += gv * qr[e];
        }
      }
    }
    return;
  }
  int threaded = units * tile * g->D > PS_OMP_MIN_WORK && omp_get_max_threads() > 1;
  if (threaded) ps_cpu_blas_serial_begin();
#pragma omp parallel if (threaded)
  {
    float acc[RP_TABLE], G[RP_TILE];
    memset(acc, 0, (size_t)(rows * g->D) * sizeof(float));
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; u++) {
      rp_unit r = rp_unit_of(g, axis, u);
      const float *qp = q + r.q0 * g->ldq + (r.bh % g->H) * g->D;
      for (int64_t i = 0; i < r.m; i++)
        for (int64_t k = 0; k < r.n; k++)
          G[i * r.n + r.n - 1 - k] = drel[rp_out_index(g, axis, &r, i, k)];
      /* acc[line .. line + n) (n x D) += G^T (n x m) @ q rows (m x D) */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r.n, (int)g->D, (int)r.m, 1.0f, G,
                  (int)r.n, qp, (int)(r.qstride * g->ldq), 1.0f, acc + r.line * g->D, (int)g->D);
    }
    int nt = omp_get_num_threads();
#pragma omp for ordered schedule(static, 1)
    for (int t = 0; t < nt; t++) {
#pragma omp ordered
      {
        for (int64_t i = 0; i < rows * g->D; i++) dtable[i] += acc[i];
      }
    }
  }
  if (threaded) ps_cpu_blas_serial_end();
}

void ps_cpu_rel_pos_backward(float *dq, float *drel_pos_h, float *drel_pos_w, const float *drel_h,
                             const float *drel_w, const float *q, const float *rel_pos_h,
                             const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                             int64_t D, int64_t ldq) {
  /* dq: like q (stride ldq); drel_pos_h: (2gh-1, D); drel_pos_w: (2gw-1, D);
   * drel_h: (B, H, gh*gw, gh); drel_w: (B, H, gh*gw, gw) */
  if (B <= 0 || H <= 0 || gh <= 0 || gw <= 0 || D <= 0) return;
  rp_geom g = {B, H, gh, gw, D, ldq ? ldq : H * D, gh * gw};
  if (dq) {
    rp_backward_dq_axis(dq, drel_h, rel_pos_h, &g, 0);
    rp_backward_dq_axis(dq, drel_w, rel_pos_w, &g, 1);
  }
  if (drel_pos_h) rp_backward_table_axis(drel_pos_h, drel_h, q, &g, 0);
  if (drel_pos_w) rp_backward_table_axis(drel_pos_w, drel_w, q, &g, 1);
}
