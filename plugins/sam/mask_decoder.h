/* mask_decoder.h — SAM's PromptEncoder (sparse point/box embeddings, LISA's
 * text-embedding prompt, no-mask dense embedding, random-Fourier PE) and
 * MaskDecoder (two-way transformer, output upscaling, hypernetwork MLPs, IoU
 * head), forward and backward. Post-processing to the output size lives in
 * sam_decoder_comp.c. */
#pragma once

#include "../common/param_list.h"
#include "sam_host.h"
#include "two_way.h"

#define SAM_MAX_MASK_TOKENS 16
#define SAM_MAX_MLP_DEPTH 8

typedef struct {
  int64_t embed_dim;            /* transformer_dim = prompt width (256) */
  int64_t image_embedding_size; /* grid side of the image embedding (64) */
  int64_t input_image_size;     /* prompt coordinate frame (1024) */
  int64_t mask_in_chans;        /* mask_downscaling width (16; parameters only) */
  int64_t depth, num_heads, mlp_dim, downsample;
  int64_t num_multimask_outputs, iou_head_depth, iou_head_hidden_dim;
  double ln_eps, ln2d_eps;
  gboolean multimask_output; /* masks 1..3 (TRUE) or mask 0 only (LISA, MedSAM) */
} sam_dec_cfg;

void sam_dec_cfg_preset(sam_dec_cfg *c, const char *preset);

/* SAM's MLP: Linear layers with ReLU between (not after the last). */
typedef struct {
  pl_linear l[SAM_MAX_MLP_DEPTH];
  int n;
  pl_buf x[SAM_MAX_MLP_DEPTH]; /* input of layer i (x[0] a copy of the MLP input) */
  pl_buf y[SAM_MAX_MLP_DEPTH]; /* output of layer i (before ReLU) */
  pl_buf dx, dy;
} sam_mlp;

typedef struct sam_decoder sam_decoder;

/* The prompts of one call; NULL pointers are absent prompts. The text is
 * read by kernels (device memory of the decoder's device); coordinates and
 * labels are read on the host (host memory). */
typedef struct {
  int64_t B;
  const float *text;   /* (B, 1, C) LISA text embeddings, device memory */
  const float *boxes;  /* (B, 4) x0, y0, x1, y1 in input_image_size pixels */
  const float *points; /* (B, Np, 2) x, y in input_image_size pixels */
  const float *labels; /* (B, Np): 1 foreground, 0 background, -1 padding; NULL = all 1 */
  int64_t Np;
} sam_prompts;

/* A decoder that computes on `device`; its parameters stay host tensors
 * (initialised from rng, or zero for loading) until sam_decoder_to_device. */
/* precision: a ps_precision (kernels.h) for the table the decoder computes with */
sam_decoder *sam_decoder_new(const sam_dec_cfg *cfg, ps_device device, int precision, ps_rng *rng,
                             GError **error);
/* Moves every parameter to the decoder's device (nothing to do on the CPU). */
gboolean sam_decoder_to_device(sam_decoder *d, GError **error);
ps_device sam_decoder_device(const sam_decoder *d);
void sam_decoder_free(sam_decoder *d);
pl_params *sam_decoder_params(sam_decoder *d);
const sam_dec_cfg *sam_decoder_cfg(const sam_decoder *d);
/* Switches multimask_output (masks 1..NM-1 vs mask 0) for the next forward. */
void sam_decoder_set_multimask(sam_decoder *d, gboolean multimask);
/* Number of masks per prompt the decoder returns (1 or num_multimask_outputs). */
int64_t sam_decoder_mask_count(const sam_decoder *d);

/* get_dense_pe(): pe: (C, S, S) host memory with S = image_embedding_size,
 * from gauss: (2, C/2) the positional_encoding_gaussian_matrix, host memory. */
void sam_dense_pe(const sam_decoder *d, const float *gauss, float *pe);
/* Number of sparse prompt tokens per prompt. */
int64_t sam_sparse_count(const sam_prompts *pr);
/* The sparse prompt tokens of `pr`: out (B, Ns, C), device memory. */
gboolean sam_sparse_embed(sam_decoder *d, const sam_prompts *pr, float *out, GError **error);

/* image: (Bi, C, S, S) with Bi == B or 1 (shared), device memory. Outputs
 * (decoder-owned, device memory): *low_res: (B, m, 4S, 4S) logits, *iou: (B, m). */
gboolean sam_decoder_forward(sam_decoder *d, ps_context *ctx, const float *image, int64_t Bi,
                             const sam_prompts *pr, const float **low_res, const float **iou,
                             GError **error);
/* dlow: (B, m, 4S, 4S) and diou: (B, m) (either NULL), device memory. Adds
 * parameter gradients; *dimage: (Bi, C, S, S) and *dtext: (B, 1, C)
 * decoder-owned device memory (set when the pointers are non-NULL). */
gboolean sam_decoder_backward(sam_decoder *d, ps_context *ctx, const float *dlow, const float *diou,
                              const float **dimage, const float **dtext, GError **error);
