/* mae.h — the parameter-free maths of MAE (facebookresearch/mae
 * models_mae.py, util/pos_embed.py), exactly as the official code does it:
 *   - patchify / unpatchify: imgs (N, C, H, W) <-> (N, L, p*p*C), patches
 *     row-major, each patch vector ordered (row in patch, column in patch,
 *     channel) with the channel fastest (einsum nchpwq->nhwpqc);
 *   - random masking from given noise: argsort ascending (small noise is
 *     kept), ids_restore = argsort(ids_shuffle), len_keep = int(L*(1-ratio))
 *     truncated, mask 1 = removed in the original patch order;
 *   - the fixed 2-D sin-cos table whose first half encodes the patch COLUMN;
 *   - the normalised-pixel loss with the UNBIASED per-patch variance and eps
 *     1e-6, averaged over the masked patches of the whole batch,
 * plus what the ssl_pretrain stage adds around them (masking patches in the
 * image itself, ids from a mask). The ViT parts are in mae_vit.h. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* x: (N, h*w, p*p*C) = patchify(imgs: (N, C, h*p, w*p)). */
void mae_patchify(float *x, const float *imgs, int64_t N, int64_t C, int64_t h, int64_t w,
                  int64_t p);
/* imgs: (N, C, h*p, w*p) = unpatchify(x: (N, h*w, p*p*C)). */
void mae_unpatchify(float *imgs, const float *x, int64_t N, int64_t C, int64_t h, int64_t w,
                    int64_t p);

/* int(L * (1 - ratio)) as Python computes it (double, truncation). */
int64_t mae_len_keep(int64_t L, double ratio);

/* random_masking's bookkeeping from noise: (N, L) each.
 * ids_shuffle = argsort(noise) (ascending; ties keep the lower index first,
 * a stable sort), ids_restore = argsort(ids_shuffle), mask[n, l] = 1 when
 * patch l is removed (its rank is >= len_keep), else 0. Any output may be NULL. */
void mae_masking_from_noise(int64_t *ids_shuffle, int64_t *ids_restore, float *mask,
                            const float *noise, int64_t N, int64_t L, int64_t len_keep);

/* The same bookkeeping from a mask (N, L) (1 = removed): kept patches in
 * ascending order, then removed ones in ascending order. Every row must keep
 * the same number of patches; returns it through *len_keep, or FALSE with an
 * error. (The decoder's output does not depend on the order of the kept
 * tokens: attention is permutation-equivariant and positions are added after
 * unshuffling, so this is equivalent to any noise that gave this mask.) */
gboolean mae_ids_from_mask(int64_t *ids_shuffle, int64_t *ids_restore, int64_t *len_keep,
                           const float *mask, int64_t N, int64_t L, GError **error);

/* get_2d_sincos_pos_embed: out (cls + gh*gw, D); with cls the first row is
 * zeros. Token t = r*gw + c; dims [0, D/2) encode c, [D/2, D) encode r; each
 * half is [sin(pos*omega), cos(pos*omega)] with omega_i = 1/10000^(i/(D/4)).
 * D must be a multiple of 4. Computed in double, stored as float. */
void mae_sincos_2d(float *out, int64_t D, int64_t gh, int64_t gw, gboolean cls);

/* forward_loss. target: (N, L, P) patchified images (normalised in place
 * when norm_pix: (t - mean) / sqrt(var_unbiased + eps)); pred: (N, L, P);
 * mask: (N, L). Returns sum(mask * mean_d (pred - target)^2) / sum(mask)
 * (0 when nothing is masked). dpred: (N, L, P) += dloss * d loss / d pred,
 * or NULL. Accumulates in double. */
double mae_loss(float *dpred, const float *pred, float *target, const float *mask, int64_t N,
                int64_t L, int64_t P, gboolean norm_pix, double eps, double dloss);

typedef enum { MAE_FILL_MEAN, MAE_FILL_ZERO } mae_fill;

/* The stage's SimMIM-style masking in pixel space: out (N, C, h*p, w*p) is
 * imgs with every removed patch (mask 1) set to zero or to the mean, per
 * image and channel, of the VISIBLE pixels (so no statistic of a hidden patch
 * leaks in). Not in place. */
void mae_mask_image(float *out, const float *imgs, const float *mask, int64_t N, int64_t C,
                    int64_t h, int64_t w, int64_t p, mae_fill fill);

G_END_DECLS
