/* error.h — the pathseg GError domain and its codes.
 *
 * Every fallible call in pathseg takes a `GError **error` last and returns
 * FALSE or NULL on failure. Messages name the file, key, tensor or plugin
 * that is at fault, so that a user can act on them without a debugger. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define PS_ERROR (ps_error_quark())
GQuark ps_error_quark(void);

typedef enum {
  PS_ERROR_FAILED,      /* anything not covered below */
  PS_ERROR_IO,          /* a file could not be read or written */
  PS_ERROR_PARSE,       /* malformed YAML, JSON, safetensors, image ... */
  PS_ERROR_INVALID,     /* a value is well-formed but not allowed */
  PS_ERROR_SHAPE,       /* a tensor has the wrong dtype or shape */
  PS_ERROR_ABI,         /* a plugin was built for another ABI */
  PS_ERROR_NOT_FOUND,   /* a plugin, component, key or tensor is missing */
  PS_ERROR_NUMERIC,     /* NaN or Inf where a finite number is needed */
  PS_ERROR_UNSUPPORTED, /* the operation is not available on this build */
  PS_ERROR_CANCELLED,   /* the user asked to stop */
} ps_error_code;

G_END_DECLS
