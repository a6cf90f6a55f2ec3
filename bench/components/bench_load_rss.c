/* bench_load_rss.c — peak resident memory of loading a SAM ViT image
 * encoder checkpoint through encoder.medsam (`checkpoint:`), against the
 * size of the weights.
 *
 *   bench_load_rss [--depth N] [--check MAX_RATIO]
 *
 * The parent builds an encoder of SAM ViT-B shapes (width 768, 12 heads,
 * 1024 px, windows of 14, neck to 256; --depth blocks, 12 = the real ~90M
 * parameters) with random weights, writes them to a temporary safetensors
 * file and frees everything; a fresh child process (this binary, --child)
 * then measures VmRSS after the plugin and kernels are loaded (the
 * baseline: libraries, OpenBLAS buffers) and VmHWM after the component has
 * been created and loaded from the file. The ratio reported is
 * (VmHWM - baseline) / weight bytes: the parameters themselves are 1.0, so
 * whatever the load costs on top (file pages kept resident, copies) shows
 * above 1. Loading only: no activations.
 *
 * With --check R it exits 1 when the ratio exceeds R (ctest runs it at
 * depth 2, ~70 MB, with R = 1.3). Under AddressSanitizer the shadow memory
 * and quarantine make RSS meaningless: the check is skipped (exit 77). */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pathseg/host.h>
#include <pathseg/kernels.h>
#include <pathseg/safetensors.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* A /proc/self/status field in kB, or -1. */
static long status_kb(const char *field) {
  g_autofree char *text = NULL;
  if (!g_file_get_contents("/proc/self/status", &text, NULL, NULL)) return -1;
  size_t fl = strlen(field);
  for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') return strtol(line + fl + 1, NULL, 10);
  return -1;
}

static char *config_yaml(int depth, const char *checkpoint) {
  GString *g = g_string_new(NULL);
  g_string_append_printf(g, "{preset: base, depth: %d, global_attn_indexes: [", depth);
  for (int i = 2, first = 1; i < depth; i += 3, first = 0) g_string_append_printf(g, "%s%d", first ? "" : ", ", i);
  g_string_append(g, "]");
  if (checkpoint) g_string_append_printf(g, ", checkpoint: '%s'", checkpoint);
  g_string_append(g, "}");
  return g_string_free(g, FALSE);
}

static void *create(ps_registry *reg, const char *yaml, GError **error) {
  const ps_component_desc *d = ps_registry_find(reg, "encoder.medsam");
  if (!d) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "encoder.medsam is not registered");
    return NULL;
  }
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "bench_load_rss", error);
  if (!cfg) return NULL;
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 42);
  return d->vtable->create(cfg, ctx, error);
}

/* Child: load `path` and print the memory numbers. */
static int child(int depth, const char *path) {
  GError *err = NULL;
  ps_registry *reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  if (!ps_kernels_get(PS_DEVICE_CPU, &err)) {
    fprintf(stderr, "bench_load_rss: %s\n", err->message);
    return 2;
  }
  long base = status_kb("VmRSS");
  g_autofree char *yaml = config_yaml(depth, path);
  double t0 = g_get_monotonic_time();
  void *self = create(reg, yaml, &err);
  double t1 = g_get_monotonic_time();
  if (!self) {
    fprintf(stderr, "bench_load_rss: %s\n", err->message);
    return 2;
  }
  long hwm = status_kb("VmHWM"), rss = status_kb("VmRSS");
  const ps_component_desc *d = ps_registry_find(reg, "encoder.medsam");
  ps_param_list pl = d->vtable->params(self);
  size_t bytes = 0;
  for (size_t i = 0; i < pl.count; i++) bytes += pl.items[i].value->nbytes;
  printf("%zu %ld %ld %ld %.3f\n", bytes, base, hwm, rss, (t1 - t0) / 1e6);
  d->vtable->destroy(self);
  ps_registry_free(reg);
  return 0;
}

int main(int argc, char **argv) {
  int depth = 12;
  double check = 0;
  const char *child_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--depth") == 0 && i + 1 < argc) depth = atoi(argv[++i]);
    else if (strcmp(argv[i], "--check") == 0 && i + 1 < argc) check = atof(argv[++i]);
    else if (strcmp(argv[i], "--child") == 0 && i + 1 < argc) child_path = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--depth N] [--check MAX_RATIO]\n", argv[0]);
      return 2;
    }
  }
  if (depth < 1 || depth > 64) depth = 12;
  if (child_path) return child(depth, child_path);
  if (check > 0 && UNDER_ASAN) {
    printf("bench_load_rss: skipped under AddressSanitizer (shadow memory inflates RSS)\n");
    return 77;
  }

  /* Parent: random weights -> temporary file. */
  GError *err = NULL;
  g_autofree char *dir = g_dir_make_tmp("load-rss-XXXXXX", &err);
  if (!dir) {
    fprintf(stderr, "bench_load_rss: %s\n", err->message);
    return 2;
  }
  g_autofree char *path = g_build_filename(dir, "encoder.safetensors", NULL);
  {
    ps_registry *reg = ps_registry_new();
    ps_registry_scan(reg, NULL, NULL);
    g_autofree char *yaml = config_yaml(depth, NULL);
    void *self = create(reg, yaml, &err);
    if (!self) {
      fprintf(stderr, "bench_load_rss: %s\n", err->message);
      return 2;
    }
    const ps_component_desc *d = ps_registry_find(reg, "encoder.medsam");
    ps_param_list pl = d->vtable->params(self);
    g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
    gboolean ok = TRUE;
    for (size_t i = 0; i < pl.count && ok; i++)
      ok = ps_safetensors_writer_add(w, pl.items[i].name, pl.items[i].value, &err);
    d->vtable->destroy(self);
    ok = ok && ps_safetensors_writer_write(w, path, &err);
    ps_registry_free(reg);
    if (!ok) {
      fprintf(stderr, "bench_load_rss: %s\n", err->message);
      return 2;
    }
  }

  g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
  g_autofree char *depth_s = g_strdup_printf("%d", depth);
  char *args[] = {exe ? exe : argv[0], "--depth", depth_s, "--child", path, NULL};
  g_autofree char *out = NULL;
  int status = 0;
  gboolean spawned = g_spawn_sync(NULL, args, NULL, G_SPAWN_CHILD_INHERITS_STDIN, NULL, NULL,
                                  &out, NULL, &status, &err);
  g_unlink(path);
  g_rmdir(dir);
  if (!spawned || !g_spawn_check_wait_status(status, &err)) {
    fprintf(stderr, "bench_load_rss: child failed: %s\n", err ? err->message : "?");
    return 2;
  }
  size_t bytes = 0;
  long base = 0, hwm = 0, rss = 0;
  double secs = 0;
  if (sscanf(out, "%zu %ld %ld %ld %lf", &bytes, &base, &hwm, &rss, &secs) != 5 || bytes == 0) {
    fprintf(stderr, "bench_load_rss: unexpected child output: %s\n", out);
    return 2;
  }
  double wmb = bytes / 1048576.0;
  double ratio = (double)(hwm - base) * 1024.0 / (double)bytes;
  printf("RESULT load_rss encoder.medsam depth=%d weights_MiB=%.1f baseline_MiB=%.1f "
         "VmHWM_MiB=%.1f VmRSS_after_MiB=%.1f ratio=%.3f raw_ratio=%.3f load_s=%.2f\n",
         depth, wmb, base / 1024.0, hwm / 1024.0, rss / 1024.0, ratio, hwm * 1024.0 / bytes, secs);
  if (check > 0 && ratio > check) {
    fprintf(stderr, "bench_load_rss: peak %.3f x the weights exceeds %.2f\n", ratio, check);
    return 1;
  }
  return 0;
}
