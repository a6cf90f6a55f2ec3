/* error.c — the pathseg GError domain. */
#include <pathseg/error.h>

G_DEFINE_QUARK(pathseg-error-quark, ps_error)
