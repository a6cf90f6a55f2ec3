/* fixture_util.h — what the rl and metrics tests share for reading a
 * reference fixture (a file in tests/fixtures): open it, copy a tensor
 * out as float, read its tolerance, and compare an array elementwise with
 * `atol + rtol * |want|` as FORMAT.md defines a pass. */
#pragma once

#include <json-glib/json-glib.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"

typedef struct fx_tolerance {
  double atol, rtol;
} fx_tolerance;

/* tests/fixtures/NAME from the source tree; aborts the test when absent. */
static inline ps_safetensors *fx_open(const char *name) {
  g_autofree char *rel = g_build_filename("tests", "fixtures", name, NULL);
  g_autofree char *path = ps_test_source_path(rel);
  GError *error = NULL;
  ps_safetensors *st = ps_safetensors_open(path, &error);
  if (!st) {
    fprintf(stderr, "cannot open fixture %s: %s\n", path, error ? error->message : "?");
    exit(1);
  }
  return st;
}

/* A float copy of tensor NAME (ints converted); its element count in *n.
 * Aborts when missing: every caller needs it. */
static inline float *fx_f32(ps_safetensors *st, const char *name, int64_t *n) {
  GError *error = NULL;
  ps_tensor *t = ps_safetensors_get_f32(st, name, &error);
  if (!t) {
    fprintf(stderr, "fixture tensor %s: %s\n", name, error ? error->message : "?");
    exit(1);
  }
  int64_t count = ps_tensor_numel(t);
  float *out = g_new0(float, count > 0 ? count : 1);
  if (count > 0) memcpy(out, t->data, (size_t)count * sizeof(float));
  if (n) *n = count;
  ps_tensor_free(t);
  return out;
}

/* The int64 values of an I64 tensor (copied). */
static inline int64_t *fx_i64(ps_safetensors *st, const char *name, int64_t *n) {
  GError *error = NULL;
  const ps_tensor *t = ps_safetensors_get(st, name, &error);
  if (!t || t->dtype != PS_DTYPE_I64) {
    fprintf(stderr, "fixture tensor %s: %s\n", name, error ? error->message : "not I64");
    exit(1);
  }
  int64_t count = ps_tensor_numel(t);
  int64_t *out = g_new0(int64_t, count > 0 ? count : 1);
  if (count > 0) memcpy(out, t->data, (size_t)count * sizeof(int64_t));
  if (n) *n = count;
  return out;
}

/* The `tolerance` metadata; a missing key keeps the strict default. */
static inline fx_tolerance fx_tol(ps_safetensors *st) {
  fx_tolerance tol = {1e-6, 0.0};
  const char *text = ps_safetensors_metadata(st, "tolerance");
  g_autoptr(JsonParser) p = json_parser_new();
  if (text && json_parser_load_from_data(p, text, -1, NULL) &&
      JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    if (json_object_has_member(o, "atol")) tol.atol = json_object_get_double_member(o, "atol");
    if (json_object_has_member(o, "rtol")) tol.rtol = json_object_get_double_member(o, "rtol");
  }
  return tol;
}

/* Compares got[0..n) with the fixture's `name` within tol; one PS_CHECK per
 * array, reporting the worst element. */
static inline void fx_compare(ps_safetensors *st, const char *name, const float *got, int64_t n,
                              fx_tolerance tol) {
  int64_t nw = 0;
  g_autofree float *want = fx_f32(st, name, &nw);
  PS_CHECK_MSG(nw == n, "%s: %" G_GINT64_FORMAT " elements, computed %" G_GINT64_FORMAT, name, nw,
               n);
  if (nw != n) return;
  int64_t worst = -1, bad = 0;
  double worst_excess = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const double d = fabs((double)got[i] - (double)want[i]);
    const double lim = tol.atol + tol.rtol * fabs((double)want[i]);
    if (!(d <= lim)) {
      bad++;
      if (worst < 0 || d - lim > worst_excess) {
        worst = i;
        worst_excess = d - lim;
      }
    }
  }
  PS_CHECK_MSG(bad == 0,
               "%s: %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
               " elements out of tolerance; worst [%" G_GINT64_FORMAT "] got %.9g want %.9g",
               name, bad, n, worst, worst >= 0 ? got[worst] : 0.0, worst >= 0 ? want[worst] : 0.0);
}
