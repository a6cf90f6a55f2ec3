/* slide_plugin.h — what the slide plugin's files share: the fixture
 * capability (slide_fixture.c) of component dataset.slide. */
#pragma once

#include <pathseg/plugin.h>

extern const ps_fixture_iface ps_slide_fixture_iface;
