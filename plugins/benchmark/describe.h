/* describe.h — descriptors measured from an image and a mask, the facts a
 * reasoning chain is written from: how much of the tile the target covers,
 * in how many pieces, how irregular its outline is, where it lies and what
 * colour it has. Works for any source (synthetic or real). */
#pragma once

#include <glib.h>
#include <stdint.h>

typedef struct ps_descriptors {
  double area_fraction;    /* mask pixels / all pixels */
  int components;          /* 8-connected pieces of at least min_component pixels */
  int largest_component;   /* pixels */
  double irregularity;     /* perimeter^2 / (4 pi area) of the mask; 1 = a disc */
  double centroid_x, centroid_y; /* in [0, 1]; -1 when empty */
  double mean_rgb[3];      /* inside the mask; 0 when empty */
  double background_rgb[3];/* outside the mask */
  const char *location;    /* "upper left", "centre", ... or "nowhere" */
  const char *extent;      /* "absent", "focal", "patchy", "extensive", "diffuse" */
  const char *colour;      /* "basophilic (purple)", "eosinophilic (pink)", "pale", "brown (DAB-positive)", ... */
  const char *shape;       /* "smooth", "slightly irregular", "irregular", "highly irregular" */
} ps_descriptors;

/* rgb: (h, w, 3) u8; mask: (h, w) u8 {0, nonzero}. scratch: at least h*w
 * int32 (component labels), or NULL to allocate. */
void ps_describe(const uint8_t *rgb, const uint8_t *mask, int w, int h, int min_component,
                 int32_t *scratch, ps_descriptors *out);
