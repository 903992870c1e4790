# Shared by the bench scripts that run meshlm under mpirun, sourced after BUILD is set and the
# working directory is the repository: $OUT, a scratch directory removed at exit (named after
# $1), and on_ranks NP THREADS args...: meshlm on NP ranks with THREADS OpenMP threads each (as
# root, oversubscribed, unbound: this machine has 2 cores).
OUT=$(mktemp -d "/tmp/meshlm_$1.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
on_ranks() {
  local np=$1 threads=$2
  shift 2
  OMP_NUM_THREADS=$threads mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np" "$BUILD/meshlm" "$@"
}
