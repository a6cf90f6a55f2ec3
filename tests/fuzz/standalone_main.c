/* standalone_main.c — replays fuzz inputs without libFuzzer.
 *
 * Linked with a fuzz target (anything defining LLVMFuzzerTestOneInput), this
 * main runs the target once on every file named on the command line and on
 * every regular file found (recursively) in every directory named, in sorted
 * order, and prints how many inputs it ran. It exits 0 when all of them
 * returned (a crash or a sanitizer report ends the process first), 1 when a
 * path cannot be read. Arguments starting with '-' are ignored, so libFuzzer
 * command lines (-runs=..., -dict=...) work unchanged.
 *
 * Each input is copied into a buffer of exactly its size, so that
 * AddressSanitizer sees a read one byte past the end (a file loader's
 * trailing NUL would hide it). */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional, as in libFuzzer. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static gboolean run_file(const char *path, unsigned long *count) {
  g_autofree char *contents = NULL;
  gsize len = 0;
  g_autoptr(GError) error = NULL;
  if (!g_file_get_contents(path, &contents, &len, &error)) {
    fprintf(stderr, "standalone_main: %s\n", error->message);
    return FALSE;
  }
  /* malloc(0) may return NULL; libFuzzer always passes a valid pointer. */
  uint8_t *copy = malloc(len ? len : 1);
  if (copy == NULL) {
    fprintf(stderr, "standalone_main: out of memory reading %s\n", path);
    return FALSE;
  }
  if (len)
    memcpy(copy, contents, len);
  printf("running %s (%zu bytes)\n", path, (size_t)len);
  fflush(stdout); /* so the last name is visible if the target crashes */
  LLVMFuzzerTestOneInput(copy, len);
  free(copy);
  (*count)++;
  return TRUE;
}

static gint compare_names(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static gboolean run_path(const char *path, unsigned long *count) {
  if (!g_file_test(path, G_FILE_TEST_IS_DIR))
    return run_file(path, count);
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = g_dir_open(path, 0, &error);
  if (dir == NULL) {
    fprintf(stderr, "standalone_main: %s\n", error->message);
    return FALSE;
  }
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(dir)) != NULL)
    g_ptr_array_add(names, g_strdup(name));
  g_ptr_array_sort(names, compare_names);
  gboolean ok = TRUE;
  for (guint i = 0; i < names->len; i++) {
    g_autofree char *child = g_build_filename(path, g_ptr_array_index(names, i), NULL);
    if (g_file_test(child, G_FILE_TEST_IS_DIR) || g_file_test(child, G_FILE_TEST_IS_REGULAR))
      ok = run_path(child, count) && ok;
  }
  return ok;
}

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize)
    LLVMFuzzerInitialize(&argc, &argv);
  unsigned long count = 0;
  gboolean ok = TRUE;
  int paths = 0;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-')
      continue;
    paths++;
    ok = run_path(argv[i], &count) && ok;
  }
  if (paths == 0) {
    fprintf(stderr, "usage: %s FILE|DIR...  (runs LLVMFuzzerTestOneInput on each input)\n",
            argv[0]);
    return 1;
  }
  printf("standalone_main: ran %lu inputs\n", count);
  return ok ? 0 : 1;
}
