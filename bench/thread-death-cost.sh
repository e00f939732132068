#!/usr/bin/env bash
# What the thread-death protocol costs the fast paths, measured on the current code: this
# build (B) against the same commit with the protocol's per-operation work taken out (A:
# bench/thread-death-strip.patch removes the death-counter check at the start of every
# key-value operation, the in-flight record marks around a put, and the replace record an
# overwrite writes into its participant slot before the odd sequence bump). The lock words'
# holder ids and the reapers stay in both: they cost nothing on a path where nobody died.
#
#   npm install            # this build, B
#   bench/thread-death-cost.sh [--rounds 32] [--runs 6] [--inproc 7]    (0: skip that part)
#
# Prints kv-build-ab's byte-path rows (CPU per operation, paired B/A medians: above 1, the
# protocol costs that much), the index bench's A/B (bench/ab.ts: B/A of each row's time
# against its peer), and the puts and gets again with both builds in one process
# (txn-build-ab.ts --op, --inproc N times each way round; the figure is the mean of B/A run
# A-first and A/B run B-first inverted, which cancels the bias of the loading order). A is
# built in a temporary worktree, removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=32
runs=6
inproc=7
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --inproc) inproc=$2; shift 2 ;;
    *) echo "thread-death-cost: unknown option $1" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d)
cleanup() {
  git -C "$root" worktree remove --force "$work/a" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
git -C "$root" worktree add -q --detach "$work/a" HEAD
git -C "$work/a" apply -C1 "$root/bench/thread-death-strip.patch" ||
  { echo "thread-death-cost: bench/thread-death-strip.patch no longer applies: update it" >&2; exit 1; }
(cd "$work/a" && npm install --no-audit --no-fund >"$work/install.log" 2>&1) || { tail -20 "$work/install.log"; exit 1; }
echo "A = HEAD ($(git -C "$root" rev-parse --short HEAD)) without the per-operation thread-death work; B = $root"
[ "$rounds" -gt 0 ] && node "$root/dist/bench/kv-build-ab.js" --a "$work/a" --b "$root" --keys 200000 \
  --rounds "$rounds" --rows 'put none,put sync,get,getView in read,range 10k'
[ "$runs" -gt 0 ] && node "$root/dist/bench/ab.js" --a "$work/a" --b "$root" --bench index --runs "$runs"
ratio() { node "$root/dist/bench/txn-build-ab.js" "$@" --ops 5000 --rounds 60 | grep -o 'paired median [0-9.]*' | cut -d' ' -f3; }
for op in put get; do
  for durability in none sync; do
    [ "$op" = get ] && [ "$durability" = sync ] && continue
    costs=()
    for ((i = 0; i < inproc; i++)); do
      fwd=$(ratio --a "$work/a" --b "$root" --op "$op" --durability "$durability")
      rev=$(ratio --a "$root" --b "$work/a" --op "$op" --durability "$durability")
      costs+=("$(node -e "console.log(((${fwd} + 1 / ${rev}) / 2).toFixed(3))")")
    done
    sorted=$(printf '%s\n' "${costs[@]}" | sort -n | tr '\n' ' ')
    echo "in one process: $op '$durability' B/A per pair of runs: $sorted(median $(printf '%s\n' "${costs[@]}" | sort -n | sed -n "$(((inproc + 1) / 2))p"))"
  done
done
