/* mae_device.h — MAE's parameter-free maths over the kernel table, for data
 * that lives in a device's memory (the host versions in mae.h stay the
 * references the tests compare with):
 *   - patchify: a transpose to NHWC and strided block copies;
 *   - the normalised-pixel loss: LayerNorm rows (the unbiased variance folded
 *     into eps and a constant weight), a row gather of the removed patches,
 *     their squared difference summed by sum_squares (in double);
 *   - int32 row ids (gathers and scatters) uploaded from the host.
 * Masks are host arrays: they are drawn on the host (mae.h) and decide which
 * rows are gathered. */
#pragma once

#include <pathseg/kernels.h>
#include <pathseg/plugin.h>

#include "../common/param_list.h"

G_BEGIN_DECLS

/* int32 ids in k's memory, uploaded from a host array kept with them so that
 * steady-state steps allocate nothing. */
typedef struct {
  pl_buf dev;    /* n int32 (a float buffer of the same size) */
  int32_t *host; /* cap */
  int64_t n, cap;
} mae_ids;

/* Host array of at least n ids (for the caller to fill before mae_ids_upload). */
int32_t *mae_ids_host(mae_ids *ids, int64_t n);
/* Copies the first n host ids to k's memory; returns them there, or NULL with an error. */
const int32_t *mae_ids_upload(mae_ids *ids, const ps_kernels *k, int64_t n, GError **error);
void mae_ids_clear(mae_ids *ids);

/* x: (N, h*w, p*p*C) = patchify(imgs: (N, C, h*p, w*p)), both in k's memory;
 * a temporary of the image's size comes from the context's scratch. */
gboolean mae_patchify_dev(const ps_kernels *k, ps_context *ctx, float *x, const float *imgs,
                          int64_t N, int64_t C, int64_t h, int64_t w, int64_t p, GError **error);

/* forward_loss as mae_loss (mae.h), in k's memory: target: (N, L, P)
 * (normalised in place when norm_pix), pred: (N, L, P), dpred: (N, L, P) +=
 * dloss * d loss / d pred, or NULL. mask: (N, L) on the HOST, 0 (kept) or
 * not 0 (removed, weight 1). *loss gets sum over removed patches of
 * mean_d (pred - target)^2 / their count (0 when none is removed). */
gboolean mae_loss_dev(const ps_kernels *k, ps_context *ctx, mae_ids *ids, float *dpred,
                      const float *pred, float *target, const float *mask, int64_t N, int64_t L,
                      int64_t P, gboolean norm_pix, double eps, double dloss, double *loss,
                      GError **error);

G_END_DECLS
