/* tiny_split.h — see tiny_split.c. */
#pragma once

/* Writes TMP/tiny/{img,mask}{0,1,2}.png, manifest.jsonl, pred/ and eval.yaml
 * (run it from TMP: `pipeline run tiny/eval.yaml`). Row 0 (source alpha):
 * pred 6 px, gt 8 px, overlap 4; row 1 (alpha): no prediction, empty gt;
 * row 2 (beta): pred 8, gt 16, overlap 8. Answers equal the references. */
void make_tiny_split(const char *tmp);
