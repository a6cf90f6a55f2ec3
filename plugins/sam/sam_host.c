/* sam_host.c — host staging buffers (see sam_host.h). */
#include "sam_host.h"

#include <pathseg/error.h>

gboolean sam_host_buf_ensure(sam_host_buf *b, int64_t n, GError **error) {
  if (n <= b->n) return TRUE;
  float *p = g_try_renew(float, b->p, (gsize)n);
  if (!p) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "sam: out of host memory for a staging buffer of %" G_GINT64_FORMAT " floats", n);
    return FALSE;
  }
  b->p = p;
  b->n = n;
  return TRUE;
}

void sam_host_buf_free(sam_host_buf *b) {
  g_clear_pointer(&b->p, g_free);
  b->n = 0;
}
