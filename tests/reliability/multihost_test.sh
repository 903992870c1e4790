#!/usr/bin/env bash
# Several hosts, for real: two network namespaces on this machine (hosts A and B) joined to a
# bridge by veth links, MPI restricted to its TCP transport on that subnet, the remote launch
# done by an agent script that enters the host's namespace (mpirun's rsh agent). Checks:
#   - dp 2 (one rank per host) and dp 2 x tp 2 (two per host) equal the one-rank run
#   - a short outage (B's link down 2 s, then up) is ridden out: the run completes
#   - heavy loss (30% of B's packets dropped, nftables; long form only): measured
#   - the link taken down for good: the job ends through the watchdog (or MPI's own error),
#     the time to detect is printed, and the last checkpoint resumes on one host
# Needs root and `ip netns` (skipped with the reason otherwise). Usage:
#   multihost_test.sh meshlm mpirun repo_root [short|long]   (long adds the loss case)
set -uo pipefail
MESHLM="$(realpath "$1")"
MPIRUN="$2"
ROOT="$(realpath "$3")"
MODE="${4:-short}"
skip() { echo "skipped: $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v ip >/dev/null || skip "no ip (iproute2)"
TAG="ml$$"
NET="10.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))"
BR="${TAG}br"
ip netns add "${TAG}a" 2>/dev/null || skip "cannot create network namespaces here"
WORK="$(mktemp -d /tmp/meshlm_multihost.XXXXXX)"
cleanup() {
  pkill -KILL -f "$WORK" 2>/dev/null
  for h in a b l; do ip netns del "${TAG}$h" 2>/dev/null; ip link del "${TAG}h$h" 2>/dev/null; done
  ip link del "$BR" 2>/dev/null
  [ -n "${KEEP:-}" ] && cp -r "$WORK" /tmp/multihost_kept; rm -rf "$WORK"
}
trap cleanup EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
export OMP_NUM_THREADS=1

# ---- the hosts: A = $NET.1, B = $NET.2, and the launcher L = $NET.3 (mpirun runs there, so
# that its TCP settings are its own: a lost peer's unacknowledged data gives up after ~25 s
# (tcp_retries2 = 6 in these namespaces only: a 2 s outage is survived), not after the
# default quarter of an hour) ----
ip netns add "${TAG}b"
ip netns add "${TAG}l"
ip link add "$BR" type bridge && ip link set "$BR" up || skip "cannot make a bridge"
i=1
for h in a b l; do
  ip link add "${TAG}h$h" type veth peer name "${TAG}n$h"
  ip link set "${TAG}n$h" netns "${TAG}$h"
  ip link set "${TAG}h$h" master "$BR" up
  ip netns exec "${TAG}$h" ip addr add "$NET.$i/24" dev "${TAG}n$h"
  ip netns exec "${TAG}$h" ip link set "${TAG}n$h" up
  ip netns exec "${TAG}$h" ip link set lo up
  ip netns exec "${TAG}$h" sysctl -q -w net.ipv4.tcp_retries2=6 2>/dev/null
  i=$((i + 1))
done
# mpirun's rsh agent: "agent HOST COMMAND..." runs COMMAND in that host's namespace, as ssh would
cat > "$WORK/agent.sh" <<AGENT
#!/bin/sh
host="\$1"; shift
case "\$host" in
  $NET.1) ns=${TAG}a ;;
  $NET.2) ns=${TAG}b ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
AGENT
chmod +x "$WORK/agent.sh"
# reachability (no ping here): B listens, A connects
ip netns exec "${TAG}b" /usr/bin/python3 -c "
import socket; s = socket.socket(); s.bind(('$NET.2', 5055)); s.listen(1); s.settimeout(5); s.accept()" &
sleep 0.3
ip netns exec "${TAG}a" /usr/bin/python3 -c "
import socket; socket.create_connection(('$NET.2', 5055), timeout=5)" 2>/dev/null || skip "the namespaces cannot reach each other"
wait

# mh NP HOSTS args...: meshlm across the hosts, TCP only, on the test subnet
mh() {
  local np=$1 hosts=$2
  shift 2
  exec timeout -k 5 120 ip netns exec "${TAG}l" "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -np "$np" --host "$hosts" \
    --mca plm_rsh_agent "$WORK/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include "$NET.0/24" --mca oob_tcp_if_include "$NET.0/24" \
    --mca oob_tcp_keepalive_time 3 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 \
    -x OMP_NUM_THREADS "$MESHLM" "$@"
}

cd "$WORK"
head -c 200000 "$ROOT/data/tinyshakespeare.txt" > small.txt
"$MESHLM" prepare --tokenizer bytes --input small.txt --output data >/dev/null
cat > tiny.toml <<TOML
n_layer = 2
n_head = 2
n_embd = 32
seq_len = 32
batch_size = 8
lr = 3e-3
warmup_steps = 5
eval_every = 0
eval_batches = 1
peak_gflops = 100.0
TOML
# same_losses A B: the metrics' losses agree to 1e-5 relative (the dp tests' tolerance)
same_losses() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
def losses(p): return [j["loss"] for j in map(json.loads, open(p)) if "loss" in j]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) and a, (len(a), len(b))
d = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"  {len(a)} steps, max relative difference {d:.2e}")
sys.exit(0 if d <= 1e-5 else 1)
PY
}

# kill_jobs: whatever a job left in the namespaces
kill_jobs() { for h in a b l; do ip netns pids "${TAG}$h" | xargs -r kill -KILL 2>/dev/null; done; sleep 0.2; }
# launch NAME NP HOSTS args...: a job that must finish; a launch that hangs before its first step
# (seen about once in ten here: mpirun waiting for a daemon in a namespace) is retried (up to four attempts)
launch() {
  local name=$1 np=$2 hosts=$3
  shift 3
  for attempt in 1 2 3 4; do
    rm -rf "$name"
    ( mh "$np" "$hosts" "$@" --out "$name" ) > "$name.log" 2>&1 &
    local job=$! started=0
    for _ in $(seq 300); do
      [ -s "$name/metrics.jsonl" ] && { started=1; break; }
      kill -0 $job 2>/dev/null || break
      sleep 0.05
    done
    if [ $started -eq 1 ] || ! kill -0 $job 2>/dev/null; then wait $job; return; fi
    echo "  ($name: no step after 15 s, attempt $attempt; relaunching; the end of its log:)"
    tail -3 "$name.log" | sed 's/^/    | /'
    kill -KILL $job 2>/dev/null; wait $job 2>/dev/null; kill_jobs
  done
}

"$MESHLM" train --config tiny.toml --data data --out one --steps 20 >/dev/null 2>&1 || fail "the one-rank run"
SECONDS=0
launch dp2 2 "$NET.1,$NET.2" train --config tiny.toml --data data --steps 20 --dp 2
echo "dp 2 across two hosts vs one rank ($SECONDS s):"
same_losses one/metrics.jsonl dp2/metrics.jsonl && ok || { fail "dp 2 across hosts"; tail -5 dp2.log; }
SECONDS=0
launch dp2tp2 4 "$NET.1:2,$NET.2:2" train --config tiny.toml --data data --steps 20 --dp 2 --tp 2
echo "dp 2 x tp 2 across two hosts vs one rank ($SECONDS s):"
same_losses one/metrics.jsonl dp2tp2/metrics.jsonl && ok || { fail "dp 2 x tp 2 across hosts"; tail -5 dp2tp2.log; }

# ---- faults on B's link during a dp 2 run (watchdog 5 s, a checkpoint every 10 steps) ----
# fault NAME STEPS ACTION...: start the run, wait for step 20, run ACTION, wait for the job
fault() {
  local name=$1 steps=$2 launcher n
  shift 2
  for attempt in 1 2 3; do
    rm -rf "$name"
    ( mh 2 "$NET.1,$NET.2" train --config tiny.toml --data data --out "$name" --steps "$steps" --dp 2 --watchdog 5 \
        --save-every 10 ) > "$name.log" 2>&1 &
    launcher=$!
    for _ in $(seq 600); do n=$(grep -c '"loss"' "$name/metrics.jsonl" 2>/dev/null); [ "${n:-0}" -ge 20 ] && break; sleep 0.05; done
    [ "${n:-0}" -ge 20 ] && break
    echo "  ($name: ${n:-0} steps after 30 s, attempt $attempt; relaunching)"
    kill -KILL $launcher 2>/dev/null; wait $launcher 2>/dev/null; kill_jobs
  done
  T0=$(date +%s.%N)
  "$@"
  ( sleep 120; kill -KILL "$launcher" ) >/dev/null 2>&1 &
  local guard=$!
  wait "$launcher"; RC=$?
  pkill -P "$guard"; kill "$guard" 2>/dev/null
  kill_jobs
  TOOK=$(/usr/bin/python3 -c "import time; print(f'{time.time() - $T0:.1f}')")
}
flap() { ip link set "${TAG}hb" down; sleep 2; ip link set "${TAG}hb" up; }
fault outage 400 flap
[ $RC -eq 0 ] && ok || { fail "a 2 s outage: exit $RC"; grep -m2 -i "error\|watchdog" outage.log; }
echo "a 2 s outage of B's link: exit $RC after $TOOK s from the fault"
if [ "$MODE" != long ]; then
  echo "skipped: the loss case (make test-long runs it)"
elif command -v nft >/dev/null && ip netns exec "${TAG}b" nft add table inet loss 2>/dev/null; then
  loss() {
    ip netns exec "${TAG}b" nft add chain inet loss input '{ type filter hook input priority 0; }'
    ip netns exec "${TAG}b" nft add rule inet loss input numgen random mod 100 \< 30 drop
  }
  fault lossy 200 loss
  ip netns exec "${TAG}b" nft delete table inet loss 2>/dev/null
  # a measurement, not a check: the job may complete slowly or end through the watchdog
  echo "30% loss on B from step 20: exit $RC after $TOOK s: $(grep -m1 -o 'watchdog: .*made no progress[^.]*' lossy.log || tail -1 lossy.log)"
else
  echo "skipped: the loss case (no nftables here)"
fi
fault down 100000 ip link set "${TAG}hb" down
# whichever notices first: the watchdog (naming the waiting peers) or mpirun (naming the host
# whose daemon it lost)
echo "B's link down for good: exit $RC after $TOOK s: $(grep -m1 -o 'watchdog: [^;]*' down.log ||
  grep -m1 -A2 'lost communication with a remote daemon' down.log | tr -s ' \n' ' ')"
[ $RC -ne 0 ] && /usr/bin/python3 -c "import sys; sys.exit(0 if $TOOK < 60 else 1)" && ok || fail "link down: exit $RC after $TOOK s"
last=$(ls -d down/step_?????? 2>/dev/null | tail -1)
if [ -n "$last" ] && "$MESHLM" train --resume "$last" --out down_resumed --steps $((10#${last##*_} + 5)) --dp 1 >resume.log 2>&1; then
  ok; echo "  resumed $last on one host"
else fail "resume after the link fault: $last: $(tail -1 resume.log)"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
