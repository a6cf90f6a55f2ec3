/* fuzz_image_io.c — libFuzzer target for the converters' own image readers
 * (plugins/converters/image_io.c): the uncompressed BMP reader (GlaS) and
 * CPM-15's ASCII label maps ("width height" then one label per pixel).
 *
 * Every input goes through both: written to input.bmp and input.txt in a
 * private temporary directory (both readers take a path). A rejected input
 * must come with an error naming the file; an accepted one has a positive
 * size and, for the BMP, indices for indexed files only; labels are >= 0. */
#include <string.h>

#include "fuzz_common.h"
#include "image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *err = NULL;
  const char *bmp_path = fuzz_write_temp("input.bmp", data, size);
  ps_bmp b;
  if (ps_bmp_load(bmp_path, &b, &err)) {
    fuzz_require(b.w > 0 && b.h > 0 && b.rgb && (b.index != NULL) == (b.bits <= 8), "a consistent BMP");
    ps_bmp_clear(&b);
  } else {
    fuzz_require(err && strstr(err->message, bmp_path), "a BMP error naming the file");
    g_clear_error(&err);
  }
  const char *txt_path = fuzz_write_temp("input.txt", data, size);
  int w = 0, h = 0;
  int32_t *labels = conv_load_ascii_labels(txt_path, &w, &h, &err);
  if (labels) {
    fuzz_require(w > 0 && h > 0, "a positive label map size");
    for (size_t i = 0; i < (size_t)w * h; i++) fuzz_require(labels[i] >= 0, "labels are >= 0");
    g_free(labels);
  } else {
    fuzz_require(err && strstr(err->message, txt_path), "a label map error naming the file");
    g_clear_error(&err);
  }
  fuzz_tmp_end();
  return 0;
}
