#!/usr/bin/env bash
# Cold and warm `find MOUNT -ls` over a generated 4-layer stack of ~30k files:
# kernel overlayfs, Strata and fuse-overlayfs, in the same run. Prints
# milliseconds (median of RUNS) and ratios to kernel overlayfs. Needs root.
#   FILES=30000 LAYERS=4 RUNS=5 scripts/bench-find.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
strata=${STRATA_BIN:-$here/.build/release/strata}
files=${FILES:-30000}; layers=${LAYERS:-4}; runs=${RUNS:-5}
command -v fuse-overlayfs >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse-overlayfs >/dev/null; }
work=$(mktemp -d /tmp/strata-bench.XXXXXX)
mounted=()
cleanup() {
    for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

python3 - "$work" "$files" "$layers" <<'PY'
import os, sys, random
work, files, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(42)
per = files // layers
for l in range(layers):
    root = f"{work}/l{l}"
    for i in range(per):
        d = f"{root}/d{i % 300:03d}/s{(i // 300) % 10}"
        os.makedirs(d, exist_ok=True)
        # a quarter of the names collide across layers, so lookups merge and shadow
        name = f"f{i}" if random.random() < 0.25 else f"l{l}-f{i}"
        with open(f"{d}/{name}", "w") as f: f.write("x" * random.randint(0, 200))
    if l > 0:
        for i in range(0, per, 50):   # a few whiteouts in upper layers
            d = f"{root}/d{i % 300:03d}/s{(i // 300) % 10}"
            p = f"{d}/f{i+1}"
            if not os.path.exists(p): os.mknod(p, 0o020000, 0)
PY
lower=$(for ((l=layers-1; l>=0; l--)); do printf '%s/l%d:' "$work" "$l"; done); lower=${lower%:}
mkdir -p "$work/k" "$work/s" "$work/f"

mount_kernel() { mount -t overlay overlay -o "lowerdir=$lower" "$work/k"; }
mount_strata() { "$strata" mount --lower "$lower" "$work/s"; }
mount_fuse_overlayfs() { fuse-overlayfs -o "lowerdir=$lower" "$work/f"; }
unmount() { umount "$1"; for _ in $(seq 100); do grep -q " $1 " /proc/self/mounts || break; sleep 0.02; done; }

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A cold warm
for impl in kernel strata fuse_overlayfs; do
    case $impl in kernel) m=$work/k;; strata) m=$work/s;; fuse_overlayfs) m=$work/f;; esac
    c=(); w=()
    for ((r=0; r<runs; r++)); do
        sync; echo 3 > /proc/sys/vm/drop_caches
        mount_$impl
        t0=$(now); find "$m" -ls > /dev/null; t1=$(now)
        find "$m" -ls > /dev/null; t2=$(now)
        count=$(find "$m" -type f | wc -l)
        unmount "$m"
        c+=($(( (t1 - t0) / 1000000 ))); w+=($(( (t2 - t1) / 1000000 )))
    done
    cold[$impl]=$(printf '%s\n' "${c[@]}" | median); warm[$impl]=$(printf "%s\n" "${w[@]}" | median)
    echo "$impl: $count files visible; cold ${c[*]} ms; warm ${w[*]} ms" >&2
done
printf '%-16s %10s %8s %10s %8s\n' "implementation" "cold ms" "ratio" "warm ms" "ratio"
for impl in kernel strata fuse_overlayfs; do
    printf '%-16s %10s %8s %10s %8s\n' "$impl" "${cold[$impl]}" \
        "$(awk -v a="${cold[$impl]}" -v b="${cold[kernel]}" 'BEGIN{printf "%.2fx", a/(b?b:1)}')" "${warm[$impl]}" \
        "$(awk -v a="${warm[$impl]}" -v b="${warm[kernel]}" 'BEGIN{printf "%.2fx", a/(b?b:1)}')"
done
