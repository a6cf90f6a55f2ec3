/* commands.h — subcommands of `pipeline` that live in their own files:
 * segment (segment.c) and compare (compare.c). Each returns the exit status
 * (0 success, 1 failure with a message on stderr, 2 usage). */
#pragma once

#include <pathseg/registry.h>

/* pipeline segment IMAGE "QUERY" [--model RUN] [--reference IMAGE MASK]
 *   [--slide SLIDE (--level L | --mag M) --x X --y Y --w W --h H] [--out DIR]
 *   [--tokenizer FILE] [--max-new-tokens N]; `reg` has the plugins loaded. */
int ps_cmd_segment(ps_registry *reg, int argc, char **argv);
/* pipeline compare RUN... [--out FILE.md] [--csv FILE.csv] */
int ps_cmd_compare(int argc, char **argv);
