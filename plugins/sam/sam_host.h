/* sam_host.h — host staging buffers for the few steps of the SAM plugin that
 * still compute on the host when it runs on a device (MedSAM's per-image
 * min-max, the random-Fourier positional encoding, adapter dropout masks):
 * a growing host float buffer, and the test "is this device's memory the
 * host's" that lets the CPU path write in place without a staging copy. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include <pathseg/tensor.h>

typedef struct {
  float *p;
  int64_t n; /* capacity in floats */
} sam_host_buf;

/* At least n floats of host memory (contents kept only while n does not grow). */
gboolean sam_host_buf_ensure(sam_host_buf *b, int64_t n, GError **error);
void sam_host_buf_free(sam_host_buf *b);

/* On the CPU device, device memory is host memory: host steps write in place. */
static inline gboolean sam_on_host(ps_device dev) {
  return dev == PS_DEVICE_CPU;
}
