/* benchmark.h — what the files of the benchmark plugin share (internal). */
#pragma once

#include <pathseg/annotator.h>
#include <pathseg/dataset.h>
#include <pathseg/run.h>

#include "manifest.h"

extern const ps_config_key ps_build_config[];
void *ps_build_create(const ps_config *cfg, ps_context *ctx, GError **error);
void ps_build_destroy(void *self);
gboolean ps_build_run(void *self, ps_run *run, GError **error);

extern const ps_config_key ps_bench_config[];
void *ps_bench_create(const ps_config *cfg, ps_context *ctx, GError **error);
void ps_bench_destroy(void *self);
extern const ps_dataset_iface ps_bench_dataset;
extern const ps_manifest_tools ps_bench_manifest_tools;
const ps_manifest_row *ps_bench_row(void *self, const char *split, int64_t index);
struct ps_bpe *ps_bench_tokenizer(void *self);

/* annotator_template.c */
extern const ps_annotator_iface ps_template_annotator;
extern const ps_component_desc ps_template_annotator_desc;
