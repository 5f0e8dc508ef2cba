#!/usr/bin/env bash
# The GPU machine, rehearsed: runs `bash bench/gpu_check.sh --dry-run` inside a stand-in for the
# lent GPU machine, and exits with its status.
#
# The stand-in is a bare Debian 12 root (debootstrap --variant=minbase bookworm) holding only what
# the GPU machine has for a build: g++, ninja-build, python3, make and git from Debian, and as the
# GPU machine has them:
# - CMake from PyPI first on PATH (the pinned `cmake` wheel of src/python/requirements.txt, from the
#   wheelhouse ~/.cache/umload/wheels, unpacked once and mounted read-only at /opt/cmake); Debian's
#   cmake 3.25.1 stays in the root behind it;
# - `python3` a venv (/opt/venv) WITHOUT development headers and WITH PyPI's torch, transformers
#   and pybind11: made in the root with `python3 -m venv --without-pip`, its site-packages given
#   build/venv's (the venv the Makefile makes; UMLOAD_STANDIN_VENV) through a .pth file and a
#   read-only bind mount at /opt/base-site. Both are Debian 12's Python 3.11, so the wheels fit.
# This machine's CUDA toolkit is bind-mounted read-only at /usr/local/cuda; the project is a git
# clone of the current commit; the project's own Debian packages (and the Python headers the
# module builds against there) come only from the .debs/ that bench/fetch_debs.sh downloads
# outside it. The run has no network (its own network namespace), as the GPU machine has none.
#
# The root is built once and cached outside the clone (UMLOAD_STANDIN_CACHE, default
# /var/cache/umload/standin); every run sees it through an overlay whose upper layer is thrown away,
# so the cached root stays as debootstrap and apt left it. Needs root (debootstrap, mount, chroot).
#
#   bash tests/standin/run.sh            # or: make gpu-dry-run
#   UMLOAD_STANDIN_REBUILD=1 ...         # rebuild the cached root first
#   UMLOAD_STANDIN_COMMAND='...' ...     # run another command in the clone instead
#   UMLOAD_STANDIN_COMMIT=REV ...        # clone that commit instead of HEAD
#   UMLOAD_STANDIN_DEBS=DIR ...          # the .debs from DIR instead of .debs/
#   UMLOAD_STANDIN_VENV=DIR ...          # the venv whose site-packages python3 sees (build/venv)
#   UMLOAD_STANDIN_OUT=DIR ...           # where the run's $OUT is kept (/tmp/umload-standin-out)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CACHE=${UMLOAD_STANDIN_CACHE:-/var/cache/umload/standin}
MIRROR=${UMLOAD_STANDIN_MIRROR:-http://deb.debian.org/debian}
CUDA_DIR=$(readlink -f "${UMLOAD_STANDIN_CUDA:-/usr/local/cuda}")
PACKAGES=(g++ cmake ninja-build python3 make git)
T0=$SECONDS

fail() { echo "stand-in: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, mount namespaces, chroot)"
[ -x "$CUDA_DIR/bin/nvcc" ] || fail "no CUDA toolkit at $CUDA_DIR (set UMLOAD_STANDIN_CUDA)"
if ! command -v debootstrap > /dev/null; then
  apt-get install -y -qq --no-install-recommends debootstrap > /dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap > /dev/null; } ||
    fail "debootstrap is missing and could not be installed"
fi

# The root, built once. A half-built root never becomes the cache: it is built beside it and moved.
if [ -n "${UMLOAD_STANDIN_REBUILD:-}" ]; then rm -rf "$CACHE"; fi
if [ ! -e "$CACHE/.umload-standin-ready" ]; then
  echo "stand-in: building the Debian 12 root in $CACHE (once per machine)"
  rm -rf "$CACHE.new"
  mkdir -p "$(dirname "$CACHE")"
  debootstrap --variant=minbase bookworm "$CACHE.new" "$MIRROR" > "$CACHE.new.log" 2>&1 ||
    { tail -20 "$CACHE.new.log"; fail "debootstrap failed (log: $CACHE.new.log)"; }
  cp /etc/resolv.conf "$CACHE.new/etc/resolv.conf"
  chroot "$CACHE.new" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${PACKAGES[*]} && apt-get clean" \
    >> "$CACHE.new.log" 2>&1 || { tail -20 "$CACHE.new.log"; fail "apt-get install in the root failed"; }
  rm -rf "$CACHE.new/var/lib/apt/lists/"*
  chroot "$CACHE.new" dpkg-query -W -f '${Package} ${Version}\n' cmake g++ ninja-build python3 > "$CACHE.new/.umload-standin-ready"
  rm -rf "$CACHE"
  mv "$CACHE.new" "$CACHE"
  echo "stand-in: root ready in $((SECONDS - T0)) s"
fi
echo "stand-in: root $CACHE ($(tr '\n' ' ' < "$CACHE/.umload-standin-ready"))"

# The project's packages come from .debs/ only.
DEBS=${UMLOAD_STANDIN_DEBS:-$REPO/.debs}
[ -n "$(ls "$DEBS"/*.deb 2>/dev/null)" ] || fail "no .debs in $DEBS: run bash bench/fetch_debs.sh first"

# CMake from PyPI: the pinned wheel, unpacked once beside the cached root (a wheel is a zip; its
# cmake/data folder is the CMake installation, bin/ and share/cmake-X.Y/).
WHEELHOUSE=${UMLOAD_STANDIN_WHEELS:-$HOME/.cache/umload/wheels}
CMAKE_PIN=$(sed -n 's/^cmake==//p' "$REPO/src/python/requirements.txt")
[ -n "$CMAKE_PIN" ] || fail "no cmake== pin in src/python/requirements.txt"
CMAKE_DIR=$(dirname "$CACHE")/pypi-cmake-$CMAKE_PIN
if [ ! -x "$CMAKE_DIR/bin/cmake" ]; then
  wheel=$(ls "$WHEELHOUSE"/cmake-"$CMAKE_PIN"-*manylinux*x86_64*.whl 2> /dev/null | head -1)
  [ -n "$wheel" ] || fail "no cmake $CMAKE_PIN wheel in $WHEELHOUSE (make venv downloads it)"
  rm -rf "$CMAKE_DIR.new" && mkdir -p "$CMAKE_DIR.new"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$CMAKE_DIR.new/wheel"
  mv "$CMAKE_DIR.new/wheel/cmake/data"/* "$CMAKE_DIR.new/" && rm -rf "$CMAKE_DIR.new/wheel"
  chmod +x "$CMAKE_DIR.new/bin"/*
  rm -rf "$CMAKE_DIR" && mv "$CMAKE_DIR.new" "$CMAKE_DIR"
fi
echo "stand-in: $("$CMAKE_DIR/bin/cmake" --version | head -1) from PyPI first on PATH"

# The venv's packages: build/venv's site-packages, for the same Python as the root's.
VENV=${UMLOAD_STANDIN_VENV:-$REPO/build/venv}
[ -x "$VENV/bin/python" ] || fail "no venv at $VENV (make venv; or set UMLOAD_STANDIN_VENV)"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
VENV_PY=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ROOT_PY=$(sed -n 's/^python3 \([0-9]*\.[0-9]*\).*/\1/p' "$CACHE/.umload-standin-ready")
[ "$VENV_PY" = "$ROOT_PY" ] || fail "the venv at $VENV is Python $VENV_PY, the root's python3 is $ROOT_PY"

COMMIT=$(git -C "$REPO" rev-parse "${UMLOAD_STANDIN_COMMIT:-HEAD}")
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]; then
  echo "stand-in: note: uncommitted changes are not in the clone; it holds $COMMIT"
fi

RUN=$(mktemp -d /tmp/umload-standin.XXXXXX)
KEEP=${UMLOAD_STANDIN_OUT:-/tmp/umload-standin-out}
trap 'rm -rf "$KEEP" && cp -r "$RUN/out" "$KEEP"; rm -rf "$RUN"' EXIT
mkdir -p "$RUN"/{upper,work,root,out}

# Everything below runs in a private mount namespace (the mounts vanish with it) and its own
# network namespace (no network, as on the GPU machine). The log and the table stay in
# $UMLOAD_STANDIN_OUT (default /tmp/umload-standin-out). GPU_CHECK_DRY_RUN=1 is what older
# versions of the script read instead of --dry-run.
COMMAND=${UMLOAD_STANDIN_COMMAND:-GPU_CHECK_DRY_RUN=1 bash bench/gpu_check.sh --dry-run}
export CACHE CUDA_DIR REPO COMMIT RUN COMMAND DEBS CMAKE_DIR SITE
rc=0
unshare --mount --net --propagation private bash -euo pipefail -c '
  R=$RUN/root
  mount -t overlay standin -o "lowerdir=$CACHE,upperdir=$RUN/upper,workdir=$RUN/work" "$R"
  mkdir -p "$R/usr/local/cuda" "$R/out" "$R/opt/cmake" "$R/opt/base-site"
  mount --bind "$CUDA_DIR" "$R/usr/local/cuda"
  mount -o remount,bind,ro "$R/usr/local/cuda"
  mount --bind "$CMAKE_DIR" "$R/opt/cmake"
  mount -o remount,bind,ro "$R/opt/cmake"
  mount --bind "$SITE" "$R/opt/base-site"
  mount -o remount,bind,ro "$R/opt/base-site"
  mount --bind "$RUN/out" "$R/out"
  mount -t proc proc "$R/proc"
  mount --rbind /dev "$R/dev"
  mount -t tmpfs tmpfs "$R/tmp"
  git clone -q --no-local --no-hardlinks "$REPO" "$R/root/umload"
  git -C "$R/root/umload" checkout -q "$COMMIT"
  cp -r "$DEBS" "$R/root/umload/.debs"
  # python3: a venv without headers, its packages from the mounted site-packages (addsitedir also
  # reads the .pth files there).
  chroot "$R" /usr/bin/python3 -m venv --without-pip /opt/venv
  site=$(chroot "$R" /opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])")
  echo "import site; site.addsitedir(\"/opt/base-site\")" > "$R$site/umload-base-site.pth"
  chroot "$R" /usr/bin/env -i HOME=/root PATH=/opt/cmake/bin:/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 OUT=/out bash -c "cd /root/umload && $COMMAND"
' || rc=$?
echo "stand-in: '$COMMAND' exited $rc; $((SECONDS - T0)) s in all"
exit $rc
