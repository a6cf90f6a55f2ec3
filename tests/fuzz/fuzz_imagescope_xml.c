/* fuzz_imagescope_xml.c — libFuzzer target for the Aperio ImageScope XML
 * reader (plugins/converters/imagescope_xml.c, MoNuSeg's nucleus outlines)
 * and its label rasteriser.
 *
 * The raw bytes are parsed with their length. A rejected input must come
 * with an error naming the document; an accepted one must have regions of
 * at least 3 finite vertices and is rasterised into a small label image:
 * labels lie in [0, regions drawn], and the regions reported outside the
 * image are at most those drawn. */
#include <math.h>
#include <string.h>

#include "fuzz_common.h"
#include "imagescope_xml.h"

#define W 40
#define H 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_setup();
  GError *err = NULL;
  ps_imagescope *s = ps_imagescope_parse((const char *)data, (gssize)size, "fuzz.xml", &err);
  if (!s) {
    fuzz_require(err && strstr(err->message, "fuzz.xml"), "an error naming the document");
    g_error_free(err);
    return 0;
  }
  fuzz_require(isfinite(s->microns_per_pixel), "microns per pixel is finite");
  for (guint k = 0; k < s->regions->len; k++) {
    const ps_imagescope_region *r = g_ptr_array_index(s->regions, k);
    fuzz_require(r->n >= 3 && r->xy, "regions have at least 3 vertices");
    for (int i = 0; i < 2 * r->n; i++) fuzz_require(isfinite(r->xy[i]), "vertices are finite");
  }
  static int32_t labels[W * H];
  int outside = -1;
  int drawn = ps_imagescope_rasterise(s, labels, W, H, &outside);
  fuzz_require(drawn >= 0 && drawn <= (int)s->regions->len && outside >= 0 && outside <= drawn,
               "drawn and outside counts are consistent");
  for (int i = 0; i < W * H; i++) fuzz_require(labels[i] >= 0 && labels[i] <= drawn, "labels in [0, drawn]");
  ps_imagescope_free(s);
  return 0;
}
