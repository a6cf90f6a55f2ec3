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

G_END_DECLS
