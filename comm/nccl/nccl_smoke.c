/* nccl_smoke.c — the NCCL backend on one GPU, for tools/gpu-check.sh: loads
 * libpathseg-nccl.so through ps_comm_new("nccl") and runs every collective
 * on device memory and on host memory (staged through the device), checking
 * the results (one rank: a sum is the input, a max is the input). Prints one
 * RESULT line; exits non-zero on any mismatch or error.
 *   mpirun -np 1 build/comm/nccl_smoke      (or plain: MPI starts as a singleton) */
#include <cuda_runtime.h>
#include <pathseg/comm.h>
#include <stdio.h>
#include <string.h>

#define N 1000003 /* odd, larger than one NCCL chunk */

static int fail(const char *what, GError *error) {
  fprintf(stderr, "nccl_smoke: %s: %s\n", what, error ? error->message : "mismatch");
  g_clear_error(&error);
  return 1;
}

int main(void) {
  GError *error = NULL;
  ps_comm *comm = ps_comm_new("nccl", &error);
  if (!comm) return fail("ps_comm_new(nccl)", error);
  float *host = g_new(float, N), *back = g_new(float, N);
  for (int i = 0; i < N; i++) host[i] = (float)(i % 977) * 0.25f - 3.0f;
  memcpy(back, host, N * sizeof(float));
  /* host buffer: staged */
  if (!ps_comm_allreduce_f32(comm, back, N, &error)) return fail("allreduce (host)", error);
  float size = (float)ps_comm_size(comm);
  for (int i = 0; i < N; i++)
    if (back[i] != host[i] * size) return fail("allreduce (host) result", NULL);
  /* device buffer: direct */
  float *dev = NULL;
  if (cudaMalloc((void **)&dev, N * sizeof(float)) != cudaSuccess ||
      cudaMemcpy(dev, host, N * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess)
    return fail("cudaMalloc/cudaMemcpy", NULL);
  if (!ps_comm_allreduce_f32(comm, dev, N, &error)) return fail("allreduce (device)", error);
  if (cudaMemcpy(back, dev, N * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
    return fail("cudaMemcpy back", NULL);
  for (int i = 0; i < N; i++)
    if (back[i] != host[i] * size) return fail("allreduce (device) result", NULL);
  double d[3] = {1.5, -2.0, 1e300};
  int64_t m[2] = {7, -3};
  if (!ps_comm_allreduce_f64(comm, d, 3, &error) || !ps_comm_allreduce_max_i64(comm, m, 2, &error))
    return fail("allreduce f64/max", error);
  if (d[0] != 1.5 * size || m[0] != 7 || m[1] != -3) return fail("f64/max result", NULL);
  ps_comm_request *r = ps_comm_iallreduce_f32(comm, back, N, &error);
  if (!r || !ps_comm_wait(r, &error)) return fail("iallreduce", error);
  if (!ps_comm_broadcast(comm, host, N * sizeof(float), 0, &error) || !ps_comm_barrier(comm, &error))
    return fail("broadcast/barrier", error);
  gint64 t0 = g_get_monotonic_time();
  for (int k = 0; k < 20; k++)
    if (!ps_comm_allreduce_f32(comm, dev, N, &error)) return fail("allreduce (timed)", error);
  double us = (double)(g_get_monotonic_time() - t0) / 20;
  printf("RESULT nccl_smoke ranks=%d backend=%s floats=%d allreduce_device_us=%.1f ok=1\n",
         ps_comm_size(comm), ps_comm_backend(comm), N, us);
  cudaFree(dev);
  g_free(host);
  g_free(back);
  ps_comm_free(comm);
  return 0;
}
