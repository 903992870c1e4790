#!/usr/bin/env bash
# Reliability edges (issue 14, items 2, 3 and 5): each case failed on the binary before it.
#   metrics: a full disk (RLIMIT_FSIZE; a 1 MiB tmpfs where mount is allowed) is a non-zero exit
#            naming the file; the resume-time rewrite of metrics.jsonl is atomic
#   resume:  writes only into the checkpoint's own run directory (or --out), never into one a
#            copied checkpoint records; data matched by manifest checksums (moved data resumes,
#            other data is refused, a scrambled shard is refused); `info` verifies what resume
#            reads; COMPLETE covers every file; an unknown format version is refused by name
#   edges:   --threads 100000, a model that cannot fit, a directory as --config, bad fields in
#            trainer.json / COMPLETE, --vocab-size larger than the data's, --peak-gflops -5,
#            SIGHUP, --out ''
# Usage: edges_test.sh path/to/meshlm repo_root
set -uo pipefail
MESHLM="$(realpath "$1")"
ROOT="$(realpath "$2")"
WORK="$(mktemp -d /tmp/meshlm_edges.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
expect_error() {  # NAME PATTERN CMD...: non-zero exit (not a signal), one-line error matching PATTERN
  local name="$1" pattern="$2"; shift 2
  "$@" >"$WORK/out" 2>"$WORK/err"; local rc=$?
  if [ $rc -eq 0 ]; then fail "$name: succeeded, expected an error"; return; fi
  if [ $rc -gt 128 ]; then fail "$name: killed by signal $((rc - 128))"; return; fi
  if [ "$(grep -c . "$WORK/err")" -ne 1 ]; then fail "$name: error is not one line:"; cat "$WORK/err"; return; fi
  grep -q -- "$pattern" "$WORK/err" && ok || { fail "$name: error lacks '$pattern':"; cat "$WORK/err"; }
}
# rewrite_complete DIR: recompute COMPLETE's sizes and SHA-256 for the files it lists
rewrite_complete() {
  /usr/bin/python3 - "$1" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
c = json.load(open(os.path.join(d, "COMPLETE")))
for name, e in c["files"].items():
    data = open(os.path.join(d, name), "rb").read()
    e["bytes"] = len(data)
    e["sha256"] = hashlib.sha256(data).hexdigest()
json.dump(c, open(os.path.join(d, "COMPLETE"), "w"), indent=2)
PY
}

cd "$WORK"
head -c 60000 "$ROOT/data/tinyshakespeare.txt" > small.txt
"$MESHLM" prepare --tokenizer bytes --input small.txt --output data >/dev/null
head -c 60000 <(tail -c 70000 "$ROOT/data/tinyshakespeare.txt") > other.txt
"$MESHLM" prepare --tokenizer bytes --input other.txt --output otherdata >/dev/null
cat > tiny.toml <<TOML
n_layer = 1
n_head = 2
n_embd = 32
seq_len = 32
batch_size = 4
eval_batches = 1
eval_every = 100
peak_gflops = 100.0
TOML
T=(--config tiny.toml)
"$MESHLM" train "${T[@]}" --data data --out run --steps 6 --save-every 3 >/dev/null || fail "the base run"

# ---- 2: metrics ----
# a full disk with --checkpoints 0: the run must fail naming metrics.jsonl (it said "done")
(ulimit -f 2; "$MESHLM" train "${T[@]}" --data data --out full --steps 200 --checkpoints 0 >"$WORK/full.log" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "metrics.jsonl: write failed" full.log && ok || { fail "full disk: exit $rc"; tail -2 full.log; }
# a real full filesystem where one can be made (a 1 MiB tmpfs in a private mount namespace):
# the run fails naming the file; no partial checkpoint directory is left; the saved ones verify
if unshare -m true 2>/dev/null; then
  unshare -m bash -c "mkdir -p '$WORK/small_fs' && mount -t tmpfs -o size=1m tmpfs '$WORK/small_fs' || exit 99
    '$MESHLM' train --config tiny.toml --data data --out '$WORK/small_fs/run' --steps 400 --save-every 20 > '$WORK/enospc.log' 2>&1
    echo \$? > '$WORK/enospc.rc'
    ls -d '$WORK'/small_fs/run/step_*.tmp > '$WORK/enospc.tmp' 2>/dev/null
    for d in '$WORK'/small_fs/run/step_??????; do '$MESHLM' info --checkpoint \$d > /dev/null 2>&1 || echo \$d; done > '$WORK/enospc.bad'
    ls -d '$WORK'/small_fs/run/step_?????? | wc -l > '$WORK/enospc.saved'"
  rc=$(cat enospc.rc 2>/dev/null)
  [ "$rc" = 1 ] && grep -q "No space left on device" enospc.log && ok || { fail "ENOSPC: exit $rc"; tail -2 enospc.log; }
  [ ! -s enospc.tmp ] && [ ! -s enospc.bad ] && [ "$(cat enospc.saved)" -ge 1 ] && ok ||
    fail "ENOSPC: partial directories $(cat enospc.tmp) / unverifiable $(cat enospc.bad) / $(cat enospc.saved) saved"
else
  echo "skipped: the ENOSPC case (no mount namespace here); the RLIMIT_FSIZE case covers it"
fi
# the resume-time rewrite (more than the 1 KiB limit) fails without touching metrics.jsonl
# (it was truncated, then cut at the limit)
cp -r run run_rw
before=$(wc -c < run_rw/metrics.jsonl)
[ "$before" -gt 1024 ] || fail "the rewrite case needs more than 1 KiB of metrics"
(ulimit -f 1; "$MESHLM" train --resume run_rw/step_000006 --out run_rw --steps 9 >"$WORK/rw.log" 2>&1); rc=$?
[ $rc -ne 0 ] && [ "$(wc -c < run_rw/metrics.jsonl)" -eq "$before" ] && ok || fail "metrics rewrite on a full disk: exit $rc, $(wc -c < run_rw/metrics.jsonl) of $before bytes kept"

# ---- 3: resume ----
# a backup copy resumes into itself, never into the directory its trainer.json names
cp -r run backup
sum_before=$(cat run/metrics.jsonl run/step_000006/COMPLETE | sha256sum)
"$MESHLM" train --resume backup/step_000003 --steps 9 >/dev/null 2>&1 || fail "resume the backup"
[ "$(cat run/metrics.jsonl run/step_000006/COMPLETE | sha256sum)" = "$sum_before" ] && [ ! -d run/step_000009 ] && [ -d backup/step_000009 ] &&
  ok || fail "resuming a backup copy wrote into the original run"
# from another working directory the recorded data is used, not ./data there
mkdir -p elsewhere && cp -r otherdata elsewhere/data
(cd elsewhere && "$MESHLM" train --resume ../run/step_000003 --out ../cwd_run --steps 4 > ../cwd.log 2>&1) || fail "resume from elsewhere"
grep -q "data    $WORK/data " cwd.log && ok || { fail "resume from another directory trains on the recorded data"; grep "^data" cwd.log; }
# other data is refused unless allowed; moved data resumes with --data
expect_error "other data" "not the data" "$MESHLM" train --resume run/step_000003 --data otherdata --out od --steps 4
"$MESHLM" train --resume run/step_000003 --data otherdata --out od2 --steps 4 --allow-data-change 1 >/dev/null 2>&1 && ok || fail "--allow-data-change"
mv data moved
expect_error "data not here" "pass --data" "$MESHLM" train --resume run/step_000003 --out mv1 --steps 4
"$MESHLM" train --resume run/step_000003 --data moved --out mv2 --steps 4 >/dev/null 2>&1 && ok || fail "moved data resumes with --data"
mv moved data
# a scrambled shard (same size) is refused naming it
cp -r data scrambled
printf '\x07' | dd of=scrambled/train_000000.bin bs=1 seek=5000 conv=notrunc status=none
expect_error "scrambled shard" "train_000000.bin: checksum differs" "$MESHLM" train "${T[@]}" --data scrambled --out sc --steps 1
# info verifies what resume reads: a config that does not match the weights, checksums fixed
cp -r run/step_000006 shape
sed -i 's/"n_embd": 32/"n_embd": 48/' shape/trainer.json && rewrite_complete shape
expect_error "info: tensor shapes" "expected F32" "$MESHLM" info --checkpoint shape
# bad fields in trainer.json / COMPLETE name the file (they were raw JSON-library errors)
cp -r run/step_000006 field
sed -i 's/"step": 6/"step": "six"/' field/trainer.json && rewrite_complete field
expect_error "trainer.json field" "trainer.json: \"step\" must be" "$MESHLM" info --checkpoint field
cp -r run/step_000006 marker
# (the first file COMPLETE lists, by name: config.json)
sed -i '0,/"bytes": [0-9]*/s//"bytes": "many"/' marker/COMPLETE
expect_error "COMPLETE field" 'COMPLETE (config.json): "bytes" must be' "$MESHLM" info --checkpoint marker
# COMPLETE covers every file: an unlisted (then corrupted) optimizer file is refused
cp -r run/step_000006 cover
/usr/bin/python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); del c["files"]["optimizer.safetensors"]; json.dump(c,open(p,"w"))' cover/COMPLETE
printf '\x01' | dd of=cover/optimizer.safetensors bs=1 seek=3000 conv=notrunc status=none
expect_error "COMPLETE coverage" "not covered by COMPLETE" "$MESHLM" train --resume cover --out cv --steps 8
# a format from a newer meshlm is refused by name
cp -r run/step_000006 future
sed -i 's/"format_version": 2/"format_version": 99/' future/COMPLETE
expect_error "format version" "checkpoint format 99" "$MESHLM" info --checkpoint future
# checksums a standard tool checks
(cd run/step_000006 && /usr/bin/python3 -c '
import json; c = json.load(open("COMPLETE"))
print("\n".join(e["sha256"] + "  " + n for n, e in c["files"].items()))' | sha256sum --check --quiet) && ok || fail "sha256sum checks COMPLETE"

# time-based saves: a checkpoint whenever 0.12 s passed since the last (besides the end's)
"$MESHLM" train "${T[@]}" --data data --out timed --steps 2000 --save-every-minutes 0.002 > timed.log 2>&1
[ "$(grep -c "(save_every_minutes, " timed.log)" -ge 1 ] && ok || { fail "--save-every-minutes saved nothing"; tail -2 timed.log; }

# ---- 5: edges ----
expect_error "threads" "more than 8 x" "$MESHLM" train "${T[@]}" --data data --out e1 --threads 100000
start=$(date +%s%N)
expect_error "cannot fit" "does not fit: rank 0 needs at least" "$MESHLM" train --data data --out e2 --n-layer 48 --n-head 64 --n-embd 8192 --steps 1
[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 3000 ] && ok || fail "the memory error took more than 3 s"
expect_error "config dir" "not a file" "$MESHLM" train --config "$WORK" --data data --out e3
expect_error "vocab larger than data" "larger than the data's" "$MESHLM" train "${T[@]}" --data data --out e4 --vocab-size 50257
expect_error "peak gflops" "peak_gflops must be >= 0" "$MESHLM" train "${T[@]}" --data data --out e5 --peak-gflops -5
expect_error "empty out" "must not be empty" "$MESHLM" train "${T[@]}" --data data --out ''
"$MESHLM" train "${T[@]}" --data data --out hup --steps 1000000 --eval-batches 0 > hup.log 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '"loss"' hup/metrics.jsonl 2>/dev/null && break; sleep 0.05; done
kill -HUP $pid; wait $pid; rc=$?
[ $rc -eq 1 ] && grep -q "interrupted (SIGHUP)" hup.log && ls hup/step_*/COMPLETE >/dev/null 2>&1 && ok || fail "SIGHUP saves a checkpoint (exit $rc)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
