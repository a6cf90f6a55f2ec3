/* fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Opens the input as an in-memory safetensors file and, when the reader
 * accepts it, reads every tensor as f32 and every metadata value, and checks
 * the invariants the reader promises (sizes match shapes, views are aligned,
 * names are unique). A violated invariant aborts, so the fuzzer reports it
 * like a crash. Rejected inputs must come with an error message. */
#include <pathseg/safetensors.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void require(gboolean cond) {
  if (!cond)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  ps_safetensors *st = ps_safetensors_open_buffer(data, size, "fuzz", &error);
  if (st == NULL) {
    require(error != NULL && error->message[0] != '\0');
    g_error_free(error);
    return 0;
  }
  size_t total = 0;
  const size_t n = ps_safetensors_count(st);
  for (size_t i = 0; i < n; i++) {
    const char *name = ps_safetensors_name(st, i);
    require(name != NULL && ps_safetensors_has(st, name));
    const ps_tensor *t = ps_safetensors_get(st, name, &error);
    require(t != NULL);
    const size_t esize = ps_dtype_size(t->dtype);
    require(esize > 0 && t->ndim >= 0 && t->ndim <= PS_MAX_DIMS);
    require(t->nbytes == (size_t)ps_tensor_numel(t) * esize);
    require(t->nbytes == 0 || (t->data != NULL && (uintptr_t)t->data % esize == 0));
    total += t->nbytes;
    ps_tensor *f = ps_safetensors_get_f32(st, name, &error);
    require(f != NULL);
    require(f->dtype == PS_DTYPE_F32 && ps_tensor_numel(f) == ps_tensor_numel(t));
    ps_tensor_free(f);
  }
  require(ps_safetensors_name(st, n) == NULL);
  require(total <= size);
  require(ps_safetensors_get(st, "\x01 not a tensor", &error) == NULL && error != NULL);
  g_clear_error(&error);
  const char **keys = ps_safetensors_metadata_keys(st);
  for (size_t i = 0; keys[i]; i++)
    require(ps_safetensors_metadata(st, keys[i]) != NULL);
  g_free(keys);
  ps_safetensors_close(st);
  return 0;
}
