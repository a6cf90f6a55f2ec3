/* blas_threads.c — keeps OpenBLAS single-threaded while a kernel runs its own
 * OpenMP threads that call BLAS (attention: one small GEMM per head and
 * query chunk on every thread).
 *
 * The OpenMP build of OpenBLAS already runs serially inside a parallel
 * region, but the pthreads build (Debian's default alternative) would start
 * its own worker threads from every OpenMP thread; those spin-wait against
 * each other and, on a loaded machine, made windowed attention 10x slower.
 * A process-wide counter makes nested/concurrent users safe: the first one
 * in saves the thread count and sets 1, the last one out restores it. */
#include <cblas.h>
#include <glib.h>

#include "cpu/ops.h"

/* OpenBLAS's openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP. */
#define OPENBLAS_PTHREADS 1

static GMutex serial_lock;
static int serial_users = 0;
static int saved_threads = 1;

void ps_cpu_blas_serial_begin(void) {
  if (openblas_get_parallel() != OPENBLAS_PTHREADS) return;
  g_mutex_lock(&serial_lock);
  if (serial_users++ == 0) {
    saved_threads = openblas_get_num_threads();
    if (saved_threads > 1) openblas_set_num_threads(1);
  }
  g_mutex_unlock(&serial_lock);
}

void ps_cpu_blas_serial_end(void) {
  if (openblas_get_parallel() != OPENBLAS_PTHREADS) return;
  g_mutex_lock(&serial_lock);
  if (--serial_users == 0 && saved_threads > 1) openblas_set_num_threads(saved_threads);
  g_mutex_unlock(&serial_lock);
}
