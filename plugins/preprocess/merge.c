/* merge.c — the final step of stage.preprocess_slides: the per-slide
 * manifests of the finished slides concatenated into out_dir/manifest.jsonl
 * with paths relative to out_dir and one split per slide (8:1:1 by a hash of
 * the slide stem, so no slide is ever in two splits). Several jobs may merge
 * at once: each writes a private temporary file and renames it into place,
 * and the result is the same whoever wins. */
#include <glib/gstdio.h>
#include <pathseg/error.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "manifest.h"
#include "preprocess.h"

static char *prefixed(const char *stem, const char *path) {
  return path ? g_strdup_printf("%s/%s", stem, path) : NULL;
}

gboolean pp_merge(const pp_config *cfg, GPtrArray *jobs, int64_t *n_rows, gboolean *rewritten, GError **error) {
  g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func((GDestroyNotify)ps_manifest_row_free);
  for (guint i = 0; i < jobs->len; i++) {
    const pp_slide_job *job = g_ptr_array_index(jobs, i);
    if (!pp_slide_done(cfg, job->stem)) continue;
    g_autofree char *path = g_build_filename(cfg->out_dir, job->stem, "manifest.jsonl", NULL);
    g_autoptr(GPtrArray) rows = ps_manifest_read(path, error);
    if (!rows) return FALSE;
    for (guint k = 0; k < rows->len; k++) {
      ps_manifest_row *r = g_ptr_array_index(rows, k);
      char *image = prefixed(job->stem, r->image), *mask = prefixed(job->stem, r->mask);
      g_free(r->image);
      g_free(r->mask);
      r->image = image;
      r->mask = mask;
      g_free(r->split);
      r->split = g_strdup(ps_manifest_split_for(job->stem, cfg->seed));
      g_free(r->group);
      r->group = g_strdup(job->stem);
      g_ptr_array_add(all, r);
    }
    g_ptr_array_set_free_func(rows, NULL); /* the rows now belong to `all` */
  }
  *n_rows = all->len;
  g_autofree char *final = g_build_filename(cfg->out_dir, "manifest.jsonl", NULL);
  g_autofree char *tmp = g_strdup_printf("%s.merge-%d-%p", final, (int)getpid(), (void *)all);
  if (!ps_manifest_write(tmp, all, error)) return FALSE;
  /* Rewrite only when the content changed: a rerun touches nothing. */
  g_autofree char *a = NULL, *b = NULL;
  gsize la = 0, lb = 0;
  if (g_file_get_contents(tmp, &a, &la, NULL) && g_file_get_contents(final, &b, &lb, NULL) && la == lb &&
      memcmp(a, b, la) == 0) {
    g_unlink(tmp);
    *rewritten = FALSE;
    return TRUE;
  }
  if (g_rename(tmp, final) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot rename %s to %s: %s", tmp, final, g_strerror(errno));
    g_unlink(tmp);
    return FALSE;
  }
  *rewritten = TRUE;
  return TRUE;
}
