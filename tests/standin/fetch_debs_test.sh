#!/usr/bin/env bash
# bench/fetch_debs.sh where the registry fails: it refuses to run without apt-get, without package
# sources, or with none reachable (an unreachable proxy), and a download that fails or misses a
# package leaves the old .debs/ as they were; a complete one replaces them. apt-get is a shim on
# PATH (or the real one behind a proxy that refuses every connection), so nothing is downloaded.
# Usage: fetch_debs_test.sh REPO_ROOT
set -uo pipefail
repo=${1:?repository root}
script=$repo/bench/fetch_debs.sh
# shellcheck source=tests/standin/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
export UMLOAD_DEBS_DIR=$tmp/.debs
old() { mkdir -p "$UMLOAD_DEBS_DIR" && rm -f "$UMLOAD_DEBS_DIR"/* && echo old > "$UMLOAD_DEBS_DIR/old_1_amd64.deb"; }
old_kept() { [ "$(ls "$UMLOAD_DEBS_DIR")" = old_1_amd64.deb ] && [ "$(cat "$UMLOAD_DEBS_DIR/old_1_amd64.deb")" = old ]; }
no_temp_left() { [ -z "$(ls -d "$tmp"/.debs.new.* 2> /dev/null)" ]; }

mapfile -t packages < <(bash "$script" --list)
expect "--list names the packages without a registry" test "${#packages[@]}" -ge 20

# shim MODE: an apt-get that has sources and lists, and whose download fetches every package
# (all), every package but libcli11-dev (partial; its `update` works) or nothing (fail; its
# `update` fails, as with no network).
shim() {
  mkdir -p "$tmp/shim-$1"
  cat > "$tmp/shim-$1/apt-get" << EOF
#!/bin/bash
case \$1 in
  update) [ "$1" = partial ] || exit 100 ;;
  download)
    shift
    [ "$1" = fail ] && { echo "E: Failed to fetch" >&2; exit 100; }
    for p in "\$@"; do [ "$1" = partial ] && [ "\$p" = libcli11-dev ] && continue; echo new > "\${p}_1_amd64.deb"; done
    [ "$1" = all ] || exit 100 ;;
esac
EOF
  printf '#!/bin/bash\n[ "$1" = madison ] && case $2 in libpython3.11-dev) ;; libpython*) exit 0 ;; esac\necho "$2 | 1 | http://deb.debian.org/debian bookworm/main amd64 Packages"\n' > "$tmp/shim-$1/apt-cache"
  chmod +x "$tmp/shim-$1"/*
  echo "$tmp/shim-$1"
}

# The shims' apt sees one source, whatever this machine has.
mkdir -p "$tmp/src/parts"
echo "deb http://deb.debian.org/debian bookworm main" > "$tmp/src/sources.list"
printf 'Dir::Etc::sourcelist "%s/src/sources.list";\nDir::Etc::sourceparts "%s/src/parts";\n' "$tmp" "$tmp" > "$tmp/src.conf"
export APT_CONFIG=$tmp/src.conf

# refused_download SHIM WHAT MESSAGE: a download through SHIM fails, says MESSAGE, and leaves the
# old .debs and no temporary folder.
refused_download() {
  old
  PATH=$(shim "$1"):$PATH bash "$script" > "$tmp/$1.log" 2>&1
  expect "a $2 exits nonzero" test $? != 0
  expect "and says: $3" grep -q "$3" "$tmp/$1.log"
  expect "the old .debs survive a $2" old_kept
  expect "no temporary folder is left after a $2" no_temp_left
}
refused_download fail "download that fails" "left as it was"
refused_download partial "download missing a package" "not downloaded: libcli11-dev"

old
PATH=$(shim all):$PATH bash "$script" > "$tmp/all.log" 2>&1
expect "a complete download passes" test $? = 0
expect "and replaces the old .debs" test ! -e "$UMLOAD_DEBS_DIR/old_1_amd64.deb"
expect "with every package" test "$(ls "$UMLOAD_DEBS_DIR"/*.deb | wc -l)" = $((${#packages[@]} + 2))
expect "and the headers of the Python Debian has" test -e "$UMLOAD_DEBS_DIR/libpython3.11-dev_1_amd64.deb"
expect "saying which versions it cannot carry" grep -q "no libpython3.12-dev" "$tmp/all.log"
expect "no temporary folder is left after the swap" no_temp_left

# No apt-get at all: a PATH with only the tools the script needs before it looks for apt-get.
mkdir -p "$tmp/bare"
for t in bash dirname mkdir; do ln -sf "$(command -v $t)" "$tmp/bare/$t"; done
old
PATH=$tmp/bare "$tmp/bare/bash" "$script" > "$tmp/bare.log" 2>&1
expect "without apt-get it refuses" test $? != 0
expect "saying so" grep -q "no apt-get here" "$tmp/bare.log"
expect "the old .debs survive it" old_kept

# No package sources: the source list and parts apt-config names are empty.
mkdir -p "$tmp/nosrc/parts"
: > "$tmp/nosrc/sources.list"
printf 'Dir::Etc::sourcelist "%s/nosrc/sources.list";\nDir::Etc::sourceparts "%s/nosrc/parts";\n' "$tmp" "$tmp" > "$tmp/nosrc.conf"
old
APT_CONFIG=$tmp/nosrc.conf PATH=$(shim all):$PATH bash "$script" > "$tmp/nosrc.log" 2>&1
expect "without package sources it refuses" test $? != 0
expect "saying so" grep -q "no package sources" "$tmp/nosrc.log"
expect "the old .debs survive that" old_kept

# The real apt-get, with empty package lists and every connection refused (a proxy on a closed
# port): update fails, and the script says no registry is reachable.
if command -v apt-get > /dev/null &&
  grep -qsE '^[[:space:]]*(deb|Types:)' /etc/apt/sources.list /etc/apt/sources.list.d/*; then
  mkdir -p "$tmp/apt/lists/partial" "$tmp/apt/cache/archives/partial"
  cat > "$tmp/apt.conf" << EOF
Dir::Etc::sourcelist "/etc/apt/sources.list";
Dir::Etc::sourceparts "/etc/apt/sources.list.d";
Dir::State::Lists "$tmp/apt/lists";
Dir::Cache "$tmp/apt/cache";
Acquire::http::Proxy "http://127.0.0.1:9";
Acquire::https::Proxy "http://127.0.0.1:9";
Acquire::Retries "0";
EOF
  old
  APT_CONFIG=$tmp/apt.conf timeout 120 bash "$script" > "$tmp/proxy.log" 2>&1
  expect "behind an unreachable proxy it fails" test $? = 1
  expect "saying no registry is reachable" grep -q "no package registry reachable" "$tmp/proxy.log"
  expect "the old .debs survive it" old_kept
fi

summarize
