/* test_comm.c — the communication layer with one process: every collective
 * of the none backend leaves the data as one rank's sum, gather or broadcast
 * would; a context without a comm reports one rank; an unknown backend and a
 * launcher-less `auto` gives one process. (Several ranks are
 * tested by test_data_parallel under mpirun.) */
#include <pathseg/comm.h>
#include <pathseg/host.h>

#include "ps_test.h"

int main(void) {
  GError *error = NULL;
  g_autoptr(ps_comm) comm = ps_comm_new("none", &error);
  PS_CHECK_OK(comm != NULL, error);
  PS_CHECK(ps_comm_rank(comm) == 0 && ps_comm_size(comm) == 1);
  PS_CHECK(strcmp(ps_comm_backend(comm), "none") == 0);

  float f[3] = {1.5f, -2.0f, 3.25f};
  double d[2] = {0.125, 7.0}, gathered[2] = {0, 0};
  int64_t m[2] = {4, -9};
  PS_CHECK_OK(ps_comm_allreduce_f32(comm, f, 3, &error), error);
  PS_CHECK_OK(ps_comm_allreduce_f64(comm, d, 2, &error), error);
  PS_CHECK_OK(ps_comm_allreduce_max_i64(comm, m, 2, &error), error);
  PS_CHECK(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f && d[0] == 0.125 && d[1] == 7.0);
  PS_CHECK(m[0] == 4 && m[1] == -9);
  PS_CHECK_OK(ps_comm_allgather_f64(comm, d, gathered, 2, &error), error);
  PS_CHECK(gathered[0] == 0.125 && gathered[1] == 7.0);
  PS_CHECK_OK(ps_comm_broadcast(comm, f, sizeof f, 0, &error), error);
  PS_CHECK_OK(ps_comm_barrier(comm, &error), error);
  ps_comm_request *r = ps_comm_iallreduce_f32(comm, f, 3, &error);
  PS_CHECK_OK(r != NULL, error);
  ps_comm_progress(comm);
  PS_CHECK_OK(ps_comm_wait(r, &error), error);
  PS_CHECK(f[1] == -2.0f);
  PS_CHECK(ps_comm_bytes_sent(comm) == 0);
  ps_comm_abort(comm, 3); /* one rank: returns */

  /* Contexts are one process unless told otherwise. */
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  PS_CHECK(ps_comm_size(ps_context_comm(ctx)) == 1);
  ps_context_set_comm(ctx, comm);
  PS_CHECK(ps_context_comm(ctx) == comm);

  PS_CHECK_FAILS_WITH(ps_comm_new("carrier-pigeon", &error), error, "not one of none, mpi, nccl, auto");
  /* auto without a launcher is one process. */
  g_unsetenv("OMPI_COMM_WORLD_SIZE");
  g_unsetenv("PMI_SIZE");
  g_unsetenv("PMIX_SIZE");
  g_unsetenv("SLURM_NTASKS");
  g_unsetenv("PATHSEG_COMM");
  g_autoptr(ps_comm) automatic = ps_comm_new("auto", &error);
  PS_CHECK_OK(automatic != NULL, error);
  PS_CHECK(automatic && strcmp(ps_comm_backend(automatic), "none") == 0);
  return ps_test_finish();
}
