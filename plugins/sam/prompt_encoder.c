/* prompt_encoder.c — SAM's PromptEncoder with LISA's text prompt: the
 * random-Fourier position encoding (computed in float32, as the official
 * code forces), sparse tokens in the order points, boxes, text, and their
 * backward into the point embeddings and the text embedding.
 *
 * The encoding of coordinates (sin/cos of host prompt data and the frozen
 * gaussian matrix) is computed on the host, as no kernel-table entry does
 * it; everything that involves parameters and activations goes through the
 * kernel table: on a device, the PE rows are uploaded once per forward and
 * the embeddings are added there. */
#include <math.h>

#include <pathseg/error.h>

#include "mask_decoder_internal.h"

void sam_pe_encode(const float *G, int64_t C, float x, float y, float *out, int64_t stride) {
  /* G: (2, C/2) */
  int64_t F = C / 2;
  const float two_pi = (float)(2.0 * M_PI);
  float cx = 2.0f * x - 1.0f, cy = 2.0f * y - 1.0f;
  for (int64_t f = 0; f < F; f++) {
    float v = (cx * G[f] + cy * G[F + f]) * two_pi;
    out[f * stride] = sinf(v);
    out[(F + f) * stride] = cosf(v);
  }
}

void sam_dense_pe(const sam_decoder *d, const float *gauss, float *pe) {
  /* pe: (C, S, S); pixel centres (j + 0.5) / S, x first */
  int64_t S = d->S;
  for (int64_t i = 0; i < S; i++)
    for (int64_t j = 0; j < S; j++)
      sam_pe_encode(gauss, d->C, ((float)j + 0.5f) / (float)S, ((float)i + 0.5f) / (float)S,
                    pe + i * S + j, S * S);
}

const float *sam_gauss_host(sam_decoder *d, GError **error) {
  const float *g = pl_pv(&d->P, d->gauss);
  if (sam_on_host(d->dev)) return g;
  /* DEVICE: host round trip (C floats of a frozen parameter), needs a kernel
   * (random-Fourier sin/cos encoding) */
  if (!sam_host_buf_ensure(&d->h_gauss, d->C, error)) return NULL;
  d->k->copy_to_host(d->h_gauss.p, g, (size_t)d->C * sizeof(float));
  return d->h_gauss.p;
}

int64_t sam_sparse_count(const sam_prompts *pr) {
  int64_t Ns = 0;
  if (pr->points) Ns += pr->Np + (pr->boxes ? 0 : 1); /* a padding point when there is no box */
  if (pr->boxes) Ns += 2;
  if (pr->text) Ns += 1;
  return Ns;
}

/* Label of sparse point token i of prompt b: -1 for the padding point. */
static float point_label(const sam_prompts *pr, int64_t b, int64_t i) {
  if (i == pr->Np) return -1.0f;
  return pr->labels ? pr->labels[b * pr->Np + i] : 1.0f;
}

/* The point-embedding parameter a point of label `lab` adds, or -1. */
static int point_param(const sam_decoder *d, float lab) {
  return lab == -1.0f ? d->not_a_point : lab == 0.0f ? d->pt[0] : lab == 1.0f ? d->pt[1] : -1;
}

gboolean sam_sparse_embed(sam_decoder *d, const sam_prompts *pr, float *out, GError **error) {
  const ps_kernels *k = d->k;
  const pl_params *P = &d->P;
  int64_t Ns = sam_sparse_count(pr), C = d->C, n = pr->B * Ns * C;
  if (n == 0) return TRUE;
  /* 1. the coordinate encodings, on the host (zero rows: padding, ignored
   *    points, text), straight into out on the CPU */
  const float *gauss = sam_gauss_host(d, error);
  if (!gauss) return FALSE;
  float *h = out;
  if (!sam_on_host(d->dev)) {
    if (!sam_host_buf_ensure(&d->h_sparse, n, error)) return FALSE;
    h = d->h_sparse.p;
  }
  memset(h, 0, (size_t)n * sizeof(float));
  float in = (float)d->cfg.input_image_size;
  for (int64_t b = 0; b < pr->B; b++) {
    float *row = h + b * Ns * C;
    if (pr->points) {
      for (int64_t i = 0; i <= pr->Np; i++) {
        if (i == pr->Np && pr->boxes) break;
        /* SAM zeroes a not-a-point row before adding its embedding */
        if (point_label(pr, b, i) != -1.0f) {
          const float *p = pr->points + (b * pr->Np + i) * 2;
          sam_pe_encode(gauss, C, (p[0] + 0.5f) / in, (p[1] + 0.5f) / in, row, 1);
        }
        row += C;
      }
    }
    if (pr->boxes) {
      const float *bx = pr->boxes + b * 4;
      for (int corner = 0; corner < 2; corner++) {
        sam_pe_encode(gauss, C, (bx[2 * corner] + 0.5f) / in, (bx[2 * corner + 1] + 0.5f) / in, row,
                      1);
        row += C;
      }
    }
  }
  if (h != out) k->copy_to_device(out, h, (size_t)n * sizeof(float));
  /* 2. the embeddings and the text, in device memory */
  for (int64_t b = 0; b < pr->B; b++) {
    float *row = out + b * Ns * C;
    if (pr->points) {
      for (int64_t i = 0; i <= pr->Np; i++) {
        if (i == pr->Np && pr->boxes) break;
        int w = point_param(d, point_label(pr, b, i));
        if (w >= 0) k->axpy(row, 1.0f, pl_pv(P, w), C);
        row += C;
      }
    }
    if (pr->boxes) {
      for (int corner = 0; corner < 2; corner++) {
        k->axpy(row, 1.0f, pl_pv(P, d->pt[2 + corner]), C);
        row += C;
      }
    }
  }
  /* the text token is the last of each prompt */
  if (pr->text) k->copy_2d(out + (Ns - 1) * C, Ns * C, pr->text, C, pr->B, C, 0);
  return TRUE;
}

void sam_sparse_backward(sam_decoder *d, const float *dsparse, int64_t ld, float *dtext) {
  const ps_kernels *k = d->k;
  const sam_prompts *pr = &d->pr;
  const pl_params *P = &d->P;
  int64_t C = d->C, Ns = sam_sparse_count(pr);
  for (int64_t b = 0; b < pr->B; b++) {
    const float *row = dsparse + b * ld;
    if (pr->points) {
      for (int64_t i = 0; i <= pr->Np; i++) {
        if (i == pr->Np && pr->boxes) break;
        float *g = pl_pg(P, point_param(d, point_label(pr, b, i)));
        if (g) k->axpy(g, 1.0f, row, C);
        row += C;
      }
    }
    if (pr->boxes) {
      for (int corner = 0; corner < 2; corner++) {
        float *g = pl_pg(P, d->pt[2 + corner]);
        if (g) k->axpy(g, 1.0f, row, C);
        row += C;
      }
    }
  }
  if (pr->text && dtext) k->copy_2d(dtext, C, dsparse + (Ns - 1) * C, ld, pr->B, C, 0);
}
