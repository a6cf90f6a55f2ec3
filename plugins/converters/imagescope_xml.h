/* imagescope_xml.h — Aperio ImageScope annotation XML, as MoNuSeg ships its
 * nucleus outlines:
 *
 *   <Annotations MicronsPerPixel="0.2525"><Annotation Id="1" ...><Regions>
 *     <Region Id="1" NegativeROA="0" ...><Vertices><Vertex X=".." Y=".."/>...
 *     </Vertices></Region>...</Regions></Annotation></Annotations>
 *
 * Each <Region> is one closed polygon in image pixels (x = column, y = row).
 * Parsed with GMarkupParser; rasterised with the scanline filler of
 * asap_xml.h (pixel centres, even-odd). */
#pragma once

#include <glib.h>
#include <stdint.h>

typedef struct ps_imagescope_region {
  int n;
  double *xy; /* (n, 2) x, y */
  gboolean negative; /* NegativeROA="1": a hole, carved out */
} ps_imagescope_region;

typedef struct ps_imagescope {
  double microns_per_pixel; /* 0 when absent */
  GPtrArray *regions;       /* ps_imagescope_region*, document order */
  int dropped;              /* regions with fewer than 3 vertices */
} ps_imagescope;

ps_imagescope *ps_imagescope_read(const char *path, GError **error);
ps_imagescope *ps_imagescope_parse(const char *text, gssize len, const char *name, GError **error);
void ps_imagescope_free(ps_imagescope *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_imagescope, ps_imagescope_free)

/* labels: (h, w) int32, overwritten: the k-th positive region (1-based, in
 * document order) is drawn with value k, later regions over earlier ones;
 * negative regions are then cleared to 0. Returns the number of positive
 * regions drawn; *outside gets how many of them lie wholly outside the image. */
int ps_imagescope_rasterise(const ps_imagescope *s, int32_t *labels, int w, int h, int *outside);
