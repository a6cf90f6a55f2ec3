/* ssl_stain.h — the stain-invariant self-distillation term of Eq. 1 and the
 * small conversions the stage needs around it.
 *
 *   L_stain = alpha * mean_b [ (1 - cos(s_a[b], s_b[b])) * ||z_a[b] - z_b[b]||^2 ]
 *
 * z_a, z_b: pooled encoder features of two RandStainNA views of image b;
 * s_a, s_b: the views' stain vectors (Lab mean and std, augmenter output).
 * The cosine distance of the stain vectors is a per-image weight: no
 * gradient flows into s (the augmenter is not differentiable). cos uses
 * torch's cosine_similarity convention dot / max(|s_a| |s_b|, 1e-8). */
#pragma once

#include <glib.h>
#include <stdint.h>

#include <pathseg/kernels.h>
#include <pathseg/plugin.h>

#include "../common/param_list.h"

G_BEGIN_DECLS

/* Returns L_stain and, through *dist (may be NULL), the same mean without
 * alpha. za, zb: (B, C); sa, sb: (B, S). dza, dzb: (B, C) += dloss * dL/dz
 * (either may be NULL). Accumulates in double. */
double ssl_stain_loss(float *dza, float *dzb, const float *za, const float *zb, const float *sa,
                      const float *sb, int64_t B, int64_t C, int64_t S, double alpha, double dloss,
                      double *dist);

/* The variance guard against Eq. 1's collapse (VICReg's variance term, over
 * tokens rather than images): the stain term is smallest when every
 * embedding is the same, so alone it drives the encoder to a constant map.
 *
 *   L_var = gamma * mean_c relu(target - sqrt(var_c + 1e-4))
 *
 * var_c: the unbiased variance of channel c over all N tokens (every image of
 * both views, every position). In two parts so that data-parallel ranks can
 * sum the statistics first: ssl_variance_stats adds, for each channel, the
 * count, sum and sum of squares of emb: (B, C, HW) into stats: (C, 3), in
 * double; ssl_variance_loss turns the (summed) statistics into L_var and adds
 * dL/demb of this rank's tokens into demb: (B, C, HW) (NULL: no gradient).
 * *std_mean (may be NULL) gets the mean over channels of sqrt(var_c). */
void ssl_variance_stats(double *stats, const float *emb, int64_t B, int64_t C, int64_t HW);
double ssl_variance_loss(float *demb, const float *emb, const double *stats, int64_t B, int64_t C,
                         int64_t HW, double gamma, double target, double *std_mean);

/* z: (B, C) = mean over the HW positions of emb: (B, C, HW). */
void ssl_pool_mean(float *z, const float *emb, int64_t B, int64_t C, int64_t HW);
/* demb: (B, C, HW) = dz / HW broadcast over positions (overwrites). */
void ssl_pool_mean_backward(float *demb, const float *dz, int64_t B, int64_t C, int64_t HW);

/* out: (B, C, H, W) f32 in [0, 1] = inp: (B, H, W, C) u8 / 255. */
void ssl_u8_hwc_to_f32_chw(float *out, const uint8_t *inp, int64_t B, int64_t H, int64_t W,
                           int64_t C);

/* ---- the same on a device --------------------------------------------------
 * What the stage runs on the encoder's feature map, which lives in the
 * memory of the kernel table k: the same quantities through table entries
 * (the functions above stay the double-precision references of the tests).
 * Stain vectors and the variance statistics are a few numbers per image or
 * channel and are host arrays; temporaries come from the context's scratch. */

/* z: (B, C) = mean over HW of emb: (B, C, HW) (a product with a 1/HW column). */
gboolean ssl_pool_mean_dev(const ps_kernels *k, ps_context *ctx, float *z, const float *emb,
                           int64_t B, int64_t C, int64_t HW, GError **error);
/* demb: (B, C, HW) = dz: (B, C) / HW broadcast over positions (overwrites). */
gboolean ssl_pool_mean_backward_dev(const ps_kernels *k, ps_context *ctx, float *demb,
                                    const float *dz, int64_t B, int64_t C, int64_t HW,
                                    GError **error);
/* ssl_stain_loss with za, zb, dza, dzb: (B, C) in k's memory and sa, sb:
 * (B, S) on the host; the loss in *loss. */
gboolean ssl_stain_loss_dev(const ps_kernels *k, ps_context *ctx, float *dza, float *dzb,
                            const float *za, const float *zb, const float *sa, const float *sb,
                            int64_t B, int64_t C, int64_t S, double alpha, double dloss,
                            double *loss, double *dist, GError **error);

/* The variance guard on a device, in the two parts of the host version:
 * ssl_variance_stats_dev adds this rank's (count, sum, sum of squares) per
 * channel to the host stats: (C, 3). It centres the tokens on their float
 * channel means first (transposed to (B, HW, C), kept in `v` for the
 * gradient), so the sums of squares carry no cancellation; the statistics
 * are exact for that centre. ssl_variance_loss_dev, after any all-reduce,
 * gives the loss and adds the gradient into demb: (B, C, HW) (k's memory, or
 * NULL); call it in the same step (the centred tokens are context scratch). */
typedef struct {
  float *xt;     /* (B, HW, C) centred tokens, scratch */
  pl_buf row;    /* (C) a device row */
  float *host;   /* (C) host floats */
  float *centre; /* (C) the centre subtracted from each channel */
  float *shift;  /* (C) host floats */
  int64_t C, cap;
} ssl_var_dev;

gboolean ssl_variance_stats_dev(ssl_var_dev *v, const ps_kernels *k, ps_context *ctx, double *stats,
                                const float *emb, int64_t B, int64_t C, int64_t HW, GError **error);
gboolean ssl_variance_loss_dev(ssl_var_dev *v, const ps_kernels *k, float *demb,
                               const double *stats, int64_t B, int64_t C, int64_t HW, double gamma,
                               double target, double *loss, double *std_mean, GError **error);
void ssl_var_dev_clear(ssl_var_dev *v);

G_END_DECLS
