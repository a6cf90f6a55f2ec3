/* main.c — the `pipeline` command: list and describe plugins, validate and
 * run pipeline files, run reference fixtures.
 *
 *   pipeline [--plugin-path DIR]... COMMAND ...
 *     plugins                          what is loaded (name, kind, version, file)
 *     describe NAME                    a component's ports and config schema
 *     validate FILE [--set K=V]...     load and check a pipeline without running
 *     run FILE [--set K=V]... [--resume RUN] [--dry-run] [--quiet]
 *     fixture [--data-dir DIR]... FILE.safetensors...
 *     dataset check MANIFEST           missing files, size mismatches, empty masks, duplicates
 *     dataset review MANIFEST [--approve N | --revise N TEXT] [--reviewer NAME]
 *
 * Exit status: 0 success, 1 failure (with a message on stderr), 2 usage. */
#include <pathseg/dataset.h>
#include <pathseg/graph.h>
#include <pathseg/host.h>
#include <pathseg/comm.h>
#include <pathseg/run.h>
#include <stdio.h>
#include <string.h>

#include "build_config.h"
#include "commands.h"

typedef struct {
  char **plugin_paths;
  ps_registry *reg;
  gboolean verbose_plugins;
} cli;

static int usage(void) {
  fprintf(stderr,
          "usage: pipeline [--plugin-path DIR]... COMMAND ...\n"
          "  plugins                               list loaded plugins and components\n"
          "  describe NAME                         ports and config schema of a component\n"
          "  validate FILE [--set KEY=VALUE]...    check a pipeline without running it\n"
          "  run FILE [--set KEY=VALUE]... [--resume RUN] [--dry-run] [--quiet]\n"
          "  fixture [--data-dir DIR]... FILE...   run reference fixtures and compare\n"
          "  dataset check MANIFEST                report missing files, size mismatches, empty masks\n"
          "  dataset review MANIFEST [--approve N | --revise N TEXT] [--reviewer NAME]\n"
          "  segment IMAGE \"QUERY\" [--model RUN] [--reference IMAGE MASK] [--slide SLIDE ...] [--out DIR]\n"
          "  compare RUN... [--out FILE.md] [--csv FILE.csv]   several runs' results in one table\n");
  return 2;
}

static int fail(GError *error) {
  fprintf(stderr, "pipeline: %s\n", error ? error->message : "failed");
  g_clear_error(&error);
  return 1;
}

/* Loads every plugin on the search path; refusals are printed, not fatal. */
static void load_plugins(cli *c, gboolean report) {
  c->reg = ps_registry_new();
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  ps_registry_scan(c->reg, (const char *const *)c->plugin_paths, problems);
  for (guint i = 0; i < problems->len; i++)
    if (report || c->verbose_plugins)
      fprintf(stderr, "pipeline: warning: plugin refused: %s\n", (char *)g_ptr_array_index(problems, i));
}

static int cmd_plugins(cli *c) {
  load_plugins(c, TRUE);
  size_t n = ps_registry_plugin_count(c->reg);
  if (n == 0) {
    g_auto(GStrv) dirs = ps_registry_search_path((const char *const *)c->plugin_paths);
    g_autofree char *joined = g_strjoinv(":", dirs);
    fprintf(stderr, "pipeline: no plugins found (searched %s)\n", joined);
    return 1;
  }
  printf("%-28s %-10s %-9s %s\n", "COMPONENT", "KIND", "VERSION", "FILE");
  size_t count = 0;
  g_autofree const ps_component_desc **all = ps_registry_components(c->reg, &count);
  for (size_t i = 0; i < count; i++) {
    const ps_plugin_desc *pd = ps_registry_plugin_of(c->reg, all[i]->name);
    printf("%-28s %-10s %-9s %s\n", all[i]->name, ps_kind_name(all[i]->kind), pd->version,
           ps_registry_file_of(c->reg, all[i]->name));
  }
  printf("%zu plugins, %zu components\n", n, count);
  return 0;
}

static int cmd_describe(cli *c, int argc, char **argv) {
  if (argc != 1) return usage();
  load_plugins(c, FALSE);
  const ps_component_desc *d = ps_registry_find(c->reg, argv[0]);
  if (!d) {
    const char *near = ps_registry_closest(c->reg, argv[0]);
    fprintf(stderr, "pipeline: no component '%s' is registered%s%s%s\n", argv[0],
            near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    return 1;
  }
  const ps_plugin_desc *pd = ps_registry_plugin_of(c->reg, d->name);
  printf("%s (%s) — plugin %s %s, %s\n  %s\n", d->name, ps_kind_name(d->kind), pd->name, pd->version,
         ps_registry_file_of(c->reg, d->name), d->doc ? d->doc : "");
  const ps_port_desc *ports[2] = {d->inputs, d->outputs};
  const char *titles[2] = {"inputs", "outputs"};
  for (int k = 0; k < 2; k++) {
    if (!ports[k] || !ports[k][0].name) continue;
    printf("%s:\n", titles[k]);
    for (const ps_port_desc *p = ports[k]; p->name; p++)
      printf("  %-20s %s%s\n", p->name, p->doc ? p->doc : "", p->optional ? " (optional)" : "");
  }
  if (d->config && d->config[0].key) {
    printf("config:\n");
    for (const ps_config_key *k = d->config; k->key; k++) {
      printf("  %-24s %-11s ", k->key, ps_type_name(k->type));
      if (k->default_value)
        printf("default %-10s", k->default_value);
      else
        printf("%-18s", "required");
      if (k->min <= k->max) printf(" range [%g, %g]", k->min, k->max);
      if (k->choices) printf(" one of %s", k->choices);
      printf("\n      %s\n", k->doc ? k->doc : "");
    }
  }
  return 0;
}

/* Parses FILE and --set/--resume/--dry-run/--quiet after it. */
typedef struct {
  const char *file;
  GPtrArray *sets;
  const char *resume;
  gboolean dry_run, quiet;
} run_args;

static gboolean parse_run_args(int argc, char **argv, run_args *a, gboolean allow_run_flags) {
  a->sets = g_ptr_array_new();
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
      g_ptr_array_add(a->sets, argv[++i]);
    } else if (g_str_has_prefix(argv[i], "--set=")) {
      g_ptr_array_add(a->sets, argv[i] + 6);
    } else if (allow_run_flags && strcmp(argv[i], "--resume") == 0 && i + 1 < argc) {
      a->resume = argv[++i];
    } else if (allow_run_flags && strcmp(argv[i], "--dry-run") == 0) {
      a->dry_run = TRUE;
    } else if (allow_run_flags && strcmp(argv[i], "--quiet") == 0) {
      a->quiet = TRUE;
    } else if (argv[i][0] == '-' || a->file) {
      fprintf(stderr, "pipeline: unexpected argument '%s'\n", argv[i]);
      return FALSE;
    } else {
      a->file = argv[i];
    }
  }
  g_ptr_array_add(a->sets, NULL);
  if (!a->file) fprintf(stderr, "pipeline: no pipeline file given\n");
  return a->file != NULL;
}

static ps_pipeline *load_pipeline(cli *c, run_args *a, GError **error) {
  load_plugins(c, FALSE);
  /* Bare names: the working directory, then the installed pipelines/ (the
   * source tree's when this is the build tree's binary). */
  g_autofree char *installed = ps_install_dir(PS_LIB_TO_PIPELINES);
  const char *search[] = {ps_running_from_build_tree() ? PS_SOURCE_DIR "/pipelines" : installed, NULL};
  g_autofree char *path = ps_pipeline_find(a->file, search, error);
  if (!path) return NULL;
  return ps_pipeline_load(path, (const char *const *)a->sets->pdata, ps_registry_lookup, c->reg, error);
}

static int cmd_validate(cli *c, int argc, char **argv) {
  run_args a = {0};
  if (!parse_run_args(argc, argv, &a, FALSE)) return usage();
  GError *error = NULL;
  g_autoptr(ps_pipeline) p = load_pipeline(c, &a, &error);
  g_ptr_array_unref(a.sets);
  if (!p) return fail(error);
  printf("%s: valid (%zu components, %zu stages)\n", p->path, p->n_components, p->n_stages);
  return 0;
}

/* The roles a stage trains, for --dry-run: its `train` config key when it has one. */
static void print_plan(const ps_pipeline *p, ps_graph *g) {
  printf("pipeline %s (%s)\n", p->name, p->path);
  printf("device %s, threads %d, seed %" G_GINT64_FORMAT ", runs in %s/\n",
         p->device == PS_DEVICE_CUDA ? "cuda" : "cpu", p->threads, p->seed, p->run_dir);
  g_autofree char *plan = ps_graph_describe(g);
  fputs(plan, stdout);
  printf("stages (%zu):\n", p->n_stages);
  for (size_t s = 0; s < p->n_stages; s++) {
    const ps_pipeline_stage *st = &p->stages[s];
    printf("  %zu. %s: %s%s\n", s + 1, st->name, st->plugin, st->enabled ? "" : " (disabled)");
    /* What this stage trains, for stages that say so with train_roles. */
    gboolean has_roles = FALSE, has_only = FALSE;
    for (const ps_config_key *k = st->desc->config; k && k->key; k++) {
      has_roles = has_roles || strcmp(k->key, "train_roles") == 0;
      has_only = has_only || strcmp(k->key, "train_components") == 0;
    }
    if (has_roles && g) {
      size_t n = 0;
      const char *const *names = ps_config_string_list(st->config, "train_roles", &n);
      ps_role roles[PS_ROLE_COUNT];
      size_t nr = 0;
      for (size_t i = 0; i < n && nr < PS_ROLE_COUNT; i++)
        if (ps_role_from_name(names[i], &roles[nr])) nr++;
      GError *error = NULL;
      size_t n_only = 0;
      const char *const *only = has_only ? ps_config_string_list(st->config, "train_components", &n_only) : NULL;
      int64_t count = ps_graph_set_trainable(g, roles, nr, n_only ? only : NULL, &error);
      if (count >= 0)
        printf("       trains %" G_GINT64_FORMAT " parameters (those whose role is in train_roles)\n", count);
      g_clear_error(&error);
    }
    g_autofree char *cfg = ps_config_format(st->config);
    g_auto(GStrv) lines = g_strsplit(cfg, "\n", -1);
    for (size_t i = 0; lines[i]; i++)
      if (*lines[i]) printf("       %s\n", lines[i]);
  }
}

static int cmd_run(cli *c, int argc, char **argv) {
  run_args a = {0};
  if (!parse_run_args(argc, argv, &a, TRUE)) return usage();
  GError *error = NULL;
  g_autoptr(ps_pipeline) p = load_pipeline(c, &a, &error);
  g_ptr_array_unref(a.sets);
  if (!p) return fail(error);
  if (a.dry_run) {
    g_autoptr(ps_context) ctx = ps_context_new(p->device, p->threads, (uint64_t)p->seed);
    g_autoptr(ps_graph) g = ps_graph_new(p, ctx, &error);
    if (!g) return fail(error);
    print_plan(p, g);
    return 0;
  }
  /* Under mpirun/srun with several tasks (or PATHSEG_COMM=mpi|nccl) each
   * process is one rank of a data-parallel run. */
  g_autoptr(ps_comm) comm = ps_comm_new("auto", &error);
  if (!comm) return fail(error);
  ps_run_options opts = {a.resume, a.quiet, comm};
  g_autofree char *dir = NULL;
  if (!ps_run_execute(p, c->reg, &opts, &dir, &error)) {
    /* A stop (Ctrl-C, stop_after_steps) is agreed by all ranks; any other
     * failure may leave the other ranks waiting in a collective. */
    if (ps_comm_size(comm) > 1 && !g_error_matches(error, PS_ERROR, PS_ERROR_CANCELLED)) {
      fprintf(stderr, "pipeline: rank %d: %s\n", ps_comm_rank(comm), error ? error->message : "failed");
      ps_comm_abort(comm, 1);
    }
    return fail(error);
  }
  if (ps_comm_rank(comm) == 0) printf("run finished: %s\n", dir);
  return 0;
}

static int cmd_fixture(cli *c, int argc, char **argv) {
  g_autoptr(GPtrArray) dirs = g_ptr_array_new();
  g_autoptr(GPtrArray) files = g_ptr_array_new();
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc)
      g_ptr_array_add(dirs, argv[++i]);
    else if (argv[i][0] == '-')
      return usage();
    else
      g_ptr_array_add(files, argv[i]);
  }
  g_ptr_array_add(dirs, NULL);
  if (files->len == 0) return usage();
  load_plugins(c, FALSE);
  int status = 0;
  for (guint f = 0; f < files->len; f++) {
    const char *path = g_ptr_array_index(files, f);
    GError *error = NULL;
    g_autoptr(GPtrArray) results = g_ptr_array_new_with_free_func((GDestroyNotify)ps_fixture_result_free);
    gboolean ok = ps_fixture_run_file(c->reg, path, (const char *const *)dirs->pdata, results, &error);
    if (error) {
      fprintf(stderr, "pipeline: %s\n", error->message);
      g_clear_error(&error);
      status = 1;
      continue;
    }
    printf("%s\n", path);
    for (guint i = 0; i < results->len; i++) {
      ps_fixture_result *r = g_ptr_array_index(results, i);
      printf("  %-4s %-36s max abs %-10.3g max rel %-10.3g (atol %g, rtol %g)%s%s\n",
             r->passed ? "ok" : "FAIL", r->output, r->max_abs_err, r->max_rel_err, r->atol, r->rtol,
             r->problem ? ": " : "", r->problem ? r->problem : "");
    }
    printf("%s: %s\n", path, ok ? "passed" : "FAILED");
    if (!ok) status = 1;
  }
  return status;
}

/* The manifest format's tools, from the component that owns it. */
static const ps_manifest_tools *manifest_tools(cli *c) {
  load_plugins(c, FALSE);
  size_t n = 0;
  g_autofree const ps_component_desc **all = ps_registry_components(c->reg, &n);
  for (size_t i = 0; i < n; i++) {
    const ps_manifest_tools *t = all[i]->capability ? all[i]->capability("manifest_tools") : NULL;
    if (t && t->struct_size >= sizeof(ps_manifest_tools)) return t;
  }
  fprintf(stderr, "pipeline: no loaded plugin provides the manifest tools (is pathseg-benchmark.so installed?)\n");
  return NULL;
}

static int cmd_dataset(cli *c, int argc, char **argv) {
  if (argc < 2) return usage();
  const char *what = argv[0], *manifest = argv[1];
  const ps_manifest_tools *t = manifest_tools(c);
  if (!t) return 1;
  GError *error = NULL;
  g_autoptr(GString) report = g_string_new(NULL);
  if (strcmp(what, "check") == 0 && argc == 2) {
    int64_t problems = 0;
    if (!t->check(manifest, report, &problems, &error)) return fail(error);
    fputs(report->str, stdout);
    printf("%s: %" G_GINT64_FORMAT " problem%s\n", manifest, problems, problems == 1 ? "" : "s");
    return problems ? 1 : 0;
  }
  if (strcmp(what, "review") != 0) return usage();
  const char *reviewer = g_getenv("USER"), *revised = NULL;
  int64_t index = -1;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--approve") == 0 && i + 1 < argc)
      index = g_ascii_strtoll(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--revise") == 0 && i + 2 < argc) {
      index = g_ascii_strtoll(argv[++i], NULL, 10);
      revised = argv[++i];
    } else if (strcmp(argv[i], "--reviewer") == 0 && i + 1 < argc)
      reviewer = argv[++i];
    else
      return usage();
  }
  if (index < 0) {
    if (!t->pending(manifest, report, &error)) return fail(error);
    fputs(report->len ? report->str : "no pending rows\n", stdout);
    return 0;
  }
  if (!t->review(manifest, index, reviewer, revised, &error)) return fail(error);
  printf("row %" G_GINT64_FORMAT " %s by %s\n", index, revised ? "revised" : "approved", reviewer);
  return 0;
}

int main(int argc, char **argv) {
  cli c = {0};
  g_autoptr(GPtrArray) plugin_paths = g_ptr_array_new();
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--plugin-path") == 0 && i + 1 < argc)
      g_ptr_array_add(plugin_paths, argv[++i]);
    else if (strcmp(argv[i], "--verbose-plugins") == 0)
      c.verbose_plugins = TRUE;
    else if (strcmp(argv[i], "--version") == 0) {
      printf("pathseg %s (plugin ABI %d.%d)\n", PS_VERSION, PS_ABI_MAJOR, PS_ABI_MINOR);
      return 0;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage();
      return 0;
    } else
      return usage();
  }
  g_ptr_array_add(plugin_paths, NULL);
  c.plugin_paths = (char **)plugin_paths->pdata;
  if (i >= argc) return usage();
  const char *cmd = argv[i++];
  int rest = argc - i;
  char **args = argv + i;
  int status;
  if (strcmp(cmd, "plugins") == 0)
    status = cmd_plugins(&c);
  else if (strcmp(cmd, "describe") == 0)
    status = cmd_describe(&c, rest, args);
  else if (strcmp(cmd, "validate") == 0)
    status = cmd_validate(&c, rest, args);
  else if (strcmp(cmd, "run") == 0)
    status = cmd_run(&c, rest, args);
  else if (strcmp(cmd, "fixture") == 0)
    status = cmd_fixture(&c, rest, args);
  else if (strcmp(cmd, "dataset") == 0)
    status = cmd_dataset(&c, rest, args);
  else if (strcmp(cmd, "segment") == 0) {
    load_plugins(&c, FALSE);
    status = ps_cmd_segment(c.reg, rest, args);
  } else if (strcmp(cmd, "compare") == 0)
    status = ps_cmd_compare(rest, args);
  else {
    fprintf(stderr, "pipeline: unknown command '%s'\n", cmd);
    status = usage();
  }
  g_clear_pointer(&c.reg, ps_registry_free);
  return status;
}
