/* fuzz_asap_xml.c — libFuzzer target for the ASAP annotation XML reader and
 * its polygon rasteriser (plugins/converters/asap_xml.c).
 *
 * The raw bytes are parsed (with their length: the text is not
 * NUL-terminated). A rejected input must come with an error naming the
 * document; an accepted one gets its invariants checked (at least 3 finite
 * points per polygon, sign from the group) and is rasterised into a small
 * mask twice: over the bounding box of all polygons and over a fixed window
 * at a downsample taken from the input, so that far-away, huge or degenerate
 * coordinates reach the scanline code. The count of set pixels must match. */
#include <math.h>
#include <string.h>

#include "asap_xml.h"
#include "fuzz_common.h"

#define W 48
#define H 40

static void rasterise(const ps_asap_annotations *a, double x0, double y0, double ds) {
  static uint8_t mask[W * H];
  int64_t on = ps_asap_rasterise(a, mask, W, H, x0, y0, ds);
  int64_t count = 0;
  for (int i = 0; i < W * H; i++) {
    fuzz_require(mask[i] <= 1, "mask values are 0 or 1");
    count += mask[i];
  }
  fuzz_require(on == count, "the returned count is the number of set pixels");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_setup();
  GError *err = NULL;
  ps_asap_annotations *a = ps_asap_parse((const char *)data, (gssize)size, "fuzz.xml", &err);
  if (!a) {
    fuzz_require(err && strstr(err->message, "fuzz.xml"), "an error naming the document");
    g_error_free(err);
    return 0;
  }
  for (guint k = 0; k < a->polygons->len; k++) {
    const ps_asap_polygon *p = g_ptr_array_index(a->polygons, k);
    fuzz_require(p->n >= 3 && p->xy, "polygons have at least 3 points");
    for (int i = 0; i < 2 * p->n; i++) fuzz_require(isfinite(p->xy[i]), "coordinates are finite");
    fuzz_require(p->sign == ps_asap_group_sign(p->group), "sign follows the group");
  }
  double box[4];
  if (ps_asap_bounds(a, 0, box)) {
    double ds = fmax((box[2] - box[0]) / W, (box[3] - box[1]) / H);
    rasterise(a, box[0], box[1], ds > 0 && isfinite(ds) ? ds : 1.0);
  }
  /* A downsample from the input's first bytes: 2^-8 .. 2^23. */
  double ds = ldexp(1.0, size ? (int)(data[0] % 32) - 8 : 0);
  rasterise(a, -ds * W / 2, -ds * H / 2, ds);
  ps_asap_free(a);
  return 0;
}
