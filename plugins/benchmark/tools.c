/* tools.c — `pipeline dataset check | review` behind the "manifest_tools"
 * capability: report missing files, size mismatches, empty masks,
 * duplicates and leaked patients; list pending chains and record reviews. */
#include <string.h>

#include "benchmark.h"
#include "png_io.h"

static gboolean check(const char *manifest, GString *report, int64_t *problems, GError **error) {
  *problems = 0;
  if (!ps_png_init(error)) return FALSE;
  g_autoptr(GPtrArray) rows = ps_manifest_read(manifest, error);
  if (!rows) return FALSE;
  g_autofree char *dir = g_path_get_dirname(manifest);
  g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
  g_autoptr(GHashTable) split_of = g_hash_table_new(g_str_hash, g_str_equal);
#define PROBLEM(...)                                    \
  do {                                                  \
    g_string_append_printf(report, "row %u: ", i + 1);  \
    g_string_append_printf(report, __VA_ARGS__);        \
    g_string_append_c(report, '\n');                    \
    (*problems)++;                                      \
  } while (0)
  for (guint i = 0; i < rows->len; i++) {
    ps_manifest_row *r = g_ptr_array_index(rows, i);
    if (g_hash_table_contains(seen, r->image)) PROBLEM("duplicate image %s", r->image);
    g_hash_table_add(seen, r->image);
    const char *s = r->split;
    if (strcmp(s, "train") && strcmp(s, "val") && strcmp(s, "test") && strcmp(s, "zeroshot"))
      PROBLEM("unknown split '%s'", s);
    if (r->group) {
      const char *before = g_hash_table_lookup(split_of, r->group);
      if (before && strcmp(before, s) != 0) PROBLEM("patient %s is in both %s and %s", r->group, before, s);
      g_hash_table_insert(split_of, r->group, (gpointer)s);
    }
    if (!strstr(r->reasoning, "<SEG>")) PROBLEM("reasoning chain has no <SEG>");
    g_autofree char *ip = g_build_filename(dir, r->image, NULL);
    g_autofree char *mp = g_build_filename(dir, r->mask, NULL);
    int w = 0, h = 0, mw = 0, mh = 0;
    GError *local = NULL;
    g_autofree uint8_t *img = ps_png_read(ip, 3, &w, &h, &local);
    if (!img) {
      PROBLEM("image: %s", local->message);
      g_clear_error(&local);
      continue;
    }
    g_autofree uint8_t *mask = ps_png_read(mp, 1, &mw, &mh, &local);
    if (!mask) {
      PROBLEM("mask: %s", local->message);
      g_clear_error(&local);
      continue;
    }
    if (mw != w || mh != h) PROBLEM("image %s is %dx%d but its mask %dx%d", r->image, w, h, mw, mh);
    if ((r->width && r->width != w) || (r->height && r->height != h))
      PROBLEM("manifest says %dx%d, image %s is %dx%d", r->width, r->height, r->image, w, h);
    int64_t on = 0;
    for (int64_t k = 0; k < (int64_t)mw * mh; k++) on += mask[k] > 127;
    if (on == 0) PROBLEM("empty mask %s", r->mask);
  }
#undef PROBLEM
  return TRUE;
}

static gboolean pending(const char *manifest, GString *report, GError **error) {
  g_autoptr(GPtrArray) rows = ps_manifest_read(manifest, error);
  if (!rows) return FALSE;
  for (guint i = 0; i < rows->len; i++) {
    ps_manifest_row *r = g_ptr_array_index(rows, i);
    if (r->review && strcmp(r->review, "pending") != 0) continue;
    g_string_append_printf(report, "%u: %s — %s\n    %s\n", i, r->image, r->query, r->reasoning);
  }
  return TRUE;
}

static gboolean review(const char *manifest, int64_t index, const char *reviewer,
                       const char *revised, GError **error) {
  g_autoptr(GPtrArray) rows = ps_manifest_read(manifest, error);
  if (!rows) return FALSE;
  if (index < 0 || index >= (int64_t)rows->len) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s has rows 0..%u; there is no row %" G_GINT64_FORMAT,
                manifest, rows->len ? rows->len - 1 : 0, index);
    return FALSE;
  }
  if (!reviewer || !*reviewer) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "a review needs a reviewer name");
    return FALSE;
  }
  if (revised && !strstr(revised, "<SEG>")) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "the revised reasoning chain must contain <SEG>");
    return FALSE;
  }
  ps_manifest_row *r = g_ptr_array_index(rows, index);
  g_autoptr(GDateTime) now = g_date_time_new_now_utc();
  g_free(r->review);
  g_free(r->reviewer);
  g_free(r->reviewed_at);
  r->review = g_strdup(revised ? "revised" : "approved");
  r->reviewer = g_strdup(reviewer);
  r->reviewed_at = g_date_time_format_iso8601(now);
  if (revised) {
    g_free(r->reasoning);
    r->reasoning = g_strdup(revised);
  }
  return ps_manifest_write(manifest, rows, error);
}

const ps_manifest_tools ps_bench_manifest_tools = {sizeof(ps_manifest_tools), check, pending, review};
