#!/usr/bin/env bash
# Run HERE (a Debian 12 machine with network), not on the device: downloads the Debian packages
# that bench/gpu_check.sh unpacks on a lent GPU machine, which has CUDA, CMake, ninja and PyTorch
# but none of these and no network. The .debs land in .debs/ (git-ignored), which the device
# call carries:  run(command="bash bench/gpu_check.sh", carry=[".debs"]).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the configure needs (find_package / pkg_check_modules / find_path in the CMakeLists), their
# library packages, pkg-config itself (the GPU image may lack it), and hwloc-dev's own
# dependencies. No pybind11: the Python module is built with the GPU machine's own interpreter and
# its pybind11 (`python3 -m pybind11 --cmakedir`); Debian's serves Debian's Python only.
# tests/standin/run.sh builds from exactly these in a bare Debian 12 (make gpu-dry-run).
packages=(
  libhwloc-dev libhwloc15 libnuma-dev libnuma1 libltdl-dev libltdl7
  nlohmann-json3-dev libcli11-dev libdlpack-dev
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev libbenchmark1debian
  liburing-dev liburing2
  libssl-dev libssl3
  pkgconf pkgconf-bin libpkgconf3
)

mkdir -p .debs
cd .debs
rm -f ./*.deb
apt-get download "${packages[@]}" 2> /dev/null || { apt-get update -qq && apt-get download "${packages[@]}"; }
ls -l ./*.deb | awk '{s += $5} END {printf "%d packages, %.1f MB in .debs/\n", NR, s / 1e6}'
