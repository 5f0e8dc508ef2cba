#!/usr/bin/env bash
# The GPU machine, rehearsed: runs `bash bench/gpu_check.sh --dry-run` inside a stand-in for the
# lent GPU machine, and exits with its status.
#
# The stand-in is a bare Debian 12 root (debootstrap --variant=minbase bookworm) holding only what
# the GPU machine has for a build: g++, cmake (Debian's stock 3.25.1 and its stock FindCUDAToolkit
# module), ninja-build, python3, make and git. This machine's CUDA toolkit is bind-mounted read-only
# at /usr/local/cuda; the project is a git clone of the current commit; the project's own Debian
# packages come only from the .debs/ that bench/fetch_debs.sh downloads outside it. The run has no
# network (its own network namespace), as the GPU machine has none.
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
export CACHE CUDA_DIR REPO COMMIT RUN COMMAND DEBS
rc=0
unshare --mount --net --propagation private bash -euo pipefail -c '
  R=$RUN/root
  mount -t overlay standin -o "lowerdir=$CACHE,upperdir=$RUN/upper,workdir=$RUN/work" "$R"
  mkdir -p "$R/usr/local/cuda" "$R/out"
  mount --bind "$CUDA_DIR" "$R/usr/local/cuda"
  mount -o remount,bind,ro "$R/usr/local/cuda"
  mount --bind "$RUN/out" "$R/out"
  mount -t proc proc "$R/proc"
  mount --rbind /dev "$R/dev"
  mount -t tmpfs tmpfs "$R/tmp"
  git clone -q --no-local --no-hardlinks "$REPO" "$R/root/umload"
  git -C "$R/root/umload" checkout -q "$COMMIT"
  cp -r "$DEBS" "$R/root/umload/.debs"
  chroot "$R" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 OUT=/out bash -c "cd /root/umload && $COMMAND"
' || rc=$?
echo "stand-in: '$COMMAND' exited $rc; $((SECONDS - T0)) s in all"
exit $rc
