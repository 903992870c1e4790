# What the command-line test scripts share (cli_test.sh, ecosystem_test.sh), sourced after they
# set MESHLM: a work directory $WORK (removed at exit; its name from $1), pass/fail counters,
# and the two expectations.
WORK="$(mktemp -d "/tmp/meshlm_$1.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# expect_ok NAME CMD...: the command succeeds
expect_ok() {
  local name="$1"; shift
  if "$@" >"$WORK/out" 2>"$WORK/err"; then ok; else fail "$name: exit $?"; cat "$WORK/err"; tail -5 "$WORK/out"; fi
}
# expect_error NAME PATTERN CMD...: non-zero exit, one-line error on stderr matching PATTERN
expect_error() {
  local name="$1" pattern="$2"; shift 2
  if "$@" >"$WORK/out" 2>"$WORK/err"; then fail "$name: succeeded, expected an error"; return; fi
  local lines; lines=$(grep -c . "$WORK/err")
  if [ "$lines" -ne 1 ]; then fail "$name: error is $lines lines:"; cat "$WORK/err"; return; fi
  if ! grep -q -- "$pattern" "$WORK/err"; then fail "$name: error lacks '$pattern':"; cat "$WORK/err"; return; fi
  ok
}
