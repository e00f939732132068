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
# (bench/inproc-ab.sh, --inproc pairs of runs each way round). A is built in a temporary
# worktree, removed at the end.
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
if [ "$rounds" -gt 0 ]; then
  node "$root/dist/bench/kv-build-ab.js" --a "$work/a" --b "$root" --keys 200000 --rounds "$rounds" \
    --rows 'put none,put sync,get,getView in read,range 10k'
fi
if [ "$runs" -gt 0 ]; then node "$root/dist/bench/ab.js" --a "$work/a" --b "$root" --bench index --runs "$runs"; fi
if [ "$inproc" -gt 0 ]; then
  "$root/bench/inproc-ab.sh" --a "$work/a" --b "$root" --rows 'put none,put sync,get none' --pairs "$inproc"
fi
