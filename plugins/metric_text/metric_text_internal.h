/* metric_text_internal.h — what the metric_text plugin's files share.
 * Not installed. */
#pragma once

#include <pathseg/plugin.h>

#include "text_metric.h"

typedef struct ps_metric_text_self {
  ps_bleu_options bleu;
  gboolean sentence_effective_order;
} ps_metric_text_self;

extern const ps_fixture_iface ps_metric_text_fixture;
