/* image_encoder_internal.h — the encoder object and the helpers shared by
 * image_encoder.c (construction), image_encoder_forward.c and
 * image_encoder_backward.c. */
#pragma once

#include "image_encoder.h"

typedef struct {
  int n1w, n1b, n2w, n2b, rph, rpw;
  pl_linear qkv, proj, lin1, lin2, down, up;
  gboolean global;
} enc_block;

/* Activations of one block (shapes for N = B*T tokens, Nw = windows*ws*ws). */
typedef struct {
  pl_buf ln1, mean1, rstd1; /* (N, E), (N), (N) */
  pl_buf xw;                /* (Nw, E) windowed LN1 output (window blocks only) */
  pl_buf qkv;               /* (Nw, 3E) */
  pl_buf relh, relw;        /* (Bw, nH, Tw, side) */
  pl_buf ao, lse;           /* (Nw, E), (Bw, nH, Tw) */
  pl_buf x1;                /* (N, E) after the attention residual */
  pl_buf ln2, mean2, rstd2; /* (N, E), (N), (N) */
  pl_buf h, g;              /* (N, M) before / after GELU */
  pl_buf adh, adr, admask;  /* (N, A) adapter before / after ReLU(+dropout), dropout mask */
} blk_act;

struct sam_encoder {
  sam_enc_cfg cfg;
  ps_device dev;       /* where parameters, activations and gradients live */
  const ps_kernels *k; /* dev's table */
  pl_params P;
  int64_t E, G, T, nH, hd, M, A, OC;
  int pe_w, pe_b, pos, neck0, nk1w, nk1b, neck2, nk3w, nk3b;
  enc_block blk[SAM_MAX_DEPTH];

  int64_t B;                     /* batch of the buffers below */
  gboolean acts_for_training;    /* the last forward kept every block's activations */
  gboolean adapter_dropout_used; /* the last forward applied an adapter dropout mask */
  const float *img_in;           /* patch-embedding input of the last forward */
  pl_buf img_norm;               /* (B, 3, S, S) MedSAM-normalised image */
  float *mm_lo, *mm_r;           /* (B) min and range of each image */
  int64_t *mm_amin, *mm_amax;    /* (B) where they are */
  gboolean *mm_clipped;          /* (B) range below 1e-8, clipped */
  const float *img_raw;          /* the last forward's input image, host memory */
  ps_tensor *img_cache;          /* the input on dev when it came from elsewhere */
  ps_tensor *dout_cache;         /* the output gradient on dev (encoder component) */
  /* Host staging for the host steps on a device (sam_host.h): the raw image
   * (when it arrives on the device), its normalised copy, dropout masks and
   * the min-max backward. */
  sam_host_buf h_raw, h_norm, h_mask, h_dimg, h_dout;
  pl_buf pe_out;                  /* (B, E, T) */
  pl_buf xs[SAM_MAX_DEPTH + 1];   /* (N, E) residual stream entering block l / leaving */
  blk_act act[SAM_MAX_DEPTH + 2]; /* per block (training); depth, depth+1: shared (inference) */
  pl_buf tmpw, tmp;               /* (Nw_max, E), (N, E) */
  pl_buf nchw, c1, c1n, m1, r1, c2, m2, r2; /* neck */
  ps_tensor *out;                           /* (B, OC, G, G) */
  /* backward */
  pl_buf d0, d1, dln, dxw, dqkv, drelh, drelw, dao, dprojw, dh, dg, dadr, dadh;
  pl_buf dnchw, dc1, dc1n, dc2, dpe, dimg;
  ps_tensor *dimage;
};

typedef struct {
  int64_t side, Bw, Tw; /* attention grid side, batch of windows, tokens per window */
} blk_geom;

/* Attention geometry of block b for a batch of B images. */
blk_geom sam_enc_geom(const sam_encoder *e, const enc_block *b, int64_t B);
/* The attention descriptor of a block (rel-pos tables of activation set a). */
ps_attention_desc sam_enc_att_desc(const sam_encoder *e, const blk_geom *g, const blk_act *a);
/* The most tokens any block's attention sees (windows padded), for B images. */
int64_t sam_enc_max_window_tokens(const sam_encoder *e, int64_t B);
/* The most scratch any op of a forward (backward = 1) needs, in floats. */
int64_t sam_enc_scratch_need(const sam_encoder *e, int64_t B, int backward);
