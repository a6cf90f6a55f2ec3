/* ps_test.h — the few assertions every pathseg test uses.
 *
 * Each PS_CHECK failure prints file:line and the expression, counts the
 * failure and continues; ps_test_finish() prints "N passed, N failed" and
 * returns the exit code. A test binary is one main() that runs its cases. */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Weak, not static: a test made of several files (a harness plus the test)
 * shares one pair of counters, so a check that fails in any file fails the
 * test. */
__attribute__((weak)) int ps_test_passed_ = 0;
__attribute__((weak)) int ps_test_failed_ = 0;

#define PS_CHECK(cond)                                                          \
  do {                                                                          \
    if (cond) {                                                                 \
      ps_test_passed_++;                                                        \
    } else {                                                                    \
      ps_test_failed_++;                                                        \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
    }                                                                           \
  } while (0)

#define PS_CHECK_MSG(cond, ...)                                                 \
  do {                                                                          \
    if (cond) {                                                                 \
      ps_test_passed_++;                                                        \
    } else {                                                                    \
      ps_test_failed_++;                                                        \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
      fprintf(stderr, __VA_ARGS__);                                             \
      fputc('\n', stderr);                                                      \
    }                                                                           \
  } while (0)

/* A call that must succeed: prints the GError and counts a failure. */
#define PS_CHECK_OK(call, err)                                                  \
  do {                                                                          \
    if (call) {                                                                 \
      ps_test_passed_++;                                                        \
    } else {                                                                    \
      ps_test_failed_++;                                                        \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,      \
              (err) ? (err)->message : "(no error set)");                       \
    }                                                                           \
    g_clear_error(&(err));                                                      \
  } while (0)

/* A call that must fail with an error message containing `needle`. */
#define PS_CHECK_FAILS_WITH(call, err, needle)                                  \
  do {                                                                          \
    gboolean ok_ = (call) ? TRUE : FALSE;                                       \
    if (!ok_ && (err) && strstr((err)->message, (needle))) {                    \
      ps_test_passed_++;                                                        \
    } else {                                                                    \
      ps_test_failed_++;                                                        \
      fprintf(stderr, "%s:%d: %s: expected an error containing \"%s\", got %s\n", \
              __FILE__, __LINE__, #call, (needle),                              \
              ok_ ? "success" : ((err) ? (err)->message : "no message"));      \
    }                                                                           \
    g_clear_error(&(err));                                                      \
  } while (0)

#define PS_CHECK_NEAR(a, b, tol)                                                \
  do {                                                                          \
    double a_ = (a), b_ = (b);                                                  \
    if (fabs(a_ - b_) <= (tol)) {                                               \
      ps_test_passed_++;                                                        \
    } else {                                                                    \
      ps_test_failed_++;                                                        \
      fprintf(stderr, "%s:%d: %s = %.9g, %s = %.9g, |diff| %.3g > %.3g\n",      \
              __FILE__, __LINE__, #a, a_, #b, b_, fabs(a_ - b_), (double)(tol)); \
    }                                                                           \
  } while (0)

/* Removes a directory tree the test made (not following symbolic links). */
static inline void ps_test_rm_tree(const char *path) {
  if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name(dir))) {
      char *child = g_build_filename(path, name, NULL);
      ps_test_rm_tree(child);
      g_free(child);
    }
    if (dir) g_dir_close(dir);
  }
  g_remove(path);
}

static inline int ps_test_finish(void) {
  printf("%d passed, %d failed\n", ps_test_passed_, ps_test_failed_);
  return ps_test_failed_ == 0 && ps_test_passed_ > 0 ? 0 : 1;
}

/* Path of a file in the source tree, from the PATHSEG_SOURCE_DIR that ctest sets. */
static inline char *ps_test_source_path(const char *relative) {
  const char *root = g_getenv("PATHSEG_SOURCE_DIR");
  return g_build_filename(root ? root : ".", relative, NULL);
}
