/* fake_components.c — static component descriptors with schemas and ports,
 * standing in for plugins in the pipeline loader tests. They have no vtable:
 * the loader only reads names, kinds, schemas and ports. */
#include "fake_components.h"

#include <string.h>

static const ps_config_key encoder_schema[] = {
    {"depth", PS_TYPE_INT, "4", 1, 64, NULL, "transformer blocks"},
    {"width", PS_TYPE_INT, "64", 8, 8192, NULL, "channels"},
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|base|large", "size preset"},
    {"dropout", PS_TYPE_FLOAT, "0.0", 0, 1, NULL, "dropout probability"},
    {"use_cls", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL, "prepend a class token"},
    {"lora.r", PS_TYPE_INT, "0", 0, 256, NULL, "LoRA rank (0 = off)"},
    {"lora.alpha", PS_TYPE_FLOAT, "16", PS_NO_RANGE, NULL, "LoRA scale numerator"},
    {"lora.targets", PS_TYPE_STRING_LIST, "[q, v]", PS_NO_RANGE, NULL, "projections with LoRA"},
    {"scales", PS_TYPE_FLOAT_LIST, "[1.0]", 0, 10, NULL, "per-level scales"},
    {"heads", PS_TYPE_INT_LIST, "~", 1, 64, NULL, "optional per-block heads"},
    {"checkpoint_name", PS_TYPE_STRING, "~", PS_NO_RANGE, NULL, "optional name"},
    {0},
};
static const ps_port_desc encoder_inputs[] = {
    {"image", "[B, 3, H, W] f32", FALSE},
    {"mask", "[B, 1, H, W] f32", TRUE},
    {0},
};
static const ps_port_desc encoder_outputs[] = {
    {"embeddings", "[B, C, h, w] f32", FALSE},
    {"tokens", "[B, T, C] f32", FALSE},
    {0},
};

static const ps_config_key decoder_schema[] = {
    {"hidden", PS_TYPE_INT, NULL, 1, 4096, NULL, "hidden width"},
    {0},
};
static const ps_port_desc decoder_inputs[] = {
    {"emb", "[B, C, h, w] f32", FALSE},
    {"prompt", "[B, P, C] f32", TRUE},
    {0},
};
static const ps_port_desc decoder_outputs[] = {
    {"mask", "[B, 1, H, W] f32", FALSE},
    {"logits", "[B, 1, H, W] f32", FALSE},
    {0},
};

static const ps_config_key augment_schema[] = {
    {"strength", PS_TYPE_FLOAT, "0.5", 0, 1, NULL, "augmentation strength"},
    {0},
};
static const ps_port_desc image_port[] = {
    {"image", "[B, 3, H, W] f32", FALSE},
    {0},
};

static const ps_config_key badschema_schema[] = {
    {"x", PS_TYPE_INT, "[oops", PS_NO_RANGE, NULL, "a default that does not parse"},
    {0},
};

static const ps_config_key stage_schema[] = {
    {"steps", PS_TYPE_INT, "10", 1, 1e9, NULL, "optimizer steps"},
    {"lr", PS_TYPE_FLOAT, "1e-4", 0, 1, NULL, "learning rate"},
    {"advantage", PS_TYPE_ENUM, "gae", PS_NO_RANGE, "gae|group", "advantage estimator"},
    {"train", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL, "components that train"},
    {0},
};
static const ps_port_desc no_ports[] = {{0}};

#define DESC(kind_, name_, schema_, in_, out_)                                                   \
  {sizeof(ps_component_desc), kind_, name_, "fake", schema_, in_, out_, NULL, NULL}

const ps_component_desc fake_encoder = DESC(PS_KIND_ENCODER, "encoder.fake", encoder_schema,
                                            encoder_inputs, encoder_outputs);
const ps_component_desc fake_decoder = DESC(PS_KIND_DECODER, "decoder.fake", decoder_schema,
                                            decoder_inputs, decoder_outputs);
const ps_component_desc fake_augment = DESC(PS_KIND_AUGMENTER, "augment.stain", augment_schema,
                                            image_port, image_port);
const ps_component_desc fake_badschema = DESC(PS_KIND_ENCODER, "encoder.badschema", badschema_schema,
                                              no_ports, no_ports);
const ps_component_desc fake_stage = DESC(PS_KIND_STAGE, "stage.fake", stage_schema, no_ports, no_ports);

const ps_component_desc *fake_lookup(const char *name, void *user) {
  static const ps_component_desc *const all[] = {&fake_encoder, &fake_decoder, &fake_augment,
                                                 &fake_badschema, &fake_stage};
  int *calls = user;
  if (calls)
    (*calls)++;
  for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
    if (strcmp(all[i]->name, name) == 0)
      return all[i];
  return NULL;
}
