#!/usr/bin/env bash
# strata diff benchmark: upper-walk vs two-tree walk vs `find UPPER -ls`.
#
# Generates an image of >= 300k entries in two lower layers, then two
# containers through kernel overlayfs: one whose upper holds ~1k entries and one
# whose upper holds ~100k. For each it times (warm cache, median of RUNS):
#   upper-walk  strata diff --lower L0:L1 --upper UPPER
#   two-tree    strata diff LOWER_VIEW MERGED   (two overlay mounts: what docker does)
#   find floor  find UPPER -ls
# and prints the figures and ratios. Needs root (overlay mounts).
#
# Usage: Benchmarks/diff-bench.sh   (env: STRATA_BIN, RUNS=5, DIRS=300, FILES=1000, WORKDIR)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
RUNS="${RUNS:-5}"
DIRS="${DIRS:-300}"       # image directories ...
FILES="${FILES:-1000}"    # ... of this many files each (300 x 1000 = 300k files)
STRATA_BIN="${STRATA_BIN:-}"
if [[ -z "$STRATA_BIN" ]]; then
    for c in "$here/.build/release/strata" "$here/.build-diff/release/strata"; do
        [[ -x "$c" ]] && STRATA_BIN="$c" && break
    done
fi
if [[ -z "$STRATA_BIN" ]]; then
    echo "building strata (release)..." >&2
    (cd "$here" && swift build -c release --product strata >&2)
    STRATA_BIN="$here/.build/release/strata"
fi
[[ $(id -u) == 0 ]] || { echo "diff-bench: needs root (kernel overlay mounts)" >&2; exit 2; }

work="${WORKDIR:-$(mktemp -d /tmp/diffbench.XXXXXX)}"
mounted=()
cleanup() {
    for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
    [[ -z "${WORKDIR:-}" ]] && rm -rf --one-file-system "$work"
}
trap cleanup EXIT

now_ns() { date +%s%N; }

# Median wall time in milliseconds of RUNS runs of "$@" (after one warm-up run).
time_ms() {
    "$@" > /dev/null
    local samples=()
    for ((r = 0; r < RUNS; r++)); do
        local t0 t1
        t0=$(now_ns); "$@" > /dev/null; t1=$(now_ns)
        samples+=($(( (t1 - t0) / 1000 )))
    done
    printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

echo "== generating image: 2 layers, $DIRS dirs x $FILES files in $work"
t0=$(now_ns)
mkdir -p "$work/l0" "$work/l1"
split=$(( DIRS * 5 / 6 ))
names=$(seq -f 'f%04g' 0 $(( FILES - 1 )))
for ((d = 0; d < DIRS; d++)); do
    layer="$work/l1"; (( d >= split )) && layer="$work/l0"
    dir="$layer/usr/lib/d$(printf %03d "$d")"
    mkdir -p "$dir"
    (cd "$dir" && echo "$names" | xargs touch)
done
# The top layer also replaces a few files of the base layer.
mkdir -p "$work/l0/usr/lib/d000" && (cd "$work/l0/usr/lib/d000" && seq -f 'f%04g' 0 99 | xargs touch)
find "$work/l0" "$work/l1" -exec touch -h -d @1600000000 {} +
entries=$(( $(find "$work/l0" "$work/l1" | wc -l) ))
echo "   $entries entries in $(( ($(now_ns) - t0) / 1000000 )) ms"

# Container NAME: makes its upper through a kernel overlay mount with SCRIPT.
container() {
    local name="$1" script="$2"
    mkdir -p "$work/$name/u" "$work/$name/w" "$work/$name/m" "$work/$name/v"
    mount -t overlay overlay -o "lowerdir=$work/l0:$work/l1,upperdir=$work/$name/u,workdir=$work/$name/w" "$work/$name/m"
    mounted=("$work/$name/m" "${mounted[@]}")
    (cd "$work/$name/m" && bash -c "$script")
    mount -t overlay overlay -o "lowerdir=$work/l0:$work/l1" "$work/$name/v"
    mounted=("$work/$name/v" "${mounted[@]}")
}

echo "== containers"
# ~1k upper entries: 600 new files in a new dir, 300 appended files, 100 deletions.
container small '
    mkdir -p opt/app && (cd opt/app && seq -f "n%04g" 0 599 | xargs touch)
    for i in $(seq -f "%04g" 0 299); do echo x >> usr/lib/d010/f$i; done
    (cd usr/lib/d020 && seq -f "f%04g" 0 99 | xargs rm -f)'
# ~100k upper entries: 90k new files in 90 new dirs, 10k appended files over 10 dirs.
container large '
    for d in $(seq -f "%03g" 0 89); do mkdir -p srv/data/d$d && (cd srv/data/d$d && seq -f "n%04g" 0 999 | xargs touch); done
    for d in $(seq -f "%03g" 100 109); do (cd usr/lib/d$d && seq -f "f%04g" 0 999 | xargs -n 1000 sh -c "for f; do echo x >> \$f; done" _); done'

# Fixed costs: process start of each tool on an empty directory (strata's is
# dynamic loading of the Swift runtime and Foundation; find's is smaller).
mkdir -p "$work/empty-lower" "$work/empty-upper"
start_strata=$(time_ms "$STRATA_BIN" diff --lower "$work/empty-lower" --upper "$work/empty-upper")
start_find=$(time_ms find "$work/empty-upper" -ls)
echo "   process start: strata diff $start_strata ms, find $start_find ms (empty directory)"

printf '\n%-8s %8s %8s %14s %12s %14s  %s\n' container upper changes "upper-walk ms" "find -ls ms" "two-tree ms" "ratios (end to end | net of process start)"
for name in small large; do
    u="$work/$name/u"
    upper_entries=$(( $(find "$u" | wc -l) - 1 ))
    changes=$("$STRATA_BIN" diff --lower "$work/l0:$work/l1" --upper "$u" | wc -l)
    two=$("$STRATA_BIN" diff "$work/$name/v" "$work/$name/m" | wc -l)
    [[ "$changes" == "$two" ]] || echo "warning: engines disagree ($changes vs $two lines)" >&2
    walk=$(time_ms "$STRATA_BIN" diff --lower "$work/l0:$work/l1" --upper "$u")
    floor=$(time_ms find "$u" -ls)
    tree=$(time_ms "$STRATA_BIN" diff "$work/$name/v" "$work/$name/m")
    ratios=$(awk -v w="$walk" -v f="$floor" -v t="$tree" -v sw="$start_strata" -v sf="$start_find" 'BEGIN {
        nw = w - sw; nf = f - sf; nt = t - sw; if (nw < 0.1) nw = 0.1; if (nf < 0.1) nf = 0.1
        printf "%.2fx find, %.0fx faster than two-tree | %.2fx find, %.0fx faster than two-tree", w/f, t/w, nw/nf, nt/nw }')
    printf '%-8s %8d %8d %14s %12s %14s  %s\n' "$name" "$upper_entries" "$changes" "$walk" "$floor" "$tree" "$ratios"
done
echo
echo "image: $entries entries; warm page cache; median of $RUNS runs; strata: $STRATA_BIN"
