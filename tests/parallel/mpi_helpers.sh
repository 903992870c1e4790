# Shared by the mpirun test scripts (dp_test.sh, tp_test.sh), sourced with their arguments
# (meshlm, mpirun, repo root): sets up a work directory with byte shards and a tiny config,
# counts passes and failures, trains under mpirun, compares loss curves.
MESHLM="$1"
MPIRUN="$2"
ROOT="$3"
export OMP_NUM_THREADS=1
passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
# setup NAME N_HEAD [MORE_TOML]: $WORK (removed at exit) holding 200 KB of the corpus as byte
# shards and tiny.toml: L2 (or $LAYERS), N_HEAD heads, C32, T32, global batch 8, 50 steps (or
# $STEPS), plus MORE_TOML.
setup() {
  WORK="$(mktemp -d "/tmp/meshlm_$1.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  head -c 200000 "$ROOT/data/tinyshakespeare.txt" > "$WORK/small.txt"
  "$MESHLM" prepare --tokenizer bytes --input "$WORK/small.txt" --output "$WORK/data" >/dev/null || exit 1
  printf 'n_layer = %s\nn_head = %s\nn_embd = 32\nseq_len = 32\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 5\nsteps = %s\neval_every = 0\neval_batches = 1\npeak_gflops = 100\n%s\n' \
    "${LAYERS:-2}" "$2" "${STEPS:-50}" "${3:-}" > "$WORK/tiny.toml"
}

# mpi NP args...: meshlm under mpirun (as root, oversubscribed on the 2 cores), 300 s at most
mpi() {
  local np=$1
  shift
  timeout 300 "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np "$np" "$MESHLM" "$@"
}
# run NP NAME flags...: train the tiny config on NP ranks (--dp NP unless flags say otherwise)
run() {
  local np=$1 name=$2
  shift 2
  local dp=(--dp "$np")
  [[ " $* " == *" --dp "* ]] && dp=()
  mpi "$np" train --config "$WORK/tiny.toml" --data "$WORK/data" --out "$WORK/$name" "${dp[@]}" "$@" \
    >"$WORK/$name.log" 2>&1
}
# compare A B TOL [FROM_STEP]: max relative difference of the step losses of two runs
compare() {
  /usr/bin/python3 - "$WORK/$1/metrics.jsonl" "$WORK/$2/metrics.jsonl" "$3" "${4:-0}" <<'PY'
import json, sys
def losses(p, first):
    return {d["step"]: d["loss"] for d in map(json.loads, open(p)) if "loss" in d and d["step"] > first}
a, b = losses(sys.argv[1], int(sys.argv[4])), losses(sys.argv[2], int(sys.argv[4]))
assert a.keys() == b.keys() and a, f"steps differ: {sorted(a)[:3]} vs {sorted(b)[:3]}"
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"  {len(a)} steps, max relative difference {worst:.2e} (tolerance {float(sys.argv[3]):.0e})")
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
PY
}
# check NAME A B TOL [FROM_STEP]: compare, counted
check() {
  local name=$1
  shift
  echo "$name:"
  compare "$@" && ok || fail "$name"
}
# resume_check LABEL SAVED STEP NP NAME flags...: resume run SAVED's checkpoint of STEP on NP
# ranks as run NAME (flags: the new layout); its losses must continue SAVED's (1e-6), counted
resume_check() {
  local label=$1 saved=$2 step=$3 np=$4 name=$5
  shift 5
  if mpi "$np" train --resume "$WORK/$saved/$(printf step_%06d "$step")" --out "$WORK/$name" "$@" \
    >"$WORK/$name.log" 2>&1; then
    check "$label" "$saved" "$name" 1e-6 "$step"
  else
    fail "$label: $(tail -1 "$WORK/$name.log")"
  fi
}
