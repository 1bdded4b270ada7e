#!/usr/bin/env bash
# Daemon memory after walking a large tree: Strata vs fuse-overlayfs.
#
# Generates a FILES-file tree (default 200000) spread over LAYERS lower layers (default 4; the
# same directories in every layer, files split between them, some whiteouts), mounts it read-only
# with each daemon in the foreground (so its pid is known), runs `find -ls` over the mount twice
# (the second walk warm) and `ls -lR`, and reports the daemon's peak RSS (VmHWM) and final RSS.
# Strata runs once with its defaults and once bounded: -o max_nodes=NODES (default 20000: the
# kernel is asked to drop the least recently used names past it) and dir_cache_entries=BOUND
# (default 50000 names in directory caches).
# Every walk's output line count is checked against the others.
#
#   Benchmarks/memory-bench.sh
#   FILES=50000 Benchmarks/memory-bench.sh
# env: STRATA_BIN, FILES, LAYERS, NODES, BOUND, KEEP=1 (keep the scratch directory)
set -euo pipefail
if [[ -z ${MEMORY_BENCH_NS:-} && $(id -u) == 0 ]] && command -v unshare >/dev/null; then
    exec env MEMORY_BENCH_NS=1 unshare --mount --propagation private "$0" "$@"
fi
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
strata=${STRATA_BIN:-$here/.build/release/strata}
files=${FILES:-200000}
layers=${LAYERS:-4}
bound=${BOUND:-50000}
nodes=${NODES:-20000}
[[ $(id -u) == 0 ]] || { echo "memory-bench: needs root (mounts)" >&2; exit 1; }
[[ -x $strata ]] || { echo "memory-bench: no strata binary at $strata (make release)" >&2; exit 1; }
if ! command -v fuse-overlayfs >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse-overlayfs >/dev/null
fi

scratch=$(mktemp -d /var/tmp/strata-memory.XXXXXX)
mnt=$scratch/mnt
daemon=
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" || true; fi
    if [[ -n $daemon ]] && kill -0 "$daemon" 2>/dev/null; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$scratch"
}
trap cleanup EXIT INT TERM
mkdir -p "$mnt"

echo "generating $files files in $layers layers under $scratch ..."
python3 - "$scratch" "$files" "$layers" <<'EOF'
import os, sys
base, files, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dirs = max(1, files // 100)
for l in range(layers):
    os.makedirs(f"{base}/l{l}", exist_ok=True)
for d in range(dirs):
    for l in range(layers):
        os.makedirs(f"{base}/l{l}/d{d // 50:03d}/sub{d:05d}", exist_ok=True)
for i in range(files):
    d, l = i % dirs, (i // dirs) % layers
    with open(f"{base}/l{l}/d{d // 50:03d}/sub{d:05d}/file-{i:07d}.txt", "w") as f:
        f.write("x" * (i % 64))
# a whiteout in the top layer for every 50th file of the layers below
for i in range(0, files, 50):
    d, l = i % dirs, (i // dirs) % layers
    if l > 0:
        os.mknod(f"{base}/l0/d{d // 50:03d}/sub{d:05d}/file-{i:07d}.txt", 0o020000, 0)
EOF
lowers=$scratch/l0
for ((l = 1; l < layers; l++)); do lowers+=":$scratch/l$l"; done

wait_mounted() {
    for _ in $(seq 1 200); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
    echo "memory-bench: $1 did not mount" >&2; exit 1
}
kib() { awk -v k="$1" '/^'"$1"':/ {print $2}' "/proc/$daemon/status"; }

declare -A counts
run() {  # name command...
    local name=$1; shift
    sync; echo 3 >/proc/sys/vm/drop_caches
    "$@" &
    daemon=$!
    wait_mounted "$name"
    local start; start=$(kib VmRSS)
    local c1 c2 c3
    c1=$(find "$mnt" -ls | wc -l)
    c2=$(find "$mnt" -ls | wc -l)
    c3=$(ls -lR "$mnt" | wc -l)
    local peak rss; peak=$(kib VmHWM); rss=$(kib VmRSS)
    fusermount3 -u "$mnt"
    wait "$daemon" 2>/dev/null || true
    daemon=
    counts[$name]="$c1/$c2/$c3"
    printf '%-34s %10s %10s %10s   %s\n' "$name" "$start" "$peak" "$rss" "$c1 entries"
}

printf '%-34s %10s %10s %10s\n' "daemon (after find -ls x2, ls -lR)" "start KiB" "peak KiB" "end KiB"
run "fuse-overlayfs" fuse-overlayfs -f -o "lowerdir=$lowers" "$mnt"
run "strata (defaults)" "$strata" mount -f --lower "$lowers" "$mnt"
run "strata -o max_nodes=$nodes,dir_cache_entries=$bound" "$strata" mount -f -o "max_nodes=$nodes,dir_cache_entries=$bound" --lower "$lowers" "$mnt"
reference=${counts[fuse-overlayfs]}
for name in "${!counts[@]}"; do
    if [[ ${counts[$name]} != "$reference" ]]; then
        echo "memory-bench: $name listed ${counts[$name]} lines, fuse-overlayfs $reference" >&2; exit 1
    fi
done
echo "every walk listed the same number of entries ($reference)"
echo "machine: $(nproc) CPUs, kernel $(uname -r); $(fuse-overlayfs --version 2>&1 | grep -m1 -i 'fuse-overlayfs')"
