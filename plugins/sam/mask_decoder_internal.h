/* mask_decoder_internal.h — the decoder object shared by mask_decoder.c
 * (mask decoder) and prompt_encoder.c (prompt encoder). */
#pragma once

#include "mask_decoder.h"

struct sam_decoder {
  sam_dec_cfg cfg;
  ps_device dev;       /* where parameters, activations and gradients live */
  const ps_kernels *k; /* dev's table */
  pl_params P;
  int64_t C, S, HW, NM, C4, C8, m;
  /* prompt encoder parameters */
  int gauss, pt[4], not_a_point, no_mask;
  /* mask decoder parameters */
  int iou_token, mask_tokens, up0w, up0b, up1w, up1b, up3w, up3b;
  tw_transformer tw;
  sam_mlp hyper[SAM_MAX_MASK_TOKENS];
  sam_mlp iou_head;
  /* the last forward */
  int64_t B, Bi, Ns, Nq;
  sam_prompts pr;
  pl_buf pe, kpe, sparse, tokens, imgT, src;
  pl_buf kf_nchw, u1, u1n, u1m, u1r, u1g, u2, up, mt, hyper_in, masks, iou_all, low, iou;
  /* backward */
  pl_buf dmasks, dhyper, dup, du2, du1g, du1n, du1, dkf_nchw, dKf, dQf, diou_all, dmt, dimg, dtext;
  /* host side of the prompt encoder (sam_host.h): the gaussian matrix the
   * dense PE in pe/kpe was made from (pe_gauss, pe_ready: it is remade only
   * when the matrix changes), a host copy of the matrix, host PE and sparse
   * token staging */
  sam_host_buf pe_gauss, h_gauss, h_pe, h_sparse;
  gboolean pe_ready;
};

/* Random-Fourier encoding of one point (x, y in [0, 1]) with gauss: (2, C/2)
 * host memory: out (C) host memory with element stride `stride` (1 for a
 * row, HW for a channel-major map). */
void sam_pe_encode(const float *gauss, int64_t C, float x, float y, float *out, int64_t stride);
/* The gaussian matrix (2, C/2) in host memory: the parameter itself on the
 * CPU, else a host copy (NULL with an error when there is no memory for it). */
const float *sam_gauss_host(sam_decoder *d, GError **error);
/* Gradients of the sparse tokens: dsparse (B, Ns, C) with row stride `ld`
 * floats between prompts -> point-embedding parameters and *dtext (B, C),
 * all device memory. */
void sam_sparse_backward(sam_decoder *d, const float *dsparse, int64_t ld, float *dtext);
