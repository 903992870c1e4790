# Shared by the bench scripts that run meshlm under mpirun, sourced after BUILD is set and the
# working directory is the repository: $OUT, a scratch directory removed at exit (named after
# $1), on_ranks NP THREADS args...: meshlm on NP ranks with THREADS OpenMP threads each (as
# root, oversubscribed, unbound: this machine has 2 cores), and byte_data below.
OUT=$(mktemp -d "/tmp/meshlm_$1.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
on_ranks() {
  local np=$1 threads=$2
  shift 2
  OMP_NUM_THREADS=$threads mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np" "$BUILD/meshlm" "$@"
}
# byte_data: sets $DATA to the corpus as byte-level token shards (prepared once, kept in data/).
byte_data() {
  DATA=data/shakespeare_bytes
  [ -f "$DATA/train_000000.bin" ] || "$BUILD/meshlm" prepare --input data/tinyshakespeare.txt --output "$DATA" >/dev/null
}
