/* ruipath_plugin.h — what the RuiPath plugin's files share: the component
 * descriptor and the capability lookup (the "fixture" capability). */
#pragma once

#include <pathseg/plugin.h>

extern const ps_component_desc rp_encoder_desc;
extern const ps_fixture_iface rp_fixture;

const void *rp_capability(const char *name);
