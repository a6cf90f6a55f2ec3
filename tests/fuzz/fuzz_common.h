/* fuzz_common.h — helpers shared by the fuzz harnesses (header only, so that
 * the fuzz_*.c glob does not take it for a target).
 *
 * - fuzz_setup(): makes GLib criticals and warnings fatal, so that a parser
 *   calling a json-glib/GLib accessor on the wrong node type (a
 *   g_return_if_fail that only logs in production) is reported as a crash.
 * - fuzz_write_temp(): parsers that only take a path get the input through
 *   a file in a private temporary directory; nothing is written anywhere
 *   else. The harness calls fuzz_tmp_end() before it returns, which removes
 *   the files and the directory (libFuzzer leaves with _Exit, so at-exit
 *   cleanup would not run). */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static char *fuzz_tmp_dir_;
static GPtrArray *fuzz_tmp_files_;

static inline void fuzz_tmp_end(void) {
  for (guint i = 0; fuzz_tmp_files_ && i < fuzz_tmp_files_->len; i++)
    g_unlink(g_ptr_array_index(fuzz_tmp_files_, i));
  if (fuzz_tmp_dir_) g_rmdir(fuzz_tmp_dir_);
  g_clear_pointer(&fuzz_tmp_files_, g_ptr_array_unref);
  g_clear_pointer(&fuzz_tmp_dir_, g_free);
}

static inline void fuzz_setup(void) {
  static gboolean done;
  if (done) return;
  done = TRUE;
  g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_ERROR);
}

/* Writes data into <private tmp dir>/<name> and returns that path (owned
 * here, valid until fuzz_tmp_end). Aborts when the file cannot be written: a harness
 * that cannot feed its parser must not pass silently. */
static inline const char *fuzz_write_temp(const char *name, const uint8_t *data, size_t size) {
  fuzz_setup();
  if (!fuzz_tmp_dir_) {
    GError *err = NULL;
    fuzz_tmp_dir_ = g_dir_make_tmp("pathseg-fuzz-XXXXXX", &err);
    if (!fuzz_tmp_dir_) {
      fprintf(stderr, "fuzz: cannot make a temporary directory: %s\n", err->message);
      abort();
    }
    fuzz_tmp_files_ = g_ptr_array_new_with_free_func(g_free);
  }
  g_autofree char *want = g_build_filename(fuzz_tmp_dir_, name, NULL);
  const char *path = NULL;
  for (guint i = 0; i < fuzz_tmp_files_->len && !path; i++)
    if (g_str_equal(g_ptr_array_index(fuzz_tmp_files_, i), want)) path = g_ptr_array_index(fuzz_tmp_files_, i);
  if (!path) {
    g_ptr_array_add(fuzz_tmp_files_, g_steal_pointer(&want));
    path = g_ptr_array_index(fuzz_tmp_files_, fuzz_tmp_files_->len - 1);
  }
  /* A plain write: g_file_set_contents would add a temporary sibling and a rename per input. */
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
    fprintf(stderr, "fuzz: cannot write %s\n", path);
    abort();
  }
  return path;
}

static inline void fuzz_require(gboolean cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "fuzz: invariant violated: %s\n", what);
    abort();
  }
}
