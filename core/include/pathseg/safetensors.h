/* safetensors.h — read and write the safetensors format.
 *
 * The reader memory-maps the file and performs every check of the reference
 * implementation (spec/anchors.md §5): header length <= 100 MB, a JSON object,
 * known dtypes, overflow-checked sizes, shape x dtype == byte range, offsets
 * sorted, contiguous and starting at 0, and the data ending exactly at the end
 * of the file. Tensors whose data is not aligned to their element size are
 * copied to an aligned buffer on first access.
 *
 * The writer collects tensors and metadata and writes to `PATH.tmp-XXXXXX`,
 * flushes, fsyncs and renames, so a reader never sees a partial file. */
#pragma once

#include <glib.h>
#include <pathseg/tensor.h>

G_BEGIN_DECLS

#define PS_SAFETENSORS_MAX_HEADER ((guint64)100000000)

typedef struct ps_safetensors ps_safetensors;

/* Opens and validates a file (mmap). Errors name the file and the check. */
ps_safetensors *ps_safetensors_open(const char *path, GError **error);
/* Validates a buffer the caller keeps alive (used by the fuzz target).
 * `label` names the buffer in error messages. */
ps_safetensors *ps_safetensors_open_buffer(const guint8 *data, gsize size, const char *label,
                                           GError **error);
void ps_safetensors_close(ps_safetensors *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_safetensors, ps_safetensors_close)

const char *ps_safetensors_path(const ps_safetensors *st);
size_t ps_safetensors_count(const ps_safetensors *st);
/* Names in file order (sorted by data offset). */
const char *ps_safetensors_name(const ps_safetensors *st, size_t index);
gboolean ps_safetensors_has(const ps_safetensors *st, const char *name);
/* A borrowed view of the tensor's data (valid until close); NULL and an error
 * naming the tensor and file when it is absent. */
const ps_tensor *ps_safetensors_get(ps_safetensors *st, const char *name, GError **error);
/* A new f32 CPU copy (converting bf16/f16/f64/ints). Like read_f32, it
 * drops the file pages it read from the process's resident set. */
ps_tensor *ps_safetensors_get_f32(ps_safetensors *st, const char *name, GError **error);
/* Converts tensor `name` to f32 straight into `dst` (a CPU f32 tensor with
 * the same element count; its shape is the caller's to check) and drops the
 * mapped file pages it read from the process's resident set (they fault
 * back in if read again), so loading a checkpoint peaks near the size of
 * the weights, not twice that. */
gboolean ps_safetensors_read_f32(ps_safetensors *st, const char *name, ps_tensor *dst,
                                 GError **error);
/* A `__metadata__` value, or NULL. */
const char *ps_safetensors_metadata(const ps_safetensors *st, const char *key);
/* All metadata keys, NULL-terminated; free with g_free (not the strings). */
const char **ps_safetensors_metadata_keys(const ps_safetensors *st);

typedef struct ps_safetensors_writer ps_safetensors_writer;

ps_safetensors_writer *ps_safetensors_writer_new(void);
void ps_safetensors_writer_free(ps_safetensors_writer *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_safetensors_writer, ps_safetensors_writer_free)
/* Adds a tensor (on any device) under `name`; the data is copied to the
 * host now. Fails on a
 * duplicate name. */
gboolean ps_safetensors_writer_add(ps_safetensors_writer *w, const char *name, const ps_tensor *t,
                                   GError **error);
void ps_safetensors_writer_set_metadata(ps_safetensors_writer *w, const char *key,
                                        const char *value);
/* Writes atomically (temporary file, fsync, rename). */
gboolean ps_safetensors_writer_write(ps_safetensors_writer *w, const char *path, GError **error);

G_END_DECLS
