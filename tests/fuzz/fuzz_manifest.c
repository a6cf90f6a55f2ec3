/* fuzz_manifest.c — libFuzzer target for the benchmark's triplet manifest
 * reader (plugins/benchmark/manifest.c, JSON Lines).
 *
 * The input is written to a file in a private temporary directory (the
 * reader takes a path) and read. A rejected input must come with an error
 * message that names the file; an accepted one must survive a round trip:
 * written with ps_manifest_write (into the same temporary directory) and read
 * again, every field comes back equal (review defaults to "pending"). */
#include <string.h>

#include "fuzz_common.h"
#include "manifest.h"

static void same(const char *a, const char *b, const char *what) {
  if (g_strcmp0(a, b) != 0) {
    fprintf(stderr, "manifest round trip changed %s: '%s' -> '%s'\n", what, a ? a : "(null)", b ? b : "(null)");
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write_temp("manifest.jsonl", data, size);
  GError *err = NULL;
  GPtrArray *rows = ps_manifest_read(path, &err);
  if (!rows) {
    fuzz_require(err && strstr(err->message, path), "an error naming the manifest");
    g_error_free(err);
    fuzz_tmp_end();
    return 0;
  }
  const char *again = fuzz_write_temp("roundtrip.jsonl", NULL, 0);
  fuzz_require(ps_manifest_write(again, rows, &err), "the rows read can be written");
  GPtrArray *back = ps_manifest_read(again, &err);
  fuzz_require(back && back->len == rows->len, "the rows written read back");
  for (guint i = 0; i < rows->len; i++) {
    const ps_manifest_row *a = g_ptr_array_index(rows, i), *b = g_ptr_array_index(back, i);
    same(a->image, b->image, "image");
    same(a->mask, b->mask, "mask");
    same(a->query, b->query, "query");
    same(a->reasoning, b->reasoning, "reasoning");
    same(a->split, b->split, "split");
    same(a->source, b->source, "source");
    same(a->group, b->group, "patient");
    same(a->target, b->target, "target");
    same(a->morphology, b->morphology, "morphology");
    same(a->stain, b->stain, "stain");
    same(a->review ? a->review : "pending", b->review, "review");
    same(a->reviewer, b->reviewer, "reviewer");
    same(a->reviewed_at, b->reviewed_at, "reviewed_at");
    fuzz_require(a->magnification == b->magnification && a->width == b->width && a->height == b->height &&
                     a->held_out == b->held_out,
                 "integer and boolean fields survive the round trip");
  }
  g_ptr_array_unref(back);
  g_ptr_array_unref(rows);
  fuzz_tmp_end();
  return 0;
}
