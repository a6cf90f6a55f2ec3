#!/usr/bin/env bash
# gpu-pack.sh — make a CUDA build runnable on a GPU machine that has the
# NVIDIA driver and a CUDA install but not the build's host libraries (GLib,
# libyaml, libvips, OpenBLAS, Open MPI, ...). Copies, with the build's layout,
# what tools/gpu-check.sh runs (libpathseg, libpathseg-cuda and the comm
# backends, the plugins, tools/pipeline, bench/gpu_check, comm/nccl_smoke) and
# bench_train_step, and into DEST/hostlibs every shared library they load
# except the C library, the driver and the CUDA libraries the GPU machine has
# itself (cuBLAS, cuDNN, NCCL); Open MPI's components into hostlibs/openmpi
# unless --no-mpi.
# DEST/BUILD_DIR records the build's absolute path: its rpaths and plugin
# directory name it, so on the GPU machine that path must lead to the copy.
# With DEST ending in .tar.xz the copy is packed into that file.
#
#   tools/gpu-pack.sh [--no-mpi] BUILD_DIR DEST|PACK.tar.xz
#
# On the GPU machine: tools/gpu-run-packed.sh PACK.tar.xz (unpacks, makes
# BUILD_DIR lead there, runs tools/gpu-check.sh).
set -euo pipefail
mpi=1
[[ ${1:-} == --no-mpi ]] && { mpi=0; shift; }
build="$(cd "${1:?usage: gpu-pack.sh [--no-mpi] BUILD_DIR DEST|PACK.tar.xz}" && pwd)"
out="${2:?usage: gpu-pack.sh [--no-mpi] BUILD_DIR DEST|PACK.tar.xz}"
if [[ $out == *.tar.xz ]]; then
  dest=$(mktemp -d)
  trap 'rm -rf "$dest"' EXIT
else
  rm -rf "$out"
  mkdir -p "$out"
  dest="$(cd "$out" && pwd)"
fi
mkdir -p "$dest/hostlibs"
echo "$build" >"$dest/BUILD_DIR"

mapfile -t objects < <(cd "$build" && find . -maxdepth 1 -name 'libpathseg*.so*' ! -name '*emu*' -type f &&
  find core plugins -maxdepth 1 \( -name 'libpathseg*.so*' -o -name 'pathseg-*.so' \) -type f &&
  ls tools/pipeline bench/gpu_check bench/train_step/bench_train_step comm/nccl_smoke 2>/dev/null)
for f in "${objects[@]}"; do
  mkdir -p "$dest/$(dirname "$f")"
  cp -p "$build/$f" "$dest/$f"
done
# and the versioned names of the libraries (libpathseg.so.1 -> libpathseg.so.0.1.0)
(cd "$build" && find . core -maxdepth 1 -type l -name 'libpathseg*.so*') |
  while read -r link; do cp -P "$build/$link" "$dest/$link"; done

keep_out='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libgcc_s|libstdc\+\+|libcuda\.so|libcublas|libcudnn|libnccl|libnvidia|libpathseg)'
copy_deps() { # ELF files... -> their libraries into hostlibs
  LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$@" 2>/dev/null |
    awk '/=> \// { print $1, $3 }' | sort -u | while read -r name path; do
    [[ $name =~ $keep_out || -e "$dest/hostlibs/$name" ]] || cp -Ln "$path" "$dest/hostlibs/$name"
  done
}
(cd "$build" && copy_deps "${objects[@]}")

# Open MPI loads its components (MCA plugins) from its own directory; they
# travel too, and gpu-check.sh points Open MPI at them (a one-rank run starts
# as an isolated singleton, without mpirun).
if [[ $mpi -eq 1 && -e "$dest/hostlibs/libmpi.so.40" ]]; then
  libdir="$(dirname "$(readlink -f "$(ldconfig -p | awk '$1 == "libmpi.so.40" { print $NF; exit }')")")"
  mca="$libdir/openmpi/lib/openmpi3" # Debian's layout
  [[ -d "$mca" ]] || mca="$libdir/openmpi"
  if [[ -d "$mca" ]]; then
    cp -r "$mca" "$dest/hostlibs/openmpi"
    # without the network fabrics (InfiniBand, UCX, OFI, PSM) and OpenSHMEM:
    # one machine needs none of them, and their libraries are large
    fabric='(libfabric|libuc[pstm]|libpsm|libinfinipath|libibverbs|librdmacm|libefa|liboshmem)'
    for c in "$dest"/hostlibs/openmpi/*.so; do
      ldd "$c" 2>/dev/null | grep -Eq "$fabric" && rm "$c"
    done
    copy_deps "$dest"/hostlibs/openmpi/*.so
  fi
fi

if [[ $out == *.tar.xz ]]; then
  tar -C "$dest" -cf - . | xz -T0 -6 >"$out.tmp" && mv "$out.tmp" "$out"
  echo "gpu-pack: $(du -h "$out" | cut -f1) in $out ($(ls "$dest/hostlibs" | wc -l) host libraries)"
else
  echo "gpu-pack: $(du -sh "$dest" | cut -f1) in $dest ($(ls "$dest/hostlibs" | wc -l) host libraries)"
fi
