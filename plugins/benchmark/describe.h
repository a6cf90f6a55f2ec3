/* describe.h — descriptors measured from an image and a mask, the facts a
 * reasoning chain is written from: how much of the tile the target covers,
 * in how many pieces, how irregular its outline is, where it lies and what
 * colour it has. Works for any source (synthetic or real). */
#pragma once

#include <glib.h>
#include <pathseg/annotator.h>
#include <stdint.h>

/* The descriptor record is public (pathseg/annotator.h): annotator plugins
 * read it. */
typedef ps_image_descriptors ps_descriptors;

/* rgb: (h, w, 3) u8; mask: (h, w) u8 {0, nonzero}. scratch: at least h*w
 * int32 (component labels), or NULL to allocate. */
void ps_describe(const uint8_t *rgb, const uint8_t *mask, int w, int h, int min_component,
                 int32_t *scratch, ps_descriptors *out);
