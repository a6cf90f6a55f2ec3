/* lab_opencv.h — sRGB <-> CIE L*a*b* exactly as OpenCV 4.6 cv::cvtColor computes it.
 *
 * RandStainNA works on OpenCV's 8-bit Lab (L*255/100, a+128, b+128). OpenCV
 * evaluates it in fixed point with lookup tables, and a float formula with
 * rounding is 1-3 levels off on a few percent of pixels, which the RandStainNA
 * gain and truncation amplify. This module is our own implementation of the
 * same fixed-point algorithm (tables built the same way, in the same float /
 * double precision), so the 8-bit paths are bit-exact:
 *
 *   - ps_lab_from_rgb_u8:  COLOR_RGB2LAB / COLOR_BGR2LAB on uint8
 *     (gamma table, coefficients scaled by 2^12 and divided by the D65 white,
 *     a cube-root table indexed in 1/2040 steps, rounding shifts);
 *   - ps_lab_to_rgb_u8:    COLOR_LAB2RGB / COLOR_LAB2BGR on uint8 (the integer
 *     path: L -> (y, f(y)) table, a/b -> x/z table, 2^14 fixed point matrix,
 *     4096-entry inverse-gamma table);
 *   - ps_lab_from_rgb_f32: the float32 forward path, which OpenCV evaluates by
 *     trilinear interpolation in a 33^3 int16 lookup table (not the formula);
 *   - ps_lab_to_rgb_f32:   the float32 inverse (analytic, with OpenCV's cubic
 *     spline for the inverse gamma).
 *
 * Images are interleaved pixels, 3 channels; `order` says whether the colour
 * side is RGB or BGR. The tables are built once, on first use, thread-safely.
 * All functions are safe to call from several threads at once. */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum { PS_LAB_RGB, PS_LAB_BGR } ps_lab_order;

/* src: (n, 3) u8 colour in `order`; dst: (n, 3) u8 Lab (L*255/100, a+128, b+128). */
void ps_lab_from_rgb_u8(const uint8_t *src, uint8_t *dst, size_t n, ps_lab_order order);
/* lab: (n, 3) u8 Lab; dst: (n, 3) u8 colour in `order` (out-of-gamut values clipped). */
void ps_lab_to_rgb_u8(const uint8_t *lab, uint8_t *dst, size_t n, ps_lab_order order);
/* src: (n, 3) f32 colour in [0, 1] (clipped); dst: (n, 3) f32 Lab, L in [0, 100], a, b signed. */
void ps_lab_from_rgb_f32(const float *src, float *dst, size_t n, ps_lab_order order);
/* lab: (n, 3) f32 Lab; dst: (n, 3) f32 colour in [0, 1]. */
void ps_lab_to_rgb_f32(const float *lab, float *dst, size_t n, ps_lab_order order);

G_END_DECLS
