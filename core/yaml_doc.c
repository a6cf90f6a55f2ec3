/* yaml_doc.c — libyaml events to a small node tree with positions and caps,
 * plus copy, deep merge, dotted set, emit and "did you mean" helpers.
 *
 * The tree is built from the event API rather than libyaml's document API so
 * that limits are enforced while parsing: an alias is expanded by copying
 * the anchored subtree, and the copy is refused before it is made when it
 * would push the node count over the cap. Anchors are registered when their
 * node is complete, so a node cannot contain an alias to itself. */
#include "yaml_doc.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include <pathseg/error.h>

/* ---------------------------------------------------------------------- */
/* Nodes. */

static ps_ynode *node_new(ps_ynode_kind kind, const char *file, int line, int col) {
  ps_ynode *n = g_new0(ps_ynode, 1);
  n->kind = kind;
  n->file = g_ref_string_new_intern(file ? file : "<unknown>");
  n->line = line;
  n->col = col;
  if (kind == PS_YNODE_MAPPING)
    n->keys = g_ptr_array_new();
  if (kind != PS_YNODE_SCALAR)
    n->items = g_ptr_array_new();
  return n;
}

ps_ynode *ps_ynode_new_scalar(const char *value, gboolean quoted, const char *file, int line,
                              int col) {
  ps_ynode *n = node_new(PS_YNODE_SCALAR, file, line, col);
  n->value = g_strdup(value ? value : "");
  n->quoted = quoted;
  return n;
}

ps_ynode *ps_ynode_new_mapping(const char *file, int line, int col) {
  return node_new(PS_YNODE_MAPPING, file, line, col);
}

ps_ynode *ps_ynode_new_sequence(const char *file, int line, int col) {
  return node_new(PS_YNODE_SEQUENCE, file, line, col);
}

void ps_ynode_free(ps_ynode *node) {
  if (!node)
    return;
  if (node->keys) {
    for (guint i = 0; i < node->keys->len; i++)
      ps_ynode_free(g_ptr_array_index(node->keys, i));
    g_ptr_array_free(node->keys, TRUE);
  }
  if (node->items) {
    for (guint i = 0; i < node->items->len; i++)
      ps_ynode_free(g_ptr_array_index(node->items, i));
    g_ptr_array_free(node->items, TRUE);
  }
  g_free(node->value);
  g_ref_string_release(node->file);
  g_free(node);
}

ps_ynode *ps_ynode_copy(const ps_ynode *node) {
  if (!node)
    return NULL;
  ps_ynode *n = node_new(node->kind, node->file, node->line, node->col);
  n->quoted = node->quoted;
  n->value = g_strdup(node->value);
  if (node->keys)
    for (guint i = 0; i < node->keys->len; i++)
      g_ptr_array_add(n->keys, ps_ynode_copy(g_ptr_array_index(node->keys, i)));
  if (node->items)
    for (guint i = 0; i < node->items->len; i++)
      g_ptr_array_add(n->items, ps_ynode_copy(g_ptr_array_index(node->items, i)));
  return n;
}

size_t ps_ynode_count(const ps_ynode *node) {
  if (!node)
    return 0;
  size_t count = 1;
  if (node->keys)
    count += node->keys->len;
  if (node->items)
    for (guint i = 0; i < node->items->len; i++)
      count += ps_ynode_count(g_ptr_array_index(node->items, i));
  return count;
}

gboolean ps_ynode_is_null(const ps_ynode *node) {
  if (!node)
    return TRUE;
  if (node->kind != PS_YNODE_SCALAR || node->quoted)
    return FALSE;
  const char *v = node->value;
  return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
         strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

size_t ps_ynode_size(const ps_ynode *node) {
  return node && node->items ? node->items->len : 0;
}

const ps_ynode *ps_ynode_key_at(const ps_ynode *map, size_t i) {
  g_return_val_if_fail(map && map->kind == PS_YNODE_MAPPING && i < map->keys->len, NULL);
  return g_ptr_array_index(map->keys, i);
}

ps_ynode *ps_ynode_value_at(const ps_ynode *node, size_t i) {
  g_return_val_if_fail(node && node->items && i < node->items->len, NULL);
  return g_ptr_array_index(node->items, i);
}

static gssize map_index(const ps_ynode *map, const char *key) {
  if (!map || map->kind != PS_YNODE_MAPPING)
    return -1;
  for (guint i = 0; i < map->keys->len; i++) {
    const ps_ynode *k = g_ptr_array_index(map->keys, i);
    if (strcmp(k->value, key) == 0)
      return i;
  }
  return -1;
}

ps_ynode *ps_ynode_get(const ps_ynode *map, const char *key) {
  gssize i = map_index(map, key);
  return i < 0 ? NULL : g_ptr_array_index(map->items, i);
}

void ps_ynode_map_append(ps_ynode *map, const char *key, ps_ynode *value) {
  g_return_if_fail(map && map->kind == PS_YNODE_MAPPING);
  g_ptr_array_add(map->keys, ps_ynode_new_scalar(key, FALSE, value->file, value->line, value->col));
  g_ptr_array_add(map->items, value);
}

void ps_ynode_map_set(ps_ynode *map, const char *key, ps_ynode *value) {
  gssize i = map_index(map, key);
  if (i < 0) {
    ps_ynode_map_append(map, key, value);
    return;
  }
  ps_ynode_free(g_ptr_array_index(map->items, i));
  g_ptr_array_index(map->items, i) = value;
}

gboolean ps_ynode_map_remove(ps_ynode *map, const char *key) {
  gssize i = map_index(map, key);
  if (i < 0)
    return FALSE;
  ps_ynode_free(g_ptr_array_steal_index(map->keys, i));
  ps_ynode_free(g_ptr_array_steal_index(map->items, i));
  return TRUE;
}

char *ps_ynode_where(const ps_ynode *node) {
  if (!node)
    return g_strdup("<unknown>");
  if (node->line <= 0)
    return g_strdup(node->file);
  return g_strdup_printf("%s:%d:%d", node->file, node->line, node->col);
}

char *ps_ynode_describe(const ps_ynode *node) {
  if (!node || ps_ynode_is_null(node))
    return g_strdup("null");
  if (node->kind == PS_YNODE_MAPPING)
    return g_strdup("a mapping");
  if (node->kind == PS_YNODE_SEQUENCE)
    return g_strdup("a list");
  /* Keep messages one line and short, whatever the value. */
  GString *s = g_string_new(node->quoted ? "the string '" : "'");
  size_t n = 0;
  for (const char *p = node->value; *p && n < 48; p++, n++)
    g_string_append_c(s, (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p);
  if (strlen(node->value) > 48)
    g_string_append(s, "...");
  g_string_append_c(s, '\'');
  return g_string_free(s, FALSE);
}

/* ---------------------------------------------------------------------- */
/* Parsing. */

typedef struct {
  ps_ynode *node;
  char *anchor;          /* registered when the node is complete */
  GHashTable *seen;      /* mapping: key text -> key node, for duplicates */
  ps_ynode *pending_key; /* mapping: a key waiting for its value */
  size_t first_node;     /* node count when this node began */
  int height;            /* levels of collections below and including this one */
} frame;

typedef struct {
  ps_ynode *node; /* owned by the tree being built */
  size_t count;
  int height;
} anchor_info;

typedef struct {
  const char *origin;
  const char *text;
  size_t length;
  GArray *stack; /* frame */
  GHashTable *anchors;
  size_t nodes, aliases;
  int documents;
  ps_ynode *root;
  gboolean have_root;
  GPtrArray *graveyard; /* nodes taken out of the tree that anchors may still name */
} builder;

static void anchor_info_free(gpointer p) { g_free(p); }

static gboolean fail_at(builder *b, const yaml_mark_t *mark, GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static gboolean fail_at(builder *b, const yaml_mark_t *mark, GError **error, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s:%zu:%zu: %s", b->origin, mark->line + 1,
              mark->column + 1, msg);
  return FALSE;
}

static frame *top(builder *b) {
  return b->stack->len ? &g_array_index(b->stack, frame, b->stack->len - 1) : NULL;
}

static void register_anchor(builder *b, const char *name, ps_ynode *node, size_t count, int height) {
  if (!name)
    return;
  anchor_info *info = g_new0(anchor_info, 1);
  info->node = node;
  info->count = count;
  info->height = height;
  g_hash_table_replace(b->anchors, g_strdup(name), info);
}

/* Hands a complete node to its parent (or makes it the root). Takes `node`. */
static gboolean attach(builder *b, ps_ynode *node, int height, GError **error) {
  frame *f = top(b);
  if (!f) {
    b->root = node;
    b->have_root = TRUE;
    return TRUE;
  }
  if (height + 1 > f->height)
    f->height = height + 1;
  if (f->node->kind == PS_YNODE_SEQUENCE) {
    g_ptr_array_add(f->node->items, node);
    return TRUE;
  }
  if (!f->pending_key) {
    /* Collections as keys are refused when they start; an alias may still
     * bring one here. */
    if (node->kind != PS_YNODE_SCALAR) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s:%d:%d: a mapping key must be a scalar",
                  b->origin, node->line, node->col);
      ps_ynode_free(node);
      return FALSE;
    }
    const ps_ynode *prev = g_hash_table_lookup(f->seen, node->value);
    if (prev) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                  "%s:%d:%d: duplicate key '%s' in one mapping (first at line %d, column %d)",
                  b->origin, node->line, node->col, node->value, prev->line, prev->col);
      ps_ynode_free(node);
      return FALSE;
    }
    g_hash_table_insert(f->seen, node->value, node);
    f->pending_key = node;
    return TRUE;
  }
  g_ptr_array_add(f->node->keys, f->pending_key);
  g_ptr_array_add(f->node->items, node);
  f->pending_key = NULL;
  return TRUE;
}

static gboolean count_node(builder *b, const yaml_mark_t *mark, size_t n, GError **error) {
  if (b->nodes + n > PS_YAML_MAX_NODES)
    return fail_at(b, mark, error, "more than %d nodes (counting aliases expanded); refusing the document",
                   PS_YAML_MAX_NODES);
  b->nodes += n;
  return TRUE;
}

static gboolean is_str_tag(const yaml_char_t *tag) {
  return tag && (strcmp((const char *)tag, YAML_STR_TAG) == 0 || strcmp((const char *)tag, "!") == 0);
}

static gboolean on_start(builder *b, const yaml_event_t *ev, ps_ynode_kind kind,
                         const yaml_char_t *anchor, GError **error) {
  const yaml_mark_t *m = &ev->start_mark;
  frame *f = top(b);
  if (f && f->node->kind == PS_YNODE_MAPPING && !f->pending_key)
    return fail_at(b, m, error, "a mapping key must be a scalar, not a %s",
                   kind == PS_YNODE_MAPPING ? "mapping" : "list");
  if ((int)b->stack->len + 1 > PS_YAML_MAX_DEPTH)
    return fail_at(b, m, error, "nesting deeper than %d levels", PS_YAML_MAX_DEPTH);
  if (!count_node(b, m, 1, error))
    return FALSE;
  frame nf = {0};
  nf.node = node_new(kind, b->origin, (int)m->line + 1, (int)m->column + 1);
  nf.anchor = anchor ? g_strdup((const char *)anchor) : NULL;
  nf.seen = kind == PS_YNODE_MAPPING ? g_hash_table_new(g_str_hash, g_str_equal) : NULL;
  nf.first_node = b->nodes - 1;
  nf.height = 1;
  g_array_append_val(b->stack, nf);
  return TRUE;
}

/* YAML 1.1 merge keys: `<<: *defaults` (or a list of them) copies the keys
 * the mapping does not set itself; earlier sources win over later ones. The
 * copies count against the node cap like alias expansions do. */
static gboolean apply_merge_keys(builder *b, frame *f, GError **error) {
  ps_ynode *map = f->node;
  gssize at = -1;
  for (guint i = 0; i < map->keys->len; i++) {
    const ps_ynode *k = g_ptr_array_index(map->keys, i);
    if (!k->quoted && strcmp(k->value, "<<") == 0)
      at = i;
  }
  if (at < 0)
    return TRUE;
  ps_ynode *key = g_ptr_array_steal_index(map->keys, at);
  ps_ynode *value = g_ptr_array_steal_index(map->items, at);
  g_hash_table_remove(f->seen, key->value);
  gboolean ok = TRUE;
  gboolean is_list = value->kind == PS_YNODE_SEQUENCE;
  size_t n_sources = is_list ? value->items->len : 1;
  for (size_t s = 0; ok && s < n_sources; s++) {
    const ps_ynode *src = is_list ? g_ptr_array_index(value->items, s) : value;
    if (src->kind != PS_YNODE_MAPPING) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                  "%s:%d:%d: a merge key '<<' takes a mapping or a list of mappings (e.g. <<: *defaults)",
                  b->origin, src->line, src->col);
      ok = FALSE;
      break;
    }
    for (guint i = 0; ok && i < src->keys->len; i++) {
      const ps_ynode *k = g_ptr_array_index(src->keys, i);
      if (g_hash_table_contains(f->seen, k->value))
        continue;
      const ps_ynode *v = g_ptr_array_index(src->items, i);
      size_t count = 1 + ps_ynode_count(v);
      if (b->nodes + count > PS_YAML_MAX_NODES) {
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                    "%s:%d:%d: the merge key would expand the document past %d nodes; refusing it", b->origin,
                    key->line, key->col, PS_YAML_MAX_NODES);
        ok = FALSE;
        break;
      }
      b->nodes += count;
      ps_ynode *kc = ps_ynode_copy(k);
      g_ptr_array_add(map->keys, kc);
      g_ptr_array_add(map->items, ps_ynode_copy(v));
      g_hash_table_insert(f->seen, kc->value, kc);
    }
  }
  /* `<<: &x {...}` may have registered the value as an anchor: keep it
   * alive until the end of the parse. */
  g_ptr_array_add(b->graveyard, key);
  g_ptr_array_add(b->graveyard, value);
  return ok;
}

static gboolean on_end(builder *b, GError **error) {
  frame f = g_array_index(b->stack, frame, b->stack->len - 1);
  g_array_set_size(b->stack, b->stack->len - 1);
  if (f.node->kind == PS_YNODE_MAPPING && !apply_merge_keys(b, &f, error)) {
    g_hash_table_destroy(f.seen);
    g_free(f.anchor);
    ps_ynode_free(f.node);
    return FALSE;
  }
  g_clear_pointer(&f.seen, g_hash_table_destroy);
  register_anchor(b, f.anchor, f.node, b->nodes - f.first_node, f.height);
  g_free(f.anchor);
  return attach(b, f.node, f.height, error);
}

static gboolean on_scalar(builder *b, const yaml_event_t *ev, GError **error) {
  const yaml_mark_t *m = &ev->start_mark;
  const char *value = (const char *)ev->data.scalar.value;
  size_t length = ev->data.scalar.length;
  if (memchr(value, '\0', length))
    return fail_at(b, m, error, "a NUL character inside a string is not supported");
  if (!count_node(b, m, 1, error))
    return FALSE;
  gboolean quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    is_str_tag(ev->data.scalar.tag);
  ps_ynode *n = ps_ynode_new_scalar(value, quoted, b->origin, (int)m->line + 1, (int)m->column + 1);
  register_anchor(b, (const char *)ev->data.scalar.anchor, n, 1, 0);
  return attach(b, n, 0, error);
}

static gboolean on_alias(builder *b, const yaml_event_t *ev, GError **error) {
  const yaml_mark_t *m = &ev->start_mark;
  const char *name = (const char *)ev->data.alias.anchor;
  if (++b->aliases > PS_YAML_MAX_ALIASES)
    return fail_at(b, m, error, "more than %d aliases; refusing the document", PS_YAML_MAX_ALIASES);
  const anchor_info *info = g_hash_table_lookup(b->anchors, name);
  if (!info)
    return fail_at(b, m, error, "alias '*%s' names no complete anchor '&%s' before it", name, name);
  if (b->nodes + info->count > PS_YAML_MAX_NODES)
    return fail_at(b, m, error,
                   "alias '*%s' would expand the document past %d nodes (an alias bomb?); refusing it",
                   name, PS_YAML_MAX_NODES);
  if ((int)b->stack->len + info->height > PS_YAML_MAX_DEPTH)
    return fail_at(b, m, error, "alias '*%s' nests deeper than %d levels", name, PS_YAML_MAX_DEPTH);
  b->nodes += info->count;
  return attach(b, ps_ynode_copy(info->node), info->height, error);
}

/* libyaml's message for a tab in indentation says nothing about tabs. */
static gboolean line_indented_with_tab(const char *text, size_t length, size_t line) {
  size_t i = 0;
  for (size_t l = 0; l < line && i < length; i++)
    if (text[i] == '\n')
      l++;
  for (; i < length && (text[i] == ' ' || text[i] == '\t'); i++)
    if (text[i] == '\t')
      return TRUE;
  return FALSE;
}

static gboolean parser_error(builder *b, const yaml_parser_t *p, GError **error) {
  const char *problem = p->problem ? p->problem : "unknown error";
  g_autofree char *context = NULL;
  if (p->context)
    context = g_strdup_printf(" (%s at line %zu, column %zu)", p->context, p->context_mark.line + 1,
                              p->context_mark.column + 1);
  const yaml_mark_t *m = &p->problem_mark;
  const char *hint = "";
  if (p->error == YAML_SCANNER_ERROR || p->error == YAML_PARSER_ERROR) {
    if (line_indented_with_tab(b->text, b->length, m->line) ||
        (p->context_mark.line != m->line && line_indented_with_tab(b->text, b->length, p->context_mark.line)))
      hint = "; tabs cannot indent YAML, use spaces";
  }
  if (p->error == YAML_MEMORY_ERROR)
    return fail_at(b, m, error, "out of memory while parsing YAML");
  return fail_at(b, m, error, "malformed YAML: %s%s%s", problem, context ? context : "", hint);
}

static void builder_clear(builder *b) {
  for (guint i = 0; i < b->stack->len; i++) {
    frame *f = &g_array_index(b->stack, frame, i);
    ps_ynode_free(f->node);
    ps_ynode_free(f->pending_key);
    g_free(f->anchor);
    g_clear_pointer(&f->seen, g_hash_table_destroy);
  }
  g_array_free(b->stack, TRUE);
  g_hash_table_destroy(b->anchors);
  g_ptr_array_free(b->graveyard, TRUE);
}

ps_ynode *ps_yaml_parse_string(const char *text, gssize length, const char *origin, GError **error) {
  g_return_val_if_fail(text || length == 0, NULL);
  size_t len = length < 0 ? strlen(text) : (size_t)length;
  if (!origin)
    origin = "<string>";
  if (len > PS_YAML_MAX_BYTES) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %zu bytes is over the limit of %u MiB",
                origin, len, PS_YAML_MAX_BYTES >> 20);
    return NULL;
  }
  builder b = {0};
  b.origin = origin;
  b.text = text;
  b.length = len;
  b.stack = g_array_new(FALSE, TRUE, sizeof(frame));
  b.anchors = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, anchor_info_free);
  b.graveyard = g_ptr_array_new_with_free_func((GDestroyNotify)ps_ynode_free);

  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    builder_clear(&b);
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "%s: cannot initialise the YAML parser", origin);
    return NULL;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)(len ? text : ""), len);

  gboolean ok = TRUE, done = FALSE;
  while (ok && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      ok = parser_error(&b, &parser, error);
      break;
    }
    switch (ev.type) {
    case YAML_STREAM_END_EVENT: done = TRUE; break;
    case YAML_DOCUMENT_START_EVENT:
      if (++b.documents > 1)
        ok = fail_at(&b, &ev.start_mark, error, "more than one YAML document in one file");
      break;
    case YAML_SCALAR_EVENT: ok = on_scalar(&b, &ev, error); break;
    case YAML_ALIAS_EVENT: ok = on_alias(&b, &ev, error); break;
    case YAML_SEQUENCE_START_EVENT:
      ok = on_start(&b, &ev, PS_YNODE_SEQUENCE, ev.data.sequence_start.anchor, error);
      break;
    case YAML_MAPPING_START_EVENT:
      ok = on_start(&b, &ev, PS_YNODE_MAPPING, ev.data.mapping_start.anchor, error);
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: ok = on_end(&b, error); break;
    default: break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  builder_clear(&b);
  if (!ok) {
    ps_ynode_free(b.root);
    return NULL;
  }
  if (!b.have_root)
    return ps_ynode_new_scalar("", FALSE, origin, 1, 1);
  return b.root;
}

ps_ynode *ps_yaml_parse_file(const char *path, GError **error) {
  GStatBuf st;
  if (g_stat(path, &st) != 0) {
    int e = errno;
    g_set_error(error, PS_ERROR, e == ENOENT ? PS_ERROR_NOT_FOUND : PS_ERROR_IO, "cannot read %s: %s",
                path, g_strerror(e));
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot read %s: not a regular file", path);
    return NULL;
  }
  if ((guint64)st.st_size > PS_YAML_MAX_BYTES) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: the file is %" G_GUINT64_FORMAT
                " bytes, over the limit of %u MiB for a YAML file",
                path, (guint64)st.st_size, PS_YAML_MAX_BYTES >> 20);
    return NULL;
  }
  g_autofree char *text = NULL;
  gsize length = 0;
  g_autoptr(GError) local = NULL;
  if (!g_file_get_contents(path, &text, &length, &local)) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot read %s: %s", path, local->message);
    return NULL;
  }
  return ps_yaml_parse_string(text, (gssize)length, path, error);
}

/* ---------------------------------------------------------------------- */
/* Merge and set. */

static ps_ynode *strip_nulls_copy(const ps_ynode *over) {
  if (over->kind != PS_YNODE_MAPPING)
    return ps_ynode_copy(over);
  ps_ynode *m = ps_ynode_new_mapping(over->file, over->line, over->col);
  ps_ynode_merge(m, over);
  return m;
}

void ps_ynode_merge(ps_ynode *base, const ps_ynode *over) {
  g_return_if_fail(base && base->kind == PS_YNODE_MAPPING);
  g_return_if_fail(over && over->kind == PS_YNODE_MAPPING);
  /* An index over base keeps large mappings linear; deletions leave holes
   * that are compacted at the end. */
  g_autoptr(GHashTable) index = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < base->keys->len; i++) {
    ps_ynode *k = g_ptr_array_index(base->keys, i);
    g_hash_table_insert(index, k->value, GUINT_TO_POINTER(i + 1));
  }
  gboolean holes = FALSE;
  for (guint j = 0; j < over->keys->len; j++) {
    const ps_ynode *ok = g_ptr_array_index(over->keys, j);
    const ps_ynode *ov = g_ptr_array_index(over->items, j);
    guint at = GPOINTER_TO_UINT(g_hash_table_lookup(index, ok->value));
    if (ps_ynode_is_null(ov)) {
      if (at) {
        g_hash_table_remove(index, ok->value);
        ps_ynode_free(g_ptr_array_index(base->keys, at - 1));
        ps_ynode_free(g_ptr_array_index(base->items, at - 1));
        g_ptr_array_index(base->keys, at - 1) = NULL;
        g_ptr_array_index(base->items, at - 1) = NULL;
        holes = TRUE;
      }
      continue;
    }
    if (at) {
      ps_ynode *bv = g_ptr_array_index(base->items, at - 1);
      if (bv->kind == PS_YNODE_MAPPING && ov->kind == PS_YNODE_MAPPING) {
        ps_ynode_merge(bv, ov);
      } else {
        ps_ynode_free(bv);
        g_ptr_array_index(base->items, at - 1) = strip_nulls_copy(ov);
        /* The key now points at the file that set the value. */
        ps_ynode *bk = g_ptr_array_index(base->keys, at - 1);
        g_hash_table_remove(index, bk->value);
        ps_ynode_free(bk);
        ps_ynode *nk = ps_ynode_copy(ok);
        g_ptr_array_index(base->keys, at - 1) = nk;
        g_hash_table_insert(index, nk->value, GUINT_TO_POINTER(at));
      }
    } else {
      ps_ynode *nk = ps_ynode_copy(ok);
      g_ptr_array_add(base->keys, nk);
      g_ptr_array_add(base->items, strip_nulls_copy(ov));
      g_hash_table_insert(index, nk->value, GUINT_TO_POINTER(base->keys->len));
    }
  }
  if (holes) {
    guint w = 0;
    for (guint r = 0; r < base->keys->len; r++) {
      if (!g_ptr_array_index(base->keys, r))
        continue;
      g_ptr_array_index(base->keys, w) = g_ptr_array_index(base->keys, r);
      g_ptr_array_index(base->items, w) = g_ptr_array_index(base->items, r);
      w++;
    }
    g_ptr_array_set_size(base->keys, w);
    g_ptr_array_set_size(base->items, w);
  }
}

gboolean ps_ynode_set_path(ps_ynode *root, const char *dotted, ps_ynode *value, GError **error) {
  g_auto(GStrv) parts = g_strsplit(dotted, ".", -1);
  guint n = g_strv_length(parts);
  for (guint i = 0; i < n; i++) {
    if (parts[i][0] == '\0') {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "'%s' has an empty key (two dots, or a dot at an end)",
                  dotted);
      ps_ynode_free(value);
      return FALSE;
    }
  }
  if (!root || root->kind != PS_YNODE_MAPPING || n == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "'%s': the document is not a mapping", dotted);
    ps_ynode_free(value);
    return FALSE;
  }
  gboolean delete = ps_ynode_is_null(value);
  ps_ynode *cur = root;
  for (guint i = 0; i + 1 < n; i++) {
    ps_ynode *child = ps_ynode_get(cur, parts[i]);
    if (!child) {
      if (delete) { /* nothing to delete */
        ps_ynode_free(value);
        return TRUE;
      }
      child = ps_ynode_new_mapping(value->file, value->line, value->col);
      ps_ynode_map_append(cur, parts[i], child);
    } else if (child->kind != PS_YNODE_MAPPING) {
      /* Only the first i+1 parts name the offending key. */
      g_autofree char *path = NULL;
      {
        char *saved = parts[i + 1];
        parts[i + 1] = NULL;
        path = g_strjoinv(".", parts);
        parts[i + 1] = saved;
      }
      g_autofree char *where = ps_ynode_where(child);
      g_autofree char *what = ps_ynode_describe(child);
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "'%s' is %s (at %s), not a mapping with keys",
                  path, what, where);
      ps_ynode_free(value);
      return FALSE;
    }
    cur = child;
  }
  if (delete) {
    ps_ynode_map_remove(cur, parts[n - 1]);
    ps_ynode_free(value);
    return TRUE;
  }
  ps_ynode *v = strip_nulls_copy(value);
  ps_ynode_free(value);
  gssize at = map_index(cur, parts[n - 1]);
  if (at >= 0) {
    /* The key now points at the override that set it. */
    ps_ynode *k = g_ptr_array_index(cur->keys, at);
    ps_ynode *nk = ps_ynode_new_scalar(k->value, k->quoted, v->file, v->line, v->col);
    ps_ynode_free(k);
    g_ptr_array_index(cur->keys, at) = nk;
  }
  ps_ynode_map_set(cur, parts[n - 1], v);
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* Emit. */

static int write_gstring(void *data, unsigned char *buffer, size_t size) {
  g_string_append_len(data, (const char *)buffer, (gssize)size);
  return 1;
}

static gboolean emit_key(yaml_emitter_t *em, const ps_ynode *k) {
  /* A key is only text: keep it exactly, quoting it when the emitter must. */
  yaml_event_t ev;
  return yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)k->value, (int)strlen(k->value), 1, 1,
                                      YAML_ANY_SCALAR_STYLE) &&
         yaml_emitter_emit(em, &ev);
}

static gboolean emit_scalar(yaml_emitter_t *em, const ps_ynode *n) {
  yaml_event_t ev;
  if (ps_ynode_is_null(n)) /* "" could come back quoted, i.e. as a string */
    return yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)"~", 1, 1, 1,
                                        YAML_PLAIN_SCALAR_STYLE) &&
           yaml_emitter_emit(em, &ev);
  /* A plain scalar may stay plain (the emitter quotes it if it must); a
   * quoted one must not become plain, or "3" would turn into a number. */
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)n->value, (int)strlen(n->value),
                                    !n->quoted, 1, YAML_ANY_SCALAR_STYLE))
    return FALSE;
  return yaml_emitter_emit(em, &ev);
}

static gboolean emit_node(yaml_emitter_t *em, const ps_ynode *n) {
  yaml_event_t ev;
  switch (n->kind) {
  case PS_YNODE_SCALAR: return emit_scalar(em, n);
  case PS_YNODE_SEQUENCE:
    if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                              n->items->len ? YAML_BLOCK_SEQUENCE_STYLE
                                                            : YAML_FLOW_SEQUENCE_STYLE) ||
        !yaml_emitter_emit(em, &ev))
      return FALSE;
    for (guint i = 0; i < n->items->len; i++)
      if (!emit_node(em, g_ptr_array_index(n->items, i)))
        return FALSE;
    return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
  case PS_YNODE_MAPPING:
    if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                             n->items->len ? YAML_BLOCK_MAPPING_STYLE
                                                           : YAML_FLOW_MAPPING_STYLE) ||
        !yaml_emitter_emit(em, &ev))
      return FALSE;
    for (guint i = 0; i < n->items->len; i++)
      if (!emit_key(em, g_ptr_array_index(n->keys, i)) ||
          !emit_node(em, g_ptr_array_index(n->items, i)))
        return FALSE;
    return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
  }
  return FALSE;
}

char *ps_ynode_emit(const ps_ynode *node, GError **error) {
  g_return_val_if_fail(node, NULL);
  yaml_emitter_t em;
  if (!yaml_emitter_initialize(&em)) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "cannot initialise the YAML emitter");
    return NULL;
  }
  GString *out = g_string_new(NULL);
  yaml_emitter_set_output(&em, write_gstring, out);
  yaml_emitter_set_unicode(&em, 1);
  yaml_emitter_set_width(&em, -1);
  yaml_emitter_set_indent(&em, 2);
  yaml_event_t ev;
  gboolean ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
                yaml_emitter_emit(&em, &ev) &&
                yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
                yaml_emitter_emit(&em, &ev) && emit_node(&em, node) &&
                yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
                yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev) &&
                yaml_emitter_flush(&em);
  if (!ok) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "cannot emit YAML: %s",
                em.problem ? em.problem : "invalid text (not UTF-8?)");
    yaml_emitter_delete(&em);
    g_string_free(out, TRUE);
    return NULL;
  }
  yaml_emitter_delete(&em);
  return g_string_free(out, FALSE);
}

/* ---------------------------------------------------------------------- */
/* Suggestions. */

size_t ps_edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  /* Three rows of the optimal-string-alignment table. */
  g_autofree size_t *rows = g_new(size_t, 3 * (m + 1));
  size_t *pp = rows, *p = rows + (m + 1), *c = rows + 2 * (m + 1);
  for (size_t j = 0; j <= m; j++)
    p[j] = j;
  for (size_t i = 1; i <= n; i++) {
    c[0] = i;
    for (size_t j = 1; j <= m; j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t best = MIN(MIN(p[j] + 1, c[j - 1] + 1), p[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        best = MIN(best, pp[j - 2] + 1);
      c[j] = best;
    }
    size_t *t = pp;
    pp = p;
    p = c;
    c = t;
  }
  return p[m];
}

const char *ps_closest_name(const char *wanted, const char *const *candidates, size_t n) {
  size_t len = strlen(wanted);
  if (len == 0 || len > 128)
    return NULL;
  size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
  const char *best = NULL;
  size_t best_d = limit + 1;
  for (size_t i = 0; i < n; i++) {
    if (!candidates[i] || strlen(candidates[i]) > 128)
      continue;
    size_t d = ps_edit_distance(wanted, candidates[i]);
    if (d < best_d && d < strlen(candidates[i])) {
      best = candidates[i];
      best_d = d;
    }
  }
  return best;
}
