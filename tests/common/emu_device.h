/* emu_device.h — lets a test run `device: cuda` code on the CPU stand-in of
 * kernels/emu (libpathseg-cudaemu.so, whose device memory faults when the
 * host touches it). Call before anything asks for the CUDA table. */
#pragma once

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

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
