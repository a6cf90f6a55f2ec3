#!/usr/bin/env bash
# gpu-pack.sh — copy a CUDA build's programs and libraries (not its object
# files or tests) into DEST, with the same layout, so that they can be carried
# to a GPU machine that has the NVIDIA driver and a CUDA install but not the
# build's host libraries (GLib, libyaml, libvips, OpenBLAS, Open MPI, ...):
# every shared library they load, except the C library, the driver and the
# CUDA libraries the GPU machine has itself (cuBLAS, cuDNN, NCCL), goes into
# DEST/hostlibs. There, make BUILD_DIR's absolute path lead to DEST (the
# build's rpaths and its plugin directory name it) and run
# tools/gpu-check.sh BUILD_DIR: it finds hostlibs and skips the build.
#
#   tools/gpu-pack.sh BUILD_DIR DEST
set -euo pipefail
build="$(cd "${1:?usage: gpu-pack.sh BUILD_DIR DEST}" && pwd)"
dest="${2:?usage: gpu-pack.sh BUILD_DIR DEST}"
rm -rf "$dest"
mkdir -p "$dest/hostlibs"
dest="$(cd "$dest" && pwd)"
mapfile -t objects < <(cd "$build" && find . \( -name CMakeFiles -o -name tests \) -prune -o -type f \
  \( -name '*.so' -o -perm -u+x \) -print | xargs file | grep -E 'ELF .*(executable|shared object)' |
  cut -d: -f1)
for f in "${objects[@]}"; do
  mkdir -p "$dest/$(dirname "$f")"
  cp -p "$build/$f" "$dest/$f"
done
# and the versioned names of the libraries (libpathseg.so.1 -> libpathseg.so.0.1.0)
(cd "$build" && find . \( -name CMakeFiles -o -name tests \) -prune -o -type l -name '*.so*' -print) |
  while read -r link; do cp -P "$build/$link" "$dest/$link"; done
keep_out='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libgcc_s|libstdc\+\+|libcuda\.so|libcublas|libcudnn|libnccl|libnvidia|libpathseg)'
(cd "$build" && LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "${objects[@]}" 2>/dev/null) |
  awk '/=> \// { print $1, $3 }' | sort -u | while read -r name path; do
  [[ $name =~ $keep_out ]] && continue
  cp -Ln "$path" "$dest/hostlibs/$name"
done
# Open MPI loads its components (MCA plugins) from its own directory; they
# travel too, and gpu-check.sh points Open MPI at them (a one-rank run starts
# as an isolated singleton, without mpirun).
if [[ -e "$dest/hostlibs/libmpi.so.40" ]]; then
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
    ldd "$dest"/hostlibs/openmpi/*.so 2>/dev/null | awk '/=> \// { print $1, $3 }' | sort -u |
      while read -r name path; do
        [[ $name =~ $keep_out || -e "$dest/hostlibs/$name" ]] || cp -Ln "$path" "$dest/hostlibs/$name"
      done
  fi
fi
echo "gpu-pack: $(du -sh "$dest" | cut -f1) in $dest ($(ls "$dest/hostlibs" | wc -l) host libraries)"
