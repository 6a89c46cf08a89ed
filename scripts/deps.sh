#!/usr/bin/env bash
# Install the Debian packages distil needs, when missing. As root it runs
# apt-get; otherwise it prints the exact command and fails.
set -euo pipefail

packages=(
  gcc make pkg-config          # the build
  libhdf5-dev                  # drive logs (HDF5 1.10, serial)
  libzstd-dev                  # the in-process zstd filter (HDF5 filter 32015)
  libyaml-dev                  # recipes
  libopenmpi-dev openmpi-bin   # multi-process launch and CPU all-reduce
  libopenblas-dev libopenblas-openmp-dev   # CPU matrix products (the OpenMP build is linked)
  zlib1g-dev                   # deflate chunks, decoded by the loader's workers
  python3 python3-numpy python3-h5py python3-zstandard   # interop tests, fixtures
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "distil: missing packages: ${missing[*]}" >&2
  echo "distil: run: sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
echo "distil: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
$cmd >/dev/null
