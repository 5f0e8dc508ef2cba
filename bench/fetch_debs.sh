#!/usr/bin/env bash
# Run HERE (a Debian 12 machine with network), not on the device: downloads the Debian packages
# that bench/gpu_check.sh unpacks on a lent GPU machine, which has CUDA, CMake, ninja and PyTorch
# but none of these and no network. The .debs land in .debs/ (git-ignored), which the device
# call carries:  run(command="bash bench/gpu_check.sh", carry=[".debs"]).
#
#   bash bench/fetch_debs.sh          # fill .debs/ (a complete new set replaces the old one)
#   bash bench/fetch_debs.sh --list   # the packages the GPU run needs, one a line (no network)
#
# With them goes the pinned pybind11 wheel (for an interpreter without pybind11). The download
# goes to a temporary folder beside .debs/ and replaces .debs/ only when every package came: a failed or partial download leaves the old .debs/ as it was. Where there is no
# package registry (no apt-get, no sources, or none reachable) it says so and exits 1.
#
# Environment: UMLOAD_DEBS_DIR (default .debs), UMLOAD_DEBS_PYTHON (default "3.11 3.12": the Python
# versions whose development headers to carry where Debian has them).
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

if [ "${1:-}" = --list ]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
[ $# = 0 ] || { echo "usage: bash bench/fetch_debs.sh [--list]" >&2; exit 2; }

fail() { echo "fetch_debs.sh: $*" >&2; exit 1; }
dest=${UMLOAD_DEBS_DIR:-.debs}
command -v apt-get > /dev/null ||
  fail "no apt-get here: run this on a Debian 12 machine with network; $dest/ is left as it was"
# Package sources: sources.list and sources.list.d/ as apt-config names them.
eval "$(apt-config shell SOURCE_LIST Dir::Etc::sourcelist/f SOURCE_PARTS Dir::Etc::sourceparts/d 2> /dev/null)"
if ! grep -qsE '^[[:space:]]*(deb|Types:)' "${SOURCE_LIST:-/etc/apt/sources.list}" \
  "${SOURCE_PARTS:-/etc/apt/sources.list.d/}"*.list "${SOURCE_PARTS:-/etc/apt/sources.list.d/}"*.sources; then
  fail "apt has no package sources here: run this where Debian's mirror is reachable; $dest/ is left as it was"
fi
# The package lists (madison reads only what a registry gave, not what is installed), fetched when
# they are missing: a registry that cannot be reached ends here.
if [ -z "$(apt-cache madison "${packages[0]}" 2> /dev/null)" ]; then
  apt-get update -qq > /dev/null 2>&1 && [ -n "$(apt-cache madison "${packages[0]}" 2> /dev/null)" ] ||
    fail "apt-get update failed: no package registry reachable; $dest/ is left as it was"
fi

# The development headers of each Python version Debian has: the GPU run builds the module
# against them where the interpreter has none of its own (Debian 12 has 3.11 only; the GPU
# machine's 3.12 cannot be carried from here).
for v in ${UMLOAD_DEBS_PYTHON:-3.11 3.12}; do
  if [ -n "$(apt-cache madison "libpython$v-dev" 2> /dev/null)" ]; then
    packages+=("python$v-dev" "libpython$v-dev")
  else
    echo "no libpython$v-dev in this Debian: Python $v headers are not carried"
  fi
done

mkdir -p "$(dirname "$dest")"
new=$(mktemp -d "$dest.new.XXXXXX")
trap 'rm -rf "$new"' EXIT

# pybind11 as a wheel too (pure Python with its CMake package), the version src/python/
# requirements.txt pins, for a GPU machine whose interpreter has none: from the wheelhouse the
# Makefile fills, or pip. Not required: the configure prefers the interpreter's own.
pybind11_pin=$(sed -n 's/^pybind11==//p' src/python/requirements.txt)
wheelhouse=${UMLOAD_WHEELHOUSE:-$HOME/.cache/umload/wheels}
if [ -n "$pybind11_pin" ]; then
  if ! cp "$wheelhouse/pybind11-$pybind11_pin-py3-none-any.whl" "$new/" 2> /dev/null &&
    ! python3 -m pip download -q --no-deps -d "$new" "pybind11==$pybind11_pin" > /dev/null 2>&1; then
    echo "no pybind11 $pybind11_pin wheel (not in $wheelhouse, no pip download): not carried"
  fi
fi
get() { (cd "$new" && apt-get download "${packages[@]}"); }
failed=""
if ! get > "$new/.log" 2>&1; then
  # Stale lists name versions the mirror no longer has: refresh them once.
  apt-get update -qq > /dev/null 2>&1 ||
    fail "apt-get update failed: no package registry reachable; $dest/ is left as it was"
  get > "$new/.log" 2>&1 || failed=yes
fi
missing=()
for p in "${packages[@]}"; do
  compgen -G "$new/${p}_*.deb" > /dev/null || missing+=("$p")
done
[ -z "$failed" ] || tail -5 "$new/.log" >&2
[ ${#missing[@]} = 0 ] || fail "not downloaded: ${missing[*]}; $dest/ is left as it was"
[ -z "$failed" ] || fail "apt-get download failed; $dest/ is left as it was"
rm -f "$new/.log"

# The swap: the old folder goes only once the new one is complete and in its place.
if [ -e "$dest" ]; then
  mv "$dest" "$new.old"
fi
mv "$new" "$dest"
rm -rf "$new.old"
trap - EXIT
ls -l "$dest"/*.deb | awk -v d="$dest" '{s += $5} END {printf "%d packages, %.1f MB in %s/\n", NR, s / 1e6, d}'
ls "$dest"/*.whl 2> /dev/null | sed 's#.*/#and the wheel #'
