/* prompt_encoder.c — SAM's PromptEncoder with LISA's text prompt: the
 * random-Fourier position encoding (computed in float32, as the official
 * code forces), sparse tokens in the order points, boxes, text, and their
 * backward into the point embeddings and the text embedding. */
#include <math.h>

#include "mask_decoder_internal.h"

void sam_pe_encode(const sam_decoder *d, float x, float y, float *out, int64_t stride) {
  const float *G = pl_pv(&d->P, d->gauss); /* (2, C/2) */
  int64_t F = d->C / 2;
  const float two_pi = (float)(2.0 * M_PI);
  float cx = 2.0f * x - 1.0f, cy = 2.0f * y - 1.0f;
  for (int64_t f = 0; f < F; f++) {
    float v = (cx * G[f] + cy * G[F + f]) * two_pi;
    out[f * stride] = sinf(v);
    out[(F + f) * stride] = cosf(v);
  }
}

void sam_dense_pe(const sam_decoder *d, float *pe) {
  /* pe: (C, S, S); pixel centres (j + 0.5) / S, x first */
  int64_t S = d->S;
  for (int64_t i = 0; i < S; i++)
    for (int64_t j = 0; j < S; j++)
      sam_pe_encode(d, ((float)j + 0.5f) / (float)S, ((float)i + 0.5f) / (float)S, pe + i * S + j,
                    S * S);
}

static void add_row(float *dst, const float *src, int64_t C) {
  for (int64_t c = 0; c < C; c++) dst[c] += src[c];
}

int64_t sam_sparse_embed(const sam_decoder *d, const sam_prompts *pr, float *out) {
  int64_t Ns = 0, C = d->C;
  if (pr->points) Ns += pr->Np + (pr->boxes ? 0 : 1); /* a padding point when there is no box */
  if (pr->boxes) Ns += 2;
  if (pr->text) Ns += 1;
  if (!out) return Ns;
  const pl_params *P = &d->P;
  float in = (float)d->cfg.input_image_size;
  for (int64_t b = 0; b < pr->B; b++) {
    float *row = out + b * Ns * C;
    if (pr->points) {
      for (int64_t i = 0; i <= pr->Np; i++) {
        if (i == pr->Np && pr->boxes) break;
        float lab = -1.0f;
        if (i < pr->Np) {
          const float *p = pr->points + (b * pr->Np + i) * 2;
          lab = pr->labels ? pr->labels[b * pr->Np + i] : 1.0f;
          sam_pe_encode(d, (p[0] + 0.5f) / in, (p[1] + 0.5f) / in, row, 1);
        }
        if (lab == -1.0f) {
          memset(row, 0, (size_t)C * sizeof(float));
          add_row(row, pl_pv(P, d->not_a_point), C);
        } else if (lab == 0.0f) {
          add_row(row, pl_pv(P, d->pt[0]), C);
        } else if (lab == 1.0f) {
          add_row(row, pl_pv(P, d->pt[1]), C);
        }
        row += C;
      }
    }
    if (pr->boxes) {
      const float *bx = pr->boxes + b * 4;
      for (int corner = 0; corner < 2; corner++) {
        sam_pe_encode(d, (bx[2 * corner] + 0.5f) / in, (bx[2 * corner + 1] + 0.5f) / in, row, 1);
        add_row(row, pl_pv(P, d->pt[2 + corner]), C);
        row += C;
      }
    }
    if (pr->text) {
      memcpy(row, pr->text + b * C, (size_t)C * sizeof(float));
      row += C;
    }
  }
  return Ns;
}

void sam_sparse_backward(sam_decoder *d, const float *dsparse, int64_t ld, float *dtext) {
  const sam_prompts *pr = &d->pr;
  const pl_params *P = &d->P;
  int64_t C = d->C;
  float *gna = pl_pg(P, d->not_a_point);
  float *gpt[4];
  for (int i = 0; i < 4; i++) gpt[i] = pl_pg(P, d->pt[i]);
  for (int64_t b = 0; b < pr->B; b++) {
    const float *row = dsparse + b * ld;
    if (pr->points) {
      for (int64_t i = 0; i <= pr->Np; i++) {
        if (i == pr->Np && pr->boxes) break;
        float lab = i < pr->Np ? (pr->labels ? pr->labels[b * pr->Np + i] : 1.0f) : -1.0f;
        float *g = lab == -1.0f ? gna : lab == 0.0f ? gpt[0] : lab == 1.0f ? gpt[1] : NULL;
        if (g) add_row(g, row, C);
        row += C;
      }
    }
    if (pr->boxes) {
      for (int corner = 0; corner < 2; corner++) {
        if (gpt[2 + corner]) add_row(gpt[2 + corner], row, C);
        row += C;
      }
    }
    if (pr->text) {
      if (dtext) memcpy(dtext + b * C, row, (size_t)C * sizeof(float));
      row += C;
    }
  }
}
