/* emu_device.h — lets a test run `device: cuda` code on the CPU stand-in of
 * kernels/emu (libpathseg-cudaemu.so, whose device memory faults when the
 * host touches it). Call before anything asks for the CUDA table. */
#pragma once

#include <glib.h>
#include <math.h>
#include <pathseg/tensor.h>
#include <stdio.h>
#include <stdlib.h>

#include "ps_test.h"

/* Points PATHSEG_CUDA_LIBRARY at the emulator the build made (ctest sets
 * PATHSEG_CUDA_EMULATOR); exits with a message when there is none. */
static inline void ps_test_use_cuda_emulator(void) {
  const char *emu = g_getenv("PATHSEG_CUDA_EMULATOR");
  if (!emu || !g_file_test(emu, G_FILE_TEST_EXISTS)) {
    fprintf(stderr, "PATHSEG_CUDA_EMULATOR does not name the built libpathseg-cudaemu.so\n");
    exit(1);
  }
  g_setenv("PATHSEG_CUDA_LIBRARY", emu, TRUE);
}

/* Bitwise equality of a CPU run's tensor and the device run's (copied back);
 * with on_device, the latter must also live on the device. A mismatch
 * reports the largest difference of f32 data. */
static inline void ps_test_same_as_cpu(const char *what, const ps_tensor *cpu, const ps_tensor *dev,
                                       gboolean on_device) {
  PS_CHECK_MSG(cpu && dev, "%s: missing (%p, %p)", what, (const void *)cpu, (const void *)dev);
  if (!cpu || !dev) return;
  if (on_device) PS_CHECK_MSG(dev->device == PS_DEVICE_CUDA, "%s is not on the device", what);
  ps_tensor *h = ps_tensor_copy(dev, NULL);
  PS_CHECK_MSG(h && h->dtype == cpu->dtype && h->nbytes == cpu->nbytes &&
                   ps_tensor_has_shape(h, cpu->ndim, cpu->shape),
               "%s: dtype/shape differ", what);
  if (h && h->nbytes == cpu->nbytes && cpu->nbytes > 0 && memcmp(h->data, cpu->data, cpu->nbytes) != 0) {
    double worst = 0;
    if (cpu->dtype == PS_DTYPE_F32)
      for (int64_t j = 0; j < ps_tensor_numel(cpu); j++)
        worst = fmax(worst, fabs((double)ps_f32(h)[j] - ps_f32(cpu)[j]));
    PS_CHECK_MSG(FALSE, "%s: device result differs from the CPU's (max |diff| %g)", what, worst);
  }
  ps_tensor_free(h);
}
