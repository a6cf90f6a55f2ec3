/* config.c — a component's configuration: built from a YAML mapping against
 * the component's schema (flattening nested mappings to dotted keys, checking
 * types, ranges and choices, filling defaults), then read by the plugin with
 * getters that cannot fail.
 *
 * Type rules follow what the YAML text says, not what it could be coerced
 * to: a quoted "3" is not an int, 1.0 is not an int, yes is not a bool. A
 * string key accepts any scalar, since names like 2024-run are strings. */
#include "yaml_doc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <pathseg/error.h>

typedef struct {
  gboolean set;
  gboolean b;
  int64_t i;
  double f;
  char *s;
  int64_t *il;
  double *fl;
  char **sl; /* NULL-terminated */
  size_t n;
} cfg_value;

struct ps_config {
  const ps_config_key *schema;
  size_t n_keys;
  cfg_value *values;
  char *owner;
};

const char *ps_type_name(ps_type type) {
  switch (type) {
  case PS_TYPE_BOOL: return "bool";
  case PS_TYPE_INT: return "int";
  case PS_TYPE_FLOAT: return "float";
  case PS_TYPE_STRING: return "string";
  case PS_TYPE_ENUM: return "enum";
  case PS_TYPE_INT_LIST: return "int list";
  case PS_TYPE_FLOAT_LIST: return "float list";
  case PS_TYPE_STRING_LIST: return "string list";
  }
  return "unknown type";
}

static void value_clear(cfg_value *v) {
  g_free(v->s);
  g_free(v->il);
  g_free(v->fl);
  g_strfreev(v->sl);
  memset(v, 0, sizeof *v);
}

void ps_config_free(ps_config *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->n_keys; i++)
    value_clear(&cfg->values[i]);
  g_free(cfg->values);
  g_free(cfg->owner);
  g_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Scalars. */

static gboolean parse_bool(const ps_ynode *n, gboolean *out) {
  if (n->kind != PS_YNODE_SCALAR || n->quoted)
    return FALSE;
  const char *v = n->value;
  if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")) {
    *out = TRUE;
    return TRUE;
  }
  if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")) {
    *out = FALSE;
    return TRUE;
  }
  return FALSE;
}

/* Decimal integer with an optional sign; FALSE on anything else or overflow. */
static gboolean parse_int_text(const char *v, int64_t *out) {
  const char *p = v;
  gboolean neg = FALSE;
  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  if (!g_ascii_isdigit(*p))
    return FALSE;
  uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
  for (; *p; p++) {
    if (!g_ascii_isdigit(*p))
      return FALSE;
    unsigned d = (unsigned)(*p - '0');
    if (acc > (limit - d) / 10)
      return FALSE;
    acc = acc * 10 + d;
  }
  *out = neg ? (acc == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
  return TRUE;
}

/* YAML 1.2 core float (and int) syntax: [-+]? (digits[.digits*] | .digits) ([eE][-+]?digits)?,
 * and [-+].inf. NaN is refused: no range check could mean anything for it. */
static gboolean parse_float_text(const char *v, double *out) {
  const char *p = v;
  if (*p == '+' || *p == '-')
    p++;
  if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF")) {
    *out = v[0] == '-' ? -INFINITY : INFINITY;
    return TRUE;
  }
  gboolean digits = FALSE;
  while (g_ascii_isdigit(*p)) {
    p++;
    digits = TRUE;
  }
  if (*p == '.') {
    p++;
    while (g_ascii_isdigit(*p)) {
      p++;
      digits = TRUE;
    }
  }
  if (!digits)
    return FALSE;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      p++;
    if (!g_ascii_isdigit(*p))
      return FALSE;
    while (g_ascii_isdigit(*p))
      p++;
  }
  if (*p)
    return FALSE;
  double d = g_ascii_strtod(v, NULL);
  if (!isfinite(d))
    return FALSE;
  *out = d;
  return TRUE;
}

static gboolean in_choices(const char *choices, const char *v) {
  if (!choices)
    return FALSE;
  size_t n = strlen(v);
  for (const char *p = choices; *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, v, n) == 0)
      return TRUE;
    if (!bar)
      break;
    p = bar + 1;
  }
  return FALSE;
}

static char *format_double(double d) {
  if (isinf(d))
    return g_strdup(d < 0 ? "-.inf" : ".inf");
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  static const char *const formats[] = {"%.15g", "%.16g", "%.17g"};
  for (size_t i = 0; i < G_N_ELEMENTS(formats); i++) {
    g_ascii_formatd(buf, sizeof buf, formats[i], d);
    if (g_ascii_strtod(buf, NULL) == d)
      break;
  }
  return g_strdup(buf);
}

/* What a value of `type` looks like, for "expected X, got Y". */
static const char *expectation(ps_type type) {
  switch (type) {
  case PS_TYPE_BOOL: return "a bool (true or false)";
  case PS_TYPE_INT: return "an int";
  case PS_TYPE_FLOAT: return "a float";
  case PS_TYPE_STRING: return "a string";
  case PS_TYPE_ENUM: return "one of ";
  case PS_TYPE_INT_LIST: return "a list of ints ([1, 2, ...])";
  case PS_TYPE_FLOAT_LIST: return "a list of floats ([0.5, 1, ...])";
  case PS_TYPE_STRING_LIST: return "a list of strings ([a, b, ...])";
  }
  return "a value";
}

static gboolean has_range(const ps_config_key *k) { return !(k->min > k->max); }

/* Checks one scalar against the element type of `k`. On failure returns a
 * message without position. */
static char *check_scalar(const ps_config_key *k, ps_type type, const ps_ynode *n, cfg_value *out,
                          size_t slot) {
  g_autofree char *got = ps_ynode_describe(n);
  if (n->kind != PS_YNODE_SCALAR || ps_ynode_is_null(n))
    return g_strdup_printf("expected %s%s, got %s", expectation(type),
                           type == PS_TYPE_ENUM && k->choices ? k->choices : "", got);
  double number = 0;
  switch (type) {
  case PS_TYPE_BOOL: {
    gboolean b;
    if (!parse_bool(n, &b))
      return g_strdup_printf("expected a bool (true or false), got %s", got);
    out->b = b;
    return NULL;
  }
  case PS_TYPE_INT: {
    int64_t i;
    double d;
    if (n->quoted || !parse_int_text(n->value, &i)) {
      const char *digits = n->value + (n->value[0] == '-' || n->value[0] == '+');
      if (!n->quoted && *digits && strspn(digits, "0123456789") == strlen(digits))
        return g_strdup_printf("%s is beyond the range of a 64-bit int", got);
      if (!n->quoted && parse_float_text(n->value, &d))
        return g_strdup_printf("expected an int, got the float %s", got);
      return g_strdup_printf("expected an int, got %s", got);
    }
    if (out->il)
      out->il[slot] = i;
    else
      out->i = i;
    number = (double)i;
    break;
  }
  case PS_TYPE_FLOAT: {
    double d;
    if (n->quoted || !parse_float_text(n->value, &d))
      return g_strdup_printf("expected a float, got %s", got);
    if (out->fl)
      out->fl[slot] = d;
    else
      out->f = d;
    number = d;
    break;
  }
  case PS_TYPE_STRING:
    if (out->sl)
      out->sl[slot] = g_strdup(n->value);
    else
      out->s = g_strdup(n->value);
    return NULL;
  case PS_TYPE_ENUM:
    if (!in_choices(k->choices, n->value)) {
      GString *msg = g_string_new(NULL);
      g_string_printf(msg, "expected one of %s, got %s", k->choices ? k->choices : "(none)", got);
      g_auto(GStrv) options = g_strsplit(k->choices ? k->choices : "", "|", -1);
      const char *near = ps_closest_name(n->value, (const char *const *)options, g_strv_length(options));
      if (near)
        g_string_append_printf(msg, " (did you mean '%s'?)", near);
      return g_string_free(msg, FALSE);
    }
    out->s = g_strdup(n->value);
    return NULL;
  default: return g_strdup("internal error: not a scalar type");
  }
  if (has_range(k) && (number < k->min || number > k->max)) {
    g_autofree char *lo = format_double(k->min);
    g_autofree char *hi = format_double(k->max);
    return g_strdup_printf("%s is out of range [%s, %s]", n->value, lo, hi);
  }
  return NULL;
}

/* Converts `n` to the type of `k`. On failure returns the message and sets
 * *at to the node at fault. */
static char *convert(const ps_config_key *k, const ps_ynode *n, cfg_value *out, const ps_ynode **at) {
  *at = n;
  ps_type elem;
  switch (k->type) {
  case PS_TYPE_INT_LIST: elem = PS_TYPE_INT; break;
  case PS_TYPE_FLOAT_LIST: elem = PS_TYPE_FLOAT; break;
  case PS_TYPE_STRING_LIST: elem = PS_TYPE_STRING; break;
  default: return check_scalar(k, k->type, n, out, 0);
  }
  if (n->kind != PS_YNODE_SEQUENCE) {
    g_autofree char *got = ps_ynode_describe(n);
    return g_strdup_printf("expected %s, got %s", expectation(k->type), got);
  }
  size_t count = ps_ynode_size(n);
  out->n = count;
  if (elem == PS_TYPE_INT)
    out->il = g_new0(int64_t, count + 1);
  else if (elem == PS_TYPE_FLOAT)
    out->fl = g_new0(double, count + 1);
  else
    out->sl = g_new0(char *, count + 1);
  for (size_t i = 0; i < count; i++) {
    const ps_ynode *item = ps_ynode_value_at(n, i);
    char *problem = check_scalar(k, elem, item, out, i);
    if (problem) {
      *at = item;
      char *msg = g_strdup_printf("item %zu: %s", i + 1, problem);
      g_free(problem);
      return msg;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Building from a mapping. */

typedef struct {
  const ps_config_key *schema;
  size_t n_keys;
  ps_config *cfg;
  const char *path;
  GHashTable *seen; /* dotted key -> key node */
  const char *const *skip;
} build_ctx;

static char *full_path(const char *path, const char *key) {
  return path && *path ? g_strdup_printf("%s.%s", path, key) : g_strdup(key);
}

static gssize schema_index(const build_ctx *b, const char *key) {
  for (size_t i = 0; i < b->n_keys; i++)
    if (strcmp(b->schema[i].key, key) == 0)
      return (gssize)i;
  return -1;
}

static gboolean is_prefix_of_some_key(const build_ctx *b, const char *prefix) {
  size_t n = strlen(prefix);
  for (size_t i = 0; i < b->n_keys; i++)
    if (strncmp(b->schema[i].key, prefix, n) == 0 && b->schema[i].key[n] == '.')
      return TRUE;
  return FALSE;
}

static gboolean unknown_key(const build_ctx *b, const ps_ynode *key_node, const char *dotted,
                            GError **error) {
  g_autofree const char **names = g_new0(const char *, b->n_keys + 1);
  for (size_t i = 0; i < b->n_keys; i++)
    names[i] = b->schema[i].key;
  g_autofree char *where = ps_ynode_where(key_node);
  GString *msg = g_string_new(NULL);
  g_string_printf(msg, "%s: unknown key '%s'", where, dotted);
  if (b->path && *b->path)
    g_string_append_printf(msg, " in %s", b->path);
  const char *near = ps_closest_name(dotted, names, b->n_keys);
  if (near) {
    g_string_append_printf(msg, " (did you mean '%s'?)", near);
  } else if (b->n_keys == 0) {
    g_string_append(msg, " (this component takes no configuration)");
  } else if (b->n_keys <= 24) {
    g_string_append(msg, " (known keys:");
    for (size_t i = 0; i < b->n_keys; i++)
      g_string_append_printf(msg, "%s %s", i ? "," : "", names[i]);
    g_string_append(msg, ")");
  }
  g_set_error_literal(error, PS_ERROR, PS_ERROR_INVALID, msg->str);
  g_string_free(msg, TRUE);
  return FALSE;
}

static gboolean walk(build_ctx *b, const ps_ynode *map, const char *prefix, GError **error) {
  for (size_t i = 0; i < ps_ynode_size(map); i++) {
    const ps_ynode *key = ps_ynode_key_at(map, i);
    const ps_ynode *value = ps_ynode_value_at(map, i);
    if (!prefix && b->skip && g_strv_contains(b->skip, key->value))
      continue;
    g_autofree char *dotted = prefix ? g_strdup_printf("%s.%s", prefix, key->value) : g_strdup(key->value);
    gssize at = schema_index(b, dotted);
    if (at < 0) {
      if (value->kind == PS_YNODE_MAPPING && is_prefix_of_some_key(b, dotted)) {
        if (!walk(b, value, dotted, error))
          return FALSE;
        continue;
      }
      if (ps_ynode_is_null(value) && is_prefix_of_some_key(b, dotted))
        continue; /* `lora: ~` leaves every lora key at its default */
      if (is_prefix_of_some_key(b, dotted)) {
        /* `lora: 5` where lora is a group of keys. */
        GString *group = g_string_new(NULL);
        size_t n = strlen(dotted);
        for (size_t j = 0; j < b->n_keys; j++)
          if (strncmp(b->schema[j].key, dotted, n) == 0 && b->schema[j].key[n] == '.')
            g_string_append_printf(group, "%s%s", group->len ? ", " : "", b->schema[j].key + n + 1);
        g_autofree char *where = ps_ynode_where(value);
        g_autofree char *full = full_path(b->path, dotted);
        g_autofree char *got = ps_ynode_describe(value);
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %s: expected a mapping with keys %s, got %s", where,
                    full, group->str, got);
        g_string_free(group, TRUE);
        return FALSE;
      }
      if (value->kind == PS_YNODE_MAPPING && ps_ynode_size(value) > 0 && !is_prefix_of_some_key(b, dotted)) {
        /* Report the first leaf, so the suggestion can name a full key. */
        const ps_ynode *k0 = ps_ynode_key_at(value, 0);
        g_autofree char *leaf = g_strdup_printf("%s.%s", dotted, k0->value);
        return unknown_key(b, k0, leaf, error);
      }
      return unknown_key(b, key, dotted, error);
    }
    const ps_ynode *prev = g_hash_table_lookup(b->seen, dotted);
    if (prev) {
      g_autofree char *where = ps_ynode_where(key);
      g_autofree char *where0 = ps_ynode_where(prev);
      g_autofree char *full = full_path(b->path, dotted);
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %s is set twice (first at %s)", where, full,
                  where0);
      return FALSE;
    }
    g_hash_table_insert(b->seen, g_strdup(dotted), (gpointer)key);
    if (ps_ynode_is_null(value))
      continue; /* null means "not set": the default applies */
    cfg_value *v = &b->cfg->values[at];
    const ps_ynode *bad = NULL;
    g_autofree char *problem = convert(&b->schema[at], value, v, &bad);
    if (problem) {
      g_autofree char *where = ps_ynode_where(bad);
      g_autofree char *full = full_path(b->path, dotted);
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %s: %s", where, full, problem);
      return FALSE;
    }
    v->set = TRUE;
  }
  return TRUE;
}

/* "file:line:col: ", or "" when there is no node to point at. */
static char *where_prefix(const ps_ynode *anchor) {
  if (!anchor)
    return g_strdup("");
  g_autofree char *where = ps_ynode_where(anchor);
  return g_strdup_printf("%s: ", where);
}

static gboolean fill_default(build_ctx *b, size_t i, const char *owner, const ps_ynode *anchor,
                             GError **error) {
  const ps_config_key *k = &b->schema[i];
  if (!k->default_value) {
    g_autofree char *where = where_prefix(anchor);
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s%s: missing required key '%s' (%s%s%s)", where,
                b->path && *b->path ? b->path : "config", k->key, ps_type_name(k->type),
                k->doc ? ": " : "", k->doc ? k->doc : "");
    return FALSE;
  }
  g_autofree char *origin = g_strdup_printf("default of '%s' in %s", k->key, owner ? owner : "a schema");
  g_autoptr(GError) local = NULL;
  g_autoptr(ps_ynode) def = ps_yaml_parse_string(k->default_value, -1, origin, &local);
  char *problem = NULL;
  const ps_ynode *bad = NULL;
  if (!def)
    problem = g_strdup("it is not valid YAML");
  else if (ps_ynode_is_null(def))
    return TRUE; /* an optional key without a value: ps_config_has() says FALSE */
  else
    problem = convert(k, def, &b->cfg->values[i], &bad);
  if (problem) {
    g_autofree char *where = where_prefix(anchor);
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s%s: %s has a malformed default for '%s' (\"%s\"): %s — a bug in that plugin's schema",
                where, b->path && *b->path ? b->path : "config", owner ? owner : "a component", k->key,
                k->default_value, problem);
    g_free(problem);
    return FALSE;
  }
  b->cfg->values[i].set = TRUE;
  return TRUE;
}

ps_config *ps_config_from_node(const ps_config_key *schema, const ps_ynode *map, const char *path,
                               const char *owner, const ps_ynode *anchor,
                               const char *const *skip, GError **error) {
  static const ps_config_key empty[] = {{0}};
  if (!schema)
    schema = empty;
  g_autoptr(ps_config) cfg = g_new0(ps_config, 1);
  cfg->schema = schema;
  while (schema[cfg->n_keys].key)
    cfg->n_keys++;
  cfg->values = g_new0(cfg_value, cfg->n_keys + 1);
  cfg->owner = g_strdup(owner ? owner : "config");
  if (map && !ps_ynode_is_null(map) && map->kind != PS_YNODE_MAPPING) {
    g_autofree char *where = ps_ynode_where(map);
    g_autofree char *got = ps_ynode_describe(map);
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %s: expected a mapping of config keys, got %s",
                where, path && *path ? path : "config", got);
    return NULL;
  }
  build_ctx b = {schema, cfg->n_keys, cfg, path, NULL, skip};
  b.seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  gboolean ok = !map || map->kind != PS_YNODE_MAPPING || walk(&b, map, NULL, error);
  for (size_t i = 0; ok && i < cfg->n_keys; i++)
    if (!cfg->values[i].set)
      ok = fill_default(&b, i, owner, anchor ? anchor : map, error);
  g_hash_table_destroy(b.seen);
  return ok ? g_steal_pointer(&cfg) : NULL;
}

ps_config *ps_config_parse(const ps_config_key *schema, const char *yaml_text, const char *origin,
                           GError **error) {
  if (!origin)
    origin = "<config>";
  g_autoptr(ps_ynode) root = ps_yaml_parse_string(yaml_text ? yaml_text : "", -1, origin, error);
  if (!root)
    return NULL;
  return ps_config_from_node(schema, root, NULL, origin, root, NULL, error);
}

/* ---------------------------------------------------------------------- */
/* Getters: the schema was checked when the config was built, so a failure
 * here is a bug in the calling plugin. */

static const cfg_value *lookup(const ps_config *cfg, const char *key, ps_type want, gboolean allow_int,
                               gboolean allow_enum) {
  if (!cfg)
    g_error("ps_config: asked for key '%s' of a NULL config", key);
  for (size_t i = 0; i < cfg->n_keys; i++) {
    if (strcmp(cfg->schema[i].key, key) != 0)
      continue;
    ps_type t = cfg->schema[i].type;
    if (t != want && !(allow_int && t == PS_TYPE_INT) && !(allow_enum && t == PS_TYPE_ENUM))
      g_error("ps_config: key '%s' of %s is a %s, read as a %s", key, cfg->owner, ps_type_name(t),
              ps_type_name(want));
    return &cfg->values[i];
  }
  g_error("ps_config: key '%s' is not in the schema of %s", key, cfg->owner);
  return NULL;
}

gboolean ps_config_has(const ps_config *cfg, const char *key) {
  for (size_t i = 0; cfg && i < cfg->n_keys; i++)
    if (strcmp(cfg->schema[i].key, key) == 0)
      return cfg->values[i].set;
  if (!cfg)
    g_error("ps_config: asked for key '%s' of a NULL config", key);
  g_error("ps_config: key '%s' is not in the schema of %s", key, cfg->owner);
  return FALSE;
}

gboolean ps_config_bool(const ps_config *cfg, const char *key) {
  return lookup(cfg, key, PS_TYPE_BOOL, FALSE, FALSE)->b;
}

int64_t ps_config_int(const ps_config *cfg, const char *key) {
  return lookup(cfg, key, PS_TYPE_INT, FALSE, FALSE)->i;
}

double ps_config_float(const ps_config *cfg, const char *key) {
  for (size_t i = 0; cfg && i < cfg->n_keys; i++)
    if (strcmp(cfg->schema[i].key, key) == 0 && cfg->schema[i].type == PS_TYPE_INT)
      return (double)cfg->values[i].i;
  return lookup(cfg, key, PS_TYPE_FLOAT, TRUE, FALSE)->f;
}

const char *ps_config_string(const ps_config *cfg, const char *key) {
  return lookup(cfg, key, PS_TYPE_STRING, FALSE, TRUE)->s;
}

const int64_t *ps_config_int_list(const ps_config *cfg, const char *key, size_t *count) {
  const cfg_value *v = lookup(cfg, key, PS_TYPE_INT_LIST, FALSE, FALSE);
  if (count)
    *count = v->n;
  return v->il;
}

const double *ps_config_float_list(const ps_config *cfg, const char *key, size_t *count) {
  const cfg_value *v = lookup(cfg, key, PS_TYPE_FLOAT_LIST, FALSE, FALSE);
  if (count)
    *count = v->n;
  return v->fl;
}

const char *const *ps_config_string_list(const ps_config *cfg, const char *key, size_t *count) {
  const cfg_value *v = lookup(cfg, key, PS_TYPE_STRING_LIST, FALSE, FALSE);
  if (count)
    *count = v->n;
  return (const char *const *)v->sl;
}

/* ---------------------------------------------------------------------- */
/* Formatting. */

static void append_string(GString *out, const char *s) {
  /* Quote what would not read back as the same plain string. */
  gboolean plain = *s && !strpbrk(s, ":#{}[],&*!|>'\"%@`\n\t") && s[0] != ' ' && s[0] != '-' &&
                   s[0] != '?' && s[strlen(s) - 1] != ' ';
  if (plain) {
    g_string_append(out, s);
    return;
  }
  g_string_append_c(out, '"');
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\\')
      g_string_append_c(out, '\\');
    if (*p == '\n')
      g_string_append(out, "\\n");
    else if (*p == '\t')
      g_string_append(out, "\\t");
    else
      g_string_append_c(out, *p);
  }
  g_string_append_c(out, '"');
}

char *ps_config_format(const ps_config *cfg) {
  GString *out = g_string_new(NULL);
  for (size_t i = 0; cfg && i < cfg->n_keys; i++) {
    const ps_config_key *k = &cfg->schema[i];
    const cfg_value *v = &cfg->values[i];
    g_string_append_printf(out, "%s: ", k->key);
    if (!v->set) {
      g_string_append(out, "~\n");
      continue;
    }
    switch (k->type) {
    case PS_TYPE_BOOL: g_string_append(out, v->b ? "true" : "false"); break;
    case PS_TYPE_INT: g_string_append_printf(out, "%" G_GINT64_FORMAT, v->i); break;
    case PS_TYPE_FLOAT: {
      g_autofree char *d = format_double(v->f);
      g_string_append(out, d);
      break;
    }
    case PS_TYPE_STRING:
    case PS_TYPE_ENUM: append_string(out, v->s); break;
    case PS_TYPE_INT_LIST:
    case PS_TYPE_FLOAT_LIST:
    case PS_TYPE_STRING_LIST:
      g_string_append_c(out, '[');
      for (size_t j = 0; j < v->n; j++) {
        if (j)
          g_string_append(out, ", ");
        if (k->type == PS_TYPE_INT_LIST) {
          g_string_append_printf(out, "%" G_GINT64_FORMAT, v->il[j]);
        } else if (k->type == PS_TYPE_FLOAT_LIST) {
          g_autofree char *d = format_double(v->fl[j]);
          g_string_append(out, d);
        } else {
          append_string(out, v->sl[j]);
        }
      }
      g_string_append_c(out, ']');
      break;
    }
    g_string_append_c(out, '\n');
  }
  return g_string_free(out, FALSE);
}
