/* workers.c — `workers: N` of stage.preprocess_slides: one process per
 * slide, N at a time. Each worker is the `pipeline` executable run again on
 * the run's resolved pipeline.yaml with only this stage enabled, one slide,
 * no merge and the thread share of one worker; its output goes to
 * <run>/workers/<stem>.txt and its run directory under <run>/workers/.
 * Processes rather than threads: a slide that crashes its decoder takes
 * only its own worker down, and libvips/OpenSlide caches stay per slide. The
 * parent assigns slides as workers free up (slides differ in size by 10x),
 * then merges alone once all have exited. */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <pathseg/error.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <signal.h>
#include <sys/prctl.h>
#endif

#include "preprocess.h"

/* In the worker, before exec: it is stopped when the parent dies (a killed
 * parent leaves no orphan working on). */
static void worker_setup(gpointer data) {
  (void)data;
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
}

/* A YAML double-quoted scalar (for --set values: paths may hold ", ", ":"). */
static char *yaml_quote(const char *s) {
  GString *q = g_string_new("\"");
  for (const char *c = s; *c; c++) {
    if (*c == '"' || *c == '\\') g_string_append_c(q, '\\');
    g_string_append_c(q, *c);
  }
  g_string_append_c(q, '"');
  return g_string_free(q, FALSE);
}

char *pp_worker_executable(const char *configured, GError **error) {
  if (configured && *configured) {
    if (g_file_test(configured, G_FILE_TEST_IS_EXECUTABLE)) return g_strdup(configured);
    char *found = g_find_program_in_path(configured);
    if (found) return found;
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "worker_command: %s is not an executable",
                configured);
    return NULL;
  }
  /* Started by `pipeline run`: run the same binary again. */
  g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
  g_autofree char *base = self ? g_path_get_basename(self) : NULL;
  if (base && strcmp(base, "pipeline") == 0) return g_steal_pointer(&self);
  char *found = g_find_program_in_path("pipeline");
  if (found) return found;
  g_set_error(
      error, PS_ERROR, PS_ERROR_NOT_FOUND,
      "workers: this process is not `pipeline` and no `pipeline` is on PATH; set worker_command to "
      "the pipeline executable (or use workers: 1)");
  return NULL;
}

typedef struct {
  GPid pid;
  const pp_slide_job *job;
  char *log;
} child;

/* The last non-empty line of a worker's output (its error). */
static char *last_line(const char *path) {
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return g_strdup("(no output)");
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (int i = (int)g_strv_length(lines) - 1; i >= 0; i--)
    if (*g_strstrip(lines[i])) return g_strdup(lines[i]);
  return g_strdup("(no output)");
}

static gboolean spawn(const pp_worker_spec *w, const pp_slide_job *job, child *c, GError **error) {
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
  const char *S = ps_run_stage(w->run);
  const ps_pipeline *p = ps_run_pipeline(w->run);
  g_autofree char *qpath = yaml_quote(job->path),
                  *qann = yaml_quote(job->annotations ? job->annotations : "");
  g_autofree char *wdir = g_build_filename(ps_run_dir(w->run), "workers", NULL);
  g_ptr_array_add(argv, g_strdup(w->executable));
  g_ptr_array_add(argv, g_strdup("run"));
  g_ptr_array_add(argv, g_build_filename(ps_run_dir(w->run), "pipeline.yaml", NULL));
  g_ptr_array_add(argv, g_strdup("--quiet"));
#define SET(...)                                                                                   \
  do {                                                                                             \
    g_ptr_array_add(argv, g_strdup("--set"));                                                      \
    g_ptr_array_add(argv, g_strdup_printf(__VA_ARGS__));                                           \
  } while (0)
  SET("run_dir=%s", wdir);
  SET("stages.%s.slides=[%s]", S, qpath);
  SET("stages.%s.annotations=[%s]", S, qann);
  SET("stages.%s.slide_list=\"\"", S);
  SET("stages.%s.workers=1", S);
  SET("stages.%s.threads=%d", S, w->threads);
  SET("stages.%s.merge=false", S);
  SET("stages.%s.job_index=0", S);
  SET("stages.%s.job_count=1", S);
  for (size_t i = 0; i < p->n_stages; i++)
    if (strcmp(p->stages[i].name, S) != 0) SET("stages.%s.enabled=false", p->stages[i].name);
#undef SET
  g_ptr_array_add(argv, NULL);

  c->job = job;
  c->log = g_strdup_printf("%s/%s.txt", wdir, job->stem);
  if (g_mkdir_with_parents(wdir, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", wdir, g_strerror(errno));
    return FALSE;
  }
  int fd = g_open(c->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", c->log, g_strerror(errno));
    return FALSE;
  }
  gboolean ok = g_spawn_async_with_fds(NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                       worker_setup, NULL, &c->pid, -1, fd, fd, error);
  close(fd);
  if (!ok) g_prefix_error(error, "workers: cannot start %s: ", w->executable);
  return ok;
}

gboolean pp_run_workers(const pp_worker_spec *w, GPtrArray *jobs, pp_shared *sh,
                        pp_pool_result *res, GError **error) {
  child *running = g_new0(child, MAX(w->workers, 1));
  int n_running = 0;
  guint next = 0;
  gboolean ok = TRUE;
  while (ok && (next < jobs->len || n_running > 0)) {
    /* Start workers while there are free slots and slides (not after Ctrl-C). */
    while (next < jobs->len && n_running < w->workers && !ps_run_cancelled(w->run)) {
      const pp_slide_job *job = g_ptr_array_index(jobs, next++);
      if (!spawn(w, job, &running[n_running], error)) {
        g_free(running[n_running].log);
        ok = FALSE;
        break;
      }
      pp_log(sh, "slide %s: worker process %d started", job->path, (int)running[n_running].pid);
      n_running++;
    }
    if (ps_run_cancelled(w->run)) next = jobs->len;
    gboolean reaped = FALSE;
    for (int i = 0; i < n_running; i++) {
      int status = 0;
      pid_t r = waitpid(running[i].pid, &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      child c = running[i];
      running[i] = running[--n_running];
      i--;
      reaped = TRUE;
      if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        res->ok++;
        /* The done marker's first line says how many tiles the slide has. */
        g_autofree char *done = g_build_filename(w->out_dir, c.job->stem, "done", NULL),
                        *stamp = NULL;
        g_file_get_contents(done, &stamp, NULL, NULL);
        if (stamp) stamp[strcspn(stamp, "\n")] = '\0';
        pp_log(sh, "slide %s: done, %s (worker output: %s)", c.job->path, stamp ? stamp : "?",
               c.log);
      } else {
        g_autofree char *why = r < 0 ? g_strdup(g_strerror(errno))
                               : WIFSIGNALED(status)
                                   ? g_strdup_printf("worker killed by signal %d", WTERMSIG(status))
                                   : last_line(c.log);
        res->skipped++;
        pp_log(sh, "skipped slide %s: %s (worker output: %s)", c.job->path, why, c.log);
        if (!res->first_skip) res->first_skip = g_strdup(why);
      }
      g_free(c.log);
    }
    if (!reaped && n_running > 0) g_usleep(20000);
  }
  /* After a failure to start one, the others are still waited for. */
  for (int i = 0; i < n_running; i++) {
    int status = 0;
    waitpid(running[i].pid, &status, 0);
    g_free(running[i].log);
  }
  g_free(running);
  return ok;
}
