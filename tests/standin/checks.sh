# The harness the stand-in's ctest scripts (fetch_debs_test.sh, gpu_check_script_test.sh) source:
# a scratch folder $tmp, removed at exit; `expect WHAT COMMAND...`, which counts and prints one
# check; and `summarize`, their last command, which prints the counts and fails if a check did.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0
expect() {  # expect WHAT COMMAND...: the command succeeds
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; passes=$((passes + 1)); else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
summarize() {
  echo "$passes checks passed, $failures failed"
  [ "$failures" = 0 ]
}
