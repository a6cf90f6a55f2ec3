/* config.h — a component's validated configuration.
 *
 * A component declares its keys in a schema (ps_config_key, plugin.h). The
 * core builds a ps_config from the YAML `with:` mapping (nested mappings are
 * flattened to dotted keys: `lora: {r: 16}` is the key "lora.r"), checks every
 * value against the schema (type, range, choices) and fills in defaults. A
 * plugin reads values with the getters below; because the core has already
 * checked them, getters cannot fail: asking for a key the schema does not
 * declare, or with the wrong type, is a programming error and aborts with a
 * message naming the key. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  PS_TYPE_BOOL,
  PS_TYPE_INT,
  PS_TYPE_FLOAT,
  PS_TYPE_STRING,
  PS_TYPE_ENUM, /* a string from ps_config_key.choices */
  PS_TYPE_INT_LIST,
  PS_TYPE_FLOAT_LIST,
  PS_TYPE_STRING_LIST,
} ps_type;

const char *ps_type_name(ps_type type);

typedef struct ps_config ps_config;

gboolean ps_config_has(const ps_config *cfg, const char *key); /* FALSE: optional, unset */
gboolean ps_config_bool(const ps_config *cfg, const char *key);
int64_t ps_config_int(const ps_config *cfg, const char *key);
double ps_config_float(const ps_config *cfg, const char *key); /* also reads an int */
const char *ps_config_string(const ps_config *cfg, const char *key); /* string or enum */
const int64_t *ps_config_int_list(const ps_config *cfg, const char *key, size_t *count);
const double *ps_config_float_list(const ps_config *cfg, const char *key, size_t *count);
/* NULL-terminated as well as counted. */
const char *const *ps_config_string_list(const ps_config *cfg, const char *key, size_t *count);

/* "key: value" lines in schema order, for logs and --dry-run; g_free it. */
char *ps_config_format(const ps_config *cfg);

G_END_DECLS
