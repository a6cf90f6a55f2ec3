/* yaml_doc.h — internal: a small YAML node tree on top of libyaml, with the
 * limits a loader of untrusted files needs, and the tree operations the
 * pipeline loader uses (copy, deep merge, dotted set, emit).
 *
 * Every node remembers where it came from (file, line, column), so that any
 * later check can point the user at the offending text. A scalar also
 * remembers whether it was written quoted (or as a block scalar): a quoted
 * `"3"` is a string, a plain `3` is a number, a plain `~` is null.
 *
 * Limits, checked while parsing (errors name file:line:col):
 *   PS_YAML_MAX_BYTES per file, PS_YAML_MAX_DEPTH levels of nesting,
 *   PS_YAML_MAX_ALIASES aliases, PS_YAML_MAX_NODES nodes counted after
 *   expanding aliases (a "billion laughs" document stops here), no duplicate
 *   keys in one mapping, one document per file. */
#pragma once

#include <glib.h>

#include <pathseg/config.h>
#include <pathseg/pipeline.h>
#include <pathseg/plugin.h>

G_BEGIN_DECLS

#define PS_YAML_MAX_BYTES (4u * 1024u * 1024u)
#define PS_YAML_MAX_DEPTH 64
#define PS_YAML_MAX_ALIASES 1000
#define PS_YAML_MAX_NODES 200000

typedef enum { PS_YNODE_SCALAR, PS_YNODE_SEQUENCE, PS_YNODE_MAPPING } ps_ynode_kind;

typedef struct ps_ynode ps_ynode;
struct ps_ynode {
  ps_ynode_kind kind;
  char *file;       /* GRefString: a file name, or an origin such as "--set 'a=1'" */
  int line, col;    /* 1-based; line 0 = no position (text given on the command line) */
  gboolean quoted;  /* scalar written quoted, as a block scalar or tagged !!str */
  char *value;      /* scalar text (never contains NUL) */
  GPtrArray *keys;  /* mapping: scalar key nodes, in document order */
  GPtrArray *items; /* mapping: values parallel to keys; sequence: the items */
};

/* Parsing. An empty document gives a null scalar. */
ps_ynode *ps_yaml_parse_file(const char *path, GError **error);
ps_ynode *ps_yaml_parse_string(const char *text, gssize length, const char *origin, GError **error);

/* Construction and ownership. */
ps_ynode *ps_ynode_new_scalar(const char *value, gboolean quoted, const char *file, int line,
                              int col);
ps_ynode *ps_ynode_new_mapping(const char *file, int line, int col);
ps_ynode *ps_ynode_new_sequence(const char *file, int line, int col);
void ps_ynode_free(ps_ynode *node);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_ynode, ps_ynode_free)
ps_ynode *ps_ynode_copy(const ps_ynode *node);
/* Nodes in the subtree, the root included. */
size_t ps_ynode_count(const ps_ynode *node);

/* Queries. */
gboolean ps_ynode_is_null(const ps_ynode *node); /* plain ~, null, Null, NULL or empty */
size_t ps_ynode_size(const ps_ynode *node);      /* mapping pairs / sequence items; 0 for a scalar */
const ps_ynode *ps_ynode_key_at(const ps_ynode *map, size_t i);
ps_ynode *ps_ynode_value_at(const ps_ynode *node, size_t i); /* mapping value or sequence item */
/* The value under `key` in a mapping, or NULL (also when `map` is not a mapping). */
ps_ynode *ps_ynode_get(const ps_ynode *map, const char *key);
/* Appends (takes ownership of value; the key node is created at value's position). */
void ps_ynode_map_append(ps_ynode *map, const char *key, ps_ynode *value);
/* Replaces the value under an existing key (takes ownership) or appends it. */
void ps_ynode_map_set(ps_ynode *map, const char *key, ps_ynode *value);
/* Removes `key`; FALSE when absent. */
gboolean ps_ynode_map_remove(ps_ynode *map, const char *key);

/* "file:line:col", or just the origin for nodes without a position. */
char *ps_ynode_where(const ps_ynode *node);
/* "a mapping", "a list", "null", "'text'" — for "expected X, got Y". */
char *ps_ynode_describe(const ps_ynode *node);

/* Deep merge of `over` into `base` (both mappings): mappings merge key by key,
 * any other value replaces (a deep copy), a null value deletes the key. A key
 * new to `base` whose value is a mapping is merged into an empty mapping, so
 * the result never holds null mapping values. */
void ps_ynode_merge(ps_ynode *base, const ps_ynode *over);

/* Sets `root.a.b.c` to `value` (taken), creating missing mappings. A null
 * value deletes the key. Fails when a path element exists and is not a mapping. */
gboolean ps_ynode_set_path(ps_ynode *root, const char *dotted, ps_ynode *value, GError **error);

/* Block-style YAML text for the tree (libyaml emitter); g_free it. */
char *ps_ynode_emit(const ps_ynode *node, GError **error);

/* Damerau (optimal string alignment) edit distance, and the best candidate
 * within a distance that makes a suggestion useful (or NULL). */
size_t ps_edit_distance(const char *a, const char *b);
const char *ps_closest_name(const char *wanted, const char *const *candidates, size_t n);

/* ---------------------------------------------------------------------- */
/* Config building (config.c). */

/* Builds a config from the mapping `map` (NULL or null: nothing set) against
 * `schema`. `path` is the key path of the mapping for messages
 * ("components.medsam.with"); `owner` names the component whose schema it is
 * (a malformed default is reported as that plugin's bug); `anchor` is the node
 * whose position a "missing required key" error points at. Keys listed in
 * `skip` (NULL-terminated, may be NULL) are ignored. */
ps_config *ps_config_from_node(const ps_config_key *schema, const ps_ynode *map, const char *path,
                               const char *owner, const ps_ynode *anchor,
                               const char *const *skip, GError **error);

/* ---------------------------------------------------------------------- */
/* Pipeline loading from text (fuzzing, tests). `extends` is refused: the
 * text has no directory to resolve it from. */
ps_pipeline *ps_pipeline_load_string(const char *text, gssize length, const char *origin,
                                     const char *const *overrides, ps_component_lookup lookup,
                                     void *user, GError **error);

/* Validates a merged, overridden tree into a pipeline (pipeline_build.c).
 * `path` is the resolved file (or origin) recorded in the result;
 * `real_files` holds the node file names that are files on disk (a relative
 * `weights` resolves against their directory, anything else against the
 * working directory). Rewrites `weights` values in `tree` to absolute paths,
 * so that the re-emitted tree loads from anywhere. */
ps_pipeline *ps_pipeline_build(ps_ynode *tree, const char *path, GHashTable *real_files,
                               ps_component_lookup lookup, void *user, GError **error);

G_END_DECLS
