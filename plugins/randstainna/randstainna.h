/* randstainna.h — RandStainNA stain augmentation (spec/algorithms.md §1).
 *
 * The pieces, each usable on its own (the preprocessing stage fits
 * templates, the augmenter component samples and transforms):
 *
 *   ps_stain_lab_stats      per-channel mean and population std of a uint8
 *                           OpenCV Lab image (optionally weighted by a mask)
 *   ps_stain_template_fit   the dataset template from per-image statistics,
 *                           as preprocess/datasets_statistics.py builds it
 *   ps_stain_sample         one virtual template, drawn in the reference order
 *   ps_stain_transform_lab  the Reinhard transform in Lab, clipped, truncated
 *   ps_stain_augment_rgb    RGB in -> RGB out (Lab, stats, transform, back)
 *
 * All statistics are on the uint8 Lab scale (L*255/100, a+128, b+128), the
 * scale of the template YAML files RandStainNA ships. */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

#include <pathseg/rng.h>

G_BEGIN_DECLS

typedef enum {
  PS_STAIN_NORMAL,  /* np.random.normal(loc, scale) */
  PS_STAIN_LAPLACE, /* np.random.laplace(loc, scale), scale = b */
  PS_STAIN_UNIFORM, /* U(mean - 3 std, mean + 3 std), std_hyper unused */
  PS_STAIN_FITTED,  /* each draw uses the distribution fitted for it (timm variant) */
} ps_stain_dist;

/* "normal"/"norm", "laplace", "uniform", "fitted"; FALSE for anything else. */
gboolean ps_stain_dist_from_name(const char *name, ps_stain_dist *out);
const char *ps_stain_dist_name(ps_stain_dist d);

/* A dataset template: for each Lab channel, the distribution over images of
 * the image mean (avg) and of the image std (std). */
typedef struct {
  double avg_mean[3], avg_std[3];
  double std_mean[3], std_std[3];
  ps_stain_dist avg_dist[3], std_dist[3]; /* NORMAL or LAPLACE */
} ps_stain_template;

/* The CRC template shipped with RandStainNA (CRC_LAB_randomTrue_n0.yaml). */
void ps_stain_template_crc(ps_stain_template *t);

/* Mean and population std (ddof 0) of each channel of lab: (n, 3) u8.
 * weight: (n,) in [0, 1] or NULL; with weights w (1 - weight when
 * `complement`), the weighted mean and variance (sum w (x - m)^2 / sum w).
 * FALSE when the weights sum to 0 or n is 0 (stats undefined; outputs
 * untouched). Computed from a value histogram, so the result does not depend
 * on the summation order (and the plain mean is exact, as numpy's). */
gboolean ps_stain_lab_stats(const uint8_t *lab, size_t n, const float *weight, gboolean complement,
                            double mean[3], double std[3]);

/* The statistics of an RGB image as the template builder takes them
 * (cv2.imread, COLOR_BGR2LAB, then per-channel mean/std): rgb: (n, 3) u8,
 * scratch: (n, 3) u8 for its Lab. FALSE when n is 0. */
gboolean ps_stain_rgb_stats(const uint8_t *rgb, size_t n, uint8_t *scratch, double mean[3],
                            double std[3]);

/* Fits a template from per-image statistics means: (n, 3), stds: (n, 3).
 * mean/std of each list (population std), each rounded to 3 decimals as the
 * reference does; the distribution of each list is normal or Laplace,
 * whichever fitted pdf (MLE: mean/std; median/mean absolute deviation) has
 * the lower sum of squared errors against a density histogram of the list
 * with 100 equal bins over [min, max] (the `fitter` package defaults). A list
 * with zero spread keeps NORMAL. Needs n >= 1. */
gboolean ps_stain_template_fit(const double *means, const double *stds, size_t n,
                               ps_stain_template *out, GError **error);

/* The sum of squared errors of a fitted pdf against the 100-bin density
 * histogram of x: (n,); exposed for tests. */
double ps_stain_fit_sse(const double *x, size_t n, ps_stain_dist dist);

/* Draws a virtual template. First one uniform u decides augmentation
 * (u < probability); when it does, for c = L, A, B: tar_mean[c] then
 * tar_std[c], each from `dist` (PS_STAIN_FITTED: the template's own per-stat
 * distribution) with scale std * (1 + std_hyper). The drawn std is not
 * clamped (a negative one flips the contrast), as in the reference.
 * Returns whether to augment; when FALSE, nothing else was drawn. */
gboolean ps_stain_sample(const ps_stain_template *t, double std_hyper, double probability,
                         ps_stain_dist dist, ps_rng *rng, double tar_mean[3], double tar_std[3]);

/* lab, out: (n, 3) u8. out = trunc(clip((lab - img_mean) * (tar_std / s) +
 * tar_mean, 0, 255)) per channel in double, s = clip(img_std, std_min, 255).
 * lab and out may be the same buffer. */
void ps_stain_transform_lab(const uint8_t *lab, size_t n, const double img_mean[3],
                            const double img_std[3], const double tar_mean[3],
                            const double tar_std[3], double std_min, uint8_t *out);

/* RGB -> OpenCV Lab -> transform -> RGB. rgb, out: (n, 3) u8 (may alias);
 * scratch: (n, 3) u8. weight: (n,) or NULL (and complement), used for the
 * image statistics only, as in ps_stain_lab_stats. Returns FALSE (out
 * untouched) when the weighted stats are undefined. */
gboolean ps_stain_augment_rgb(const uint8_t *rgb, size_t n, const float *weight,
                              gboolean complement, const double tar_mean[3],
                              const double tar_std[3], double std_min, uint8_t *scratch,
                              uint8_t *out);

/* RandStainNA++ blend: out = trunc(fg * m + bg * (1 - m)) in double.
 * fg, bg, out: (n, 3) u8; mask: (n,) in [0, 1]. out may alias fg or bg. */
void ps_stain_blend(const uint8_t *fg, const uint8_t *bg, const float *mask, size_t n,
                    uint8_t *out);

/* The template as RandStainNA's YAML (color_space LAB); g_free it. */
char *ps_stain_template_to_yaml(const ps_stain_template *t);

G_END_DECLS
