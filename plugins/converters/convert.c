/* convert.c — the converter driver (convert.h): options, logging and skips,
 * writing image/mask PNGs and manifest rows, directory helpers, and the
 * atomic manifest at the end. */
#include "convert.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <pathseg/error.h>
#include <pathseg/rng.h>
#include <string.h>

#include "annotate.h"
#include "describe.h"
#include "png_io.h"

const char conv_formats[] = "glas|crag|camelyon16|camelyon17|digestpath|wsss4luad|ebhi_seg|monuseg|cpm15";

void conv_options_init(conv_options *o) {
  memset(o, 0, sizeof *o);
  o->threshold = 128;
  o->min_component = 4;
  o->negatives = TRUE;
  o->downsample = 1;
}

void conv_log(conv_ctx *c, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  g_autofree char *msg = g_strdup_vprintf(format, ap);
  va_end(ap);
  if (c->o->log) c->o->log(c->o->log_user, msg);
}

void conv_skip(conv_ctx *c, const char *path, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  g_autofree char *why = g_strdup_vprintf(format, ap);
  va_end(ap);
  c->skipped++;
  if (!c->first_skip) c->first_skip = g_strdup_printf("%s: %s", conv_rel(c, path), why);
  conv_log(c, "skipped %s: %s", conv_rel(c, path), why);
}

void conv_skip_error(conv_ctx *c, const char *path, GError **error) {
  conv_skip(c, path, "%s", error && *error ? (*error)->message : "unknown error");
  g_clear_error(error);
}

gboolean conv_cancelled(conv_ctx *c) { return c->o->cancelled && c->o->cancelled(c->o->log_user); }

const char *conv_rel(conv_ctx *c, const char *path) {
  size_t n = strlen(c->o->input_dir);
  while (n > 1 && c->o->input_dir[n - 1] == G_DIR_SEPARATOR) n--; /* "dir/" as well as "dir" */
  if (strncmp(path, c->o->input_dir, n) == 0 && path[n] == G_DIR_SEPARATOR) return path + n + 1;
  return path;
}

char *conv_stem(const char *path) {
  char *base = g_path_get_basename(path);
  char *dot = strrchr(base, '.');
  if (dot && dot != base) *dot = '\0';
  return base;
}

int conv_cmp_str(gconstpointer a, gconstpointer b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_into(GPtrArray *out, const char *dir, char **suffixes, gboolean recursive) {
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  if (!d) return;
  for (const char *name = g_dir_read_name(d); name; name = g_dir_read_name(d)) {
    g_autofree char *path = g_build_filename(dir, name, NULL);
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
      if (recursive) list_into(out, path, suffixes, TRUE);
      continue;
    }
    if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) continue;
    g_autofree char *lower = g_ascii_strdown(name, -1);
    for (char **s = suffixes; *s; s++)
      if (g_str_has_suffix(lower, *s)) {
        g_ptr_array_add(out, g_steal_pointer(&path));
        break;
      }
  }
}

GPtrArray *conv_list(const char *dir, const char *suffixes, gboolean recursive) {
  g_autofree char *lower = g_ascii_strdown(suffixes, -1);
  g_auto(GStrv) parts = g_strsplit(lower, "|", -1);
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  list_into(out, dir, parts, recursive);
  g_ptr_array_sort(out, conv_cmp_str);
  return out;
}

char *conv_find_dir(const char *dir, const char *names) {
  g_auto(GStrv) parts = g_strsplit(names, "|", -1);
  for (char **n = parts; *n; n++) {
    char *p = g_build_filename(dir, *n, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR)) return p;
    g_free(p);
  }
  /* One level down: the archive's top folder (e.g. Warwick_QU_Dataset/). */
  g_autoptr(GPtrArray) subs = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  for (const char *e = d ? g_dir_read_name(d) : NULL; e; e = g_dir_read_name(d)) {
    char *p = g_build_filename(dir, e, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR))
      g_ptr_array_add(subs, p);
    else
      g_free(p);
  }
  g_ptr_array_sort(subs, conv_cmp_str);
  for (guint i = 0; i < subs->len; i++)
    for (char **n = parts; *n; n++) {
      char *p = g_build_filename(g_ptr_array_index(subs, i), *n, NULL);
      if (g_file_test(p, G_FILE_TEST_IS_DIR)) return p;
      g_free(p);
    }
  return NULL;
}

static char *safe_name(const char *s) {
  char *out = g_strdup(s);
  for (char *p = out; *p; p++)
    if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_' && *p != '.') *p = '_';
  return out;
}

static gboolean ensure_dir(conv_ctx *c, const char *kind, const char *source, GError **error) {
  g_autofree char *dir = g_build_filename(c->o->out_dir, kind, source, NULL);
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

char *conv_write_image(conv_ctx *c, const conv_item *it, const char *stem, const uint8_t *rgb, int w, int h,
                       GError **error) {
  if (!ensure_dir(c, "images", it->source, error)) return NULL;
  g_autofree char *safe = safe_name(stem);
  char *unique = g_strdup(safe);
  for (int k = 2; g_hash_table_contains(c->names, unique); k++) {
    g_free(unique);
    unique = g_strdup_printf("%s-%d", safe, k);
  }
  g_hash_table_add(c->names, unique);
  char *rel = g_strdup_printf("images/%s/%s.png", it->source, unique);
  g_autofree char *path = g_build_filename(c->o->out_dir, rel, NULL);
  if (!ps_png_write(path, rgb, w, h, 3, error)) {
    g_free(rel);
    return NULL;
  }
  c->images++;
  return rel;
}

static uint64_t fnv(uint64_t h, const char *s) {
  for (const char *p = s; p && *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ULL;
  return h;
}

gboolean conv_add_row(conv_ctx *c, const conv_item *it, const char *image_rel, const char *suffix,
                      const uint8_t *rgb, const uint8_t *mask, int w, int h, GError **error) {
  if (!ensure_dir(c, "masks", it->source, error)) return FALSE;
  g_autofree char *stem = conv_stem(image_rel);
  g_autofree char *rel = suffix ? g_strdup_printf("masks/%s/%s_%s.png", it->source, stem, suffix)
                                : g_strdup_printf("masks/%s/%s.png", it->source, stem);
  size_t n = (size_t)w * h;
  g_autofree uint8_t *m255 = g_malloc(n);
  for (size_t i = 0; i < n; i++) m255[i] = mask[i] ? 255 : 0;
  g_autofree char *path = g_build_filename(c->o->out_dir, rel, NULL);
  if (!ps_png_write(path, m255, w, h, 1, error)) return FALSE;

  g_autofree int32_t *scratch = g_new(int32_t, n);
  ps_descriptors d;
  ps_describe(rgb, m255, w, h, c->o->min_component, scratch, &d);
  ps_rng rng;
  ps_rng_seed(&rng, fnv(fnv(1469598103934665603ULL ^ c->o->seed, rel), it->source));
  ps_annotation_input in = {it->target, it->morphology, "he", it->organ ? it->organ : "human",
                            it->magnification, &d};
  ps_manifest_row *r = g_new0(ps_manifest_row, 1);
  ps_template_annotate(&in, &rng, &r->query, &r->reasoning);
  r->image = g_strdup(image_rel);
  r->mask = g_steal_pointer(&rel);
  r->source = g_strdup(it->source);
  r->group = g_strdup(it->group);
  r->target = g_strdup(it->target);
  r->morphology = g_strdup(it->morphology);
  r->stain = g_strdup("he");
  r->magnification = it->magnification;
  r->split = g_strdup(ps_manifest_split_for(it->group, c->o->seed));
  r->held_out = FALSE;
  r->width = w;
  r->height = h;
  r->review = g_strdup("pending");
  g_ptr_array_add(c->rows, r);
  return TRUE;
}

gboolean ps_convert(const conv_options *o, conv_stats *stats, GError **error) {
  if (!o->format || !o->input_dir || !o->out_dir) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "convert: format, input_dir and out_dir are required");
    return FALSE;
  }
  if (!g_file_test(o->input_dir, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "convert: input_dir %s is not a directory", o->input_dir);
    return FALSE;
  }
  if (!ps_png_init(error)) return FALSE;
  conv_ctx c = {o, g_ptr_array_new_with_free_func((GDestroyNotify)ps_manifest_row_free),
                g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL), 0, 0, NULL};
  gboolean ok;
  const char *f = o->format;
  if (strcmp(f, "glas") == 0) ok = conv_glas(&c, error);
  else if (strcmp(f, "crag") == 0) ok = conv_crag(&c, error);
  else if (strcmp(f, "camelyon16") == 0) ok = conv_camelyon(&c, FALSE, error);
  else if (strcmp(f, "camelyon17") == 0) ok = conv_camelyon(&c, TRUE, error);
  else if (strcmp(f, "digestpath") == 0) ok = conv_digestpath(&c, error);
  else if (strcmp(f, "wsss4luad") == 0) ok = conv_wsss4luad(&c, error);
  else if (strcmp(f, "ebhi_seg") == 0) ok = conv_ebhi_seg(&c, error);
  else if (strcmp(f, "monuseg") == 0) ok = conv_monuseg(&c, error);
  else if (strcmp(f, "cpm15") == 0) ok = conv_cpm15(&c, error);
  else {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "convert: unknown format '%s' (one of %s)", f, conv_formats);
    ok = FALSE;
  }
  if (ok && conv_cancelled(&c)) {
    g_set_error(error, PS_ERROR, PS_ERROR_CANCELLED, "convert: cancelled; no manifest written");
    ok = FALSE;
  }
  if (ok && c.rows->len == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "convert %s: nothing usable in %s (%d skipped%s%s); no manifest written", f, o->input_dir,
                c.skipped, c.first_skip ? ", first: " : "", c.first_skip ? c.first_skip : "");
    ok = FALSE;
  }
  if (ok) {
    g_autofree char *manifest = g_build_filename(o->out_dir, "manifest.jsonl", NULL);
    ok = ps_manifest_write(manifest, c.rows, error);
    if (ok) conv_log(&c, "%s: %u rows from %d images, %d skipped", manifest, c.rows->len, c.images, c.skipped);
  }
  if (stats) *stats = (conv_stats){c.images, (int)c.rows->len, c.skipped};
  g_ptr_array_unref(c.rows);
  g_hash_table_unref(c.names);
  g_free(c.first_skip);
  return ok;
}
