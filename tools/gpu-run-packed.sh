#!/usr/bin/env bash
# gpu-run-packed.sh — on a GPU machine, run tools/gpu-check.sh on a build
# packed elsewhere by tools/gpu-pack.sh: unpacks PACK.tar.xz into .gpu-pack
# in this checkout, makes the build's original path (recorded in the pack,
# named by the build's rpaths and plugin directory) a link to it, and runs
# gpu-check.sh there. gpu-check.sh's variables (GPU_CHECK_PARTS, ...) apply.
#
#   tools/gpu-run-packed.sh PACK.tar.xz
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
pack="$(readlink -f "${1:?usage: gpu-run-packed.sh PACK.tar.xz}")"
dir="$src/.gpu-pack"
rm -rf "$dir"
mkdir -p "$dir"
tar -xJf "$pack" -C "$dir"
orig="$(cat "$dir/BUILD_DIR")"
if [[ ! -e "$orig" && ! -L "$orig" ]]; then
  mkdir -p "$(dirname "$orig")"
  ln -s "$dir" "$orig"
elif [[ "$(readlink -f "$orig")" != "$dir" ]]; then
  echo "gpu-run-packed: $orig exists and is not this pack; the build's rpaths and plugin" \
    "directory need that path (move it away, or pack a build made at another path)" >&2
  exit 1
fi
exec "$src/tools/gpu-check.sh" "$orig"
