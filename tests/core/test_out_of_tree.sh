#!/usr/bin/env bash
# test_out_of_tree.sh — install pathseg into a temporary prefix, build the
# example plugin from its one source file with nothing but pkg-config, drop
# it into the installed plugin directory and run the installed `pipeline`
# with it. Also checks the CMake package config.
# Usage: test_out_of_tree.sh BUILD_DIR SOURCE_DIR
set -eu
build="$1"
src="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"

cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
plugins=$(realpath -m "$(pkg-config --variable=pluginsdir pathseg)")
[[ "$plugins" == "$prefix"/* ]] || { echo "pluginsdir $plugins is outside $prefix"; exit 1; }

# The third-party author's build line: one file, pkg-config, nothing else.
mkdir -p "$tmp/author"
sed 's/"example\./"thirdparty./; s/\.name = "example"/.name = "thirdparty"/' \
  "$src/plugins/example/example.c" > "$tmp/author/thirdparty.c"
cc -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -shared -fPIC -fvisibility=hidden \
  "$tmp/author/thirdparty.c" -o "$tmp/author/pathseg-thirdparty.so" \
  $(pkg-config --cflags --libs pathseg) -lm
cp "$tmp/author/pathseg-thirdparty.so" "$plugins/"

# The installed command, with the build tree out of the way.
export LD_LIBRARY_PATH="$prefix/lib:$prefix/lib/x86_64-linux-gnu"
unset PATHSEG_PLUGIN_PATH
out=$("$prefix/bin/pipeline" plugins 2>&1)
echo "$out" | grep -q "thirdparty.linear" || { echo "plugin not listed: $out"; exit 1; }
echo "$out" | grep -q "$plugins/pathseg-thirdparty.so" || { echo "file not shown: $out"; exit 1; }
"$prefix/bin/pipeline" describe thirdparty.linear | grep -q "out_features"

# A pipeline that uses the third-party components, run by the installed command.
sed 's/example\./thirdparty./g' "$src/pipelines/example.yaml" > "$tmp/thirdparty.yaml"
(cd "$tmp" && "$prefix/bin/pipeline" run thirdparty.yaml --quiet --set stages.fit.steps=10 \
   --set run_dir="$tmp/runs") | grep -q "run finished"

# The installed pipelines resolve by bare name from any directory.
(cd "$tmp" && "$prefix/bin/pipeline" validate example.yaml) | grep -q valid

# find_package(pathseg) from a CMake project.
mkdir -p "$tmp/cmake-user"
cat > "$tmp/cmake-user/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(user C)
find_package(pathseg 0.1 REQUIRED)
add_library(pathseg-cmakeuser MODULE thirdparty.c)
target_link_libraries(pathseg-cmakeuser PRIVATE pathseg::pathseg m)
set_target_properties(pathseg-cmakeuser PROPERTIES PREFIX "")
message(STATUS "pluginsdir=${PATHSEG_PLUGINSDIR}")
CM
sed 's/"thirdparty\./"cmakeuser./; s/\.name = "thirdparty"/.name = "cmakeuser"/' \
  "$tmp/author/thirdparty.c" > "$tmp/cmake-user/thirdparty.c"
cmake -S "$tmp/cmake-user" -B "$tmp/cmake-user/build" -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/cmake.log"
grep -q "pluginsdir=$plugins" "$tmp/cmake.log" || { cat "$tmp/cmake.log"; exit 1; }
cmake --build "$tmp/cmake-user/build" > /dev/null
"$prefix/bin/pipeline" --plugin-path "$tmp/cmake-user/build" describe cmakeuser.mse | grep -q "pred"
echo "1 passed, 0 failed"
