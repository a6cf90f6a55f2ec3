/* randstainna_plugin.h — what the randstainna plugin's files share: the
 * fixture capability (randstainna_fixture.c) of component augmenter.randstainna. */
#pragma once

#include <pathseg/plugin.h>

extern const ps_fixture_iface ps_randstainna_fixture_iface;
