#!/usr/bin/env bash
# Fails when a tracked C++ or CUDA file differs from what clang-format (the root .clang-format)
# makes of it, and lists those files. Usage: tests/format_check.sh [clang-format binary].
# With --fix, formats them in place instead.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=0
if [[ "${1:-}" == "--fix" ]]; then
  fix=1
  shift
fi
tool=${1:-$(command -v clang-format-14 || command -v clang-format || true)}
if [[ -z "$tool" ]]; then
  echo "format_check: clang-format not found (Debian package clang-format)" >&2
  exit 2
fi
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' '*.h' '*.cc')
if ((fix)); then
  "$tool" -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$tool" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "format_check: ${#bad[@]} file(s) not formatted; run tests/format_check.sh --fix:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format_check: ${#files[@]} files formatted"
