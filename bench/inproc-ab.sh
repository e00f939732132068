#!/usr/bin/env bash
# Two builds of daxstore, both in one process, each way round: bench/txn-build-ab.ts run with
# A loaded first and again with B loaded first (the loading order biases an in-process A/B by a
# few percent), per operation and durability. Each pair of runs gives one figure, the mean of
# B/A and of the inverted reverse run's A/B, which cancels that bias; it prints every pair's
# figure and their median (CPU per operation, above 1: B costs more). --stat total takes each
# run's ratio of total CPU over its rounds instead of its median round (for a cost that comes
# in bursts: automatic compaction); --warm rounds before the measured ones (default 10; a
# store of the transaction rows reaches automatic compaction's steady state after about 40).
#
#   npx tsc -p tsconfig.json
#   bench/inproc-ab.sh --a <root of build A> [--b <root of build B, default this package>]
#     [--rows 'put none,put sync,get none,range none,txn none'] [--pairs 7] [--stat median|total]
#     [--warm 10]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
a=''
b=$root
rows='put none,put sync,get none,range none,txn none'
pairs=7
stat=median
warm=10
while [ $# -gt 0 ]; do
  case "$1" in
    --a) a=$2; shift 2 ;;
    --b) b=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --stat) stat=$2; shift 2 ;;
    --warm) warm=$2; shift 2 ;;
    *) echo "inproc-ab: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$a" ] || { echo 'inproc-ab: --a <root of build A> is required' >&2; exit 2; }
case "$stat" in
  median) pattern='paired median [0-9.]*' ;;
  total) pattern='of totals [0-9.]*' ;;
  *) echo "inproc-ab: --stat median or total, not $stat" >&2; exit 2 ;;
esac
ratio() {
  local ops=5000
  [ "$1" = txn ] && ops=2000
  [ "$1" = range ] && ops=20000
  node "$root/dist/bench/txn-build-ab.js" --op "$1" --durability "$2" --a "$3" --b "$4" --ops "$ops" --rounds 60 \
    --warm "$warm" | grep -o "$pattern" | cut -d' ' -f3
}
echo "in one process, each way round ($stat of rounds, $warm warm-up rounds): A = $a, B = $b; load $(cut -d' ' -f1-3 /proc/loadavg)"
IFS=',' read -ra list <<<"$rows"
for row in "${list[@]}"; do
  read -r op durability <<<"$row"
  costs=()
  for ((i = 0; i < pairs; i++)); do
    fwd=$(ratio "$op" "$durability" "$a" "$b")
    rev=$(ratio "$op" "$durability" "$b" "$a")
    costs+=("$(node -e "console.log(((${fwd} + 1 / ${rev}) / 2).toFixed(3))")")
  done
  sorted=$(printf '%s\n' "${costs[@]}" | sort -n)
  median=$(node -e "const x = process.argv.slice(1).map(Number); const m = x.length >> 1; console.log((x.length % 2 ? x[m] : (x[m - 1] + x[m]) / 2).toFixed(3))" $sorted)
  echo "$op '$durability' B/A per pair: $(echo $sorted) (median $median)"
done
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
