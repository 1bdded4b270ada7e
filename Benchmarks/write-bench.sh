#!/usr/bin/env bash
# Write-path workloads through kernel overlayfs, Strata and fuse-overlayfs, in the same run.
#
# A 2-layer lower stack is generated once (seeded). Every run of every workload gets a fresh
# upper and work directory on each implementation; runs are interleaved (kernel, strata,
# fuse-overlayfs, kernel, ...). Page cache, dentries and inodes are dropped (sync; drop_caches)
# before each timed step; the tools a step runs (and the tarball it reads) are read back in
# afterwards, so the step times the overlay, not the loading of python or of the tarball.
#
#   1  copy-up of SMALL lower files (append one byte to each; default 500, 2 layers, 10 dirs)
#   2  copy-up of one SIZE_MB MiB lower file (append one byte; no sync in the timing)
#   3  create FILES empty files in a new directory (default 10000; `xargs touch`)
#   4  chmod those files                 (second timed step on the same mount)
#   5  rm those files                    (third timed step on the same mount)
#   6  untar a TAR_MB MiB tarball of TAR_FILES files (mixed sizes, symlinks, hard links)
#   7  rm -rf of a TREE-entry directory tree of the lower layers (merged dirs, whiteouts,
#      opaque dirs); the overlay writes whiteouts
#
# Every step is checked on every implementation against a ground truth built on plain disk
# (counts, sizes, modes, names and contents), and after unmounting, the upper is mounted
# read-only under kernel overlayfs (lowerdir=UPPER:LOWERS) and checked again. Any difference
# aborts the benchmark. Prints medians of RUNS in milliseconds and ratios to kernel overlayfs.
# Needs root. Reading the figures: kernel overlayfs and Strata fdatasync a copied-up file before
# it gets its name (sync=on); fuse-overlayfs 1.10 copies with sendfile and does not sync, and it
# runs with the FUSE writeback cache (one WRITE per file on untar), Strata without (one per write(2)).
#
#   Benchmarks/write-bench.sh
#   RUNS=5 SIZE_MB=1024 Benchmarks/write-bench.sh
#   QUICK=1 Benchmarks/write-bench.sh          (1 run, small sizes)
# env: STRATA_BIN, RUNS (3), SIZE_MB (512), QUICK, SMALL, FILES, TAR_MB, TAR_FILES, TREE,
#      WORKLOADS (subset of "small big files untar rmtree"), STEP_TIMEOUT (600 s per step)
set -euo pipefail
# In a private mount namespace: a namespace someone else creates meanwhile (podman, unshare)
# cannot keep a copy of these mounts, which would keep a FUSE daemon alive after its unmount.
if [[ -z ${WRITE_BENCH_NS:-} && $(id -u) == 0 ]] && command -v unshare >/dev/null; then
    exec env WRITE_BENCH_NS=1 unshare --mount --propagation private "$0" "$@"
fi
export LC_ALL=C
umask 022
here=$(cd "$(dirname "$0")/.." && pwd)
strata=${STRATA_BIN:-$here/.build/release/strata}
if [[ ${QUICK:-0} == 1 ]]; then
    runs=${RUNS:-1}; size_mb=${SIZE_MB:-64}; small=${SMALL:-100}; files=${FILES:-2000}
    tar_mb=${TAR_MB:-20}; tar_files=${TAR_FILES:-1000}; tree=${TREE:-400}
else
    runs=${RUNS:-3}; size_mb=${SIZE_MB:-512}; small=${SMALL:-500}; files=${FILES:-10000}
    tar_mb=${TAR_MB:-100}; tar_files=${TAR_FILES:-5000}; tree=${TREE:-2000}
fi
workloads=${WORKLOADS:-small big files untar rmtree}
step_timeout=${STEP_TIMEOUT:-600}
impls=(kernel strata fuse-overlayfs)

die() { printf '\nwrite-bench: FAILED: %s\n\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (kernel overlay mounts, drop_caches)"
[[ -x $strata ]] || die "no strata binary at $strata (set STRATA_BIN or run make release)"
(( small % 10 == 0 && tree >= 40 )) || die "SMALL must be a multiple of 10 and TREE at least 40"
command -v fuse-overlayfs >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse-overlayfs >/dev/null; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d /tmp/strata-write-bench.XXXXXX)
mounted=()             # mountpoints this script mounted and has not unmounted yet
declare -A kind        # mountpoint -> implementation
fo_pids=()             # fuse-overlayfs daemons this script started (run with -f, so the pid is ours)
cleanup() {
    local m p
    for m in "${mounted[@]}"; do
        case ${kind[$m]} in
            strata) "$strata" unmount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true ;;
            *) umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true ;;
        esac
    done
    for p in "${fo_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# The lower stack (l0 on top of l1), the tarball and the expected results, all seeded.
echo "generating in $work: $small small files, ${size_mb} MiB file, $tree-entry tree, ${tar_mb} MiB tarball of $tar_files files" >&2
t0=$EPOCHREALTIME
python3 - "$work" "$small" "$size_mb" "$tree" "$tar_mb" "$tar_files" "$files" <<'PY'
import os, sys, random, hashlib, stat
work = sys.argv[1]
small, size_mb, tree, tar_mb, tar_files, files = map(int, sys.argv[2:])
random.seed(20240611)
top, bottom, exp = f"{work}/l0", f"{work}/l1", f"{work}/expect"

def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f: f.write(data)
    os.chmod(path, mode)

def whiteout(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))

# 1. small files: 10 dirs; each file in the bottom layer, the top layer, or both (top shadows).
for i in range(small):
    rel = f"small/d{i % 10}/f{i:04d}"
    where = random.choice(["bottom"] * 5 + ["top"] * 3 + ["both"] * 2)
    data = random.randbytes(random.randint(0, 4096))
    if where in ("bottom", "both"):
        write(f"{bottom}/{rel}", data if where == "bottom" else random.randbytes(random.randint(0, 4096)))
    if where in ("top", "both"):
        write(f"{top}/{rel}", data)
    write(f"{exp}/small0/{rel[6:]}", data)
    write(f"{exp}/small1/{rel[6:]}", data + b"x")

# 2. the big file, in the bottom layer.
h = hashlib.md5()
with open(f"{bottom}/big.bin", "wb") as f:
    for _ in range(size_mb):
        block = random.randbytes(1 << 20); h.update(block); f.write(block)
h.update(b"x")

# 7. the tree: per top dir 3 subdirs of 12 files (40 entries), spread over both layers; some
# bottom files are whited out by the top layer, and every tenth dir has an opaque subdir.
ndirs = tree // 40
for d in range(ndirs):
    for s in range(3):
        sub = f"tree/d{d:03d}/s{s}"
        opaque = d % 10 == 3 and s == 0
        for i in range(12):
            rel = f"{sub}/f{i:02d}"
            data = random.randbytes(random.randint(0, 2048))
            where = "top" if opaque else random.choice(["bottom"] * 5 + ["top"] * 3 + ["both"] * 2)
            if where in ("bottom", "both"):
                write(f"{bottom}/{rel}", data if where == "bottom" else random.randbytes(100))
            if where in ("top", "both"):
                write(f"{top}/{rel}", data)
            write(f"{exp}/tree0/{rel[5:]}", data)
            if where == "bottom" and random.random() < 0.1:     # a hidden file: whiteout on top
                write(f"{bottom}/{sub}/gone{i:02d}", b"hidden")
                whiteout(f"{top}/{sub}/gone{i:02d}")
        if opaque:
            for i in range(5): write(f"{bottom}/{sub}/old{i}", b"hidden by the opaque dir")
            os.setxattr(f"{top}/{sub}", "trusted.overlay.opaque", b"y")

# 6. the tarball's source tree: ~tar_files/20 dirs nested up to 4 deep; 75% of the files
# 0-8 KiB, 22% 8-64 KiB, 3% share what is left of tar_mb; 1% symlinks, 0.5% hard links.
src = f"{work}/tarsrc"
dirs = [""]
for i in range(max(1, tar_files // 20)):
    parent = random.choice([d for d in dirs if d.count("/") < 4])
    dirs.append(f"{parent}/d{i:03d}")
for d in dirs: os.makedirs(f"{src}{d}", exist_ok=True)
nsym, nhard = tar_files // 100, tar_files // 200
nreg = tar_files - nsym - nhard
kinds = [random.random() for _ in range(nreg)]
sizes = [random.randint(0, 8192) if k < .75 else random.randint(8192, 65536) if k < .97 else 0 for k in kinds]
large = [i for i, k in enumerate(kinds) if k >= .97]
budget = max(0, tar_mb * (1 << 20) - sum(sizes))
weights = [random.random() + 0.1 for _ in large]
for i, w in zip(large, weights): sizes[i] = int(budget * w / sum(weights))
regular = []
for i, size in enumerate(sizes):
    p = f"{random.choice(dirs)}/f{i:05d}"
    write(f"{src}{p}", random.randbytes(size), 0o755 if random.random() < 0.1 else 0o644)
    regular.append(p)
for i in range(nsym):
    p = f"{random.choice(dirs)}/link{i:04d}"
    os.symlink(os.path.relpath(f"{src}{random.choice(regular)}", os.path.dirname(f"{src}{p}")), f"{src}{p}")
for i in range(nhard):
    p = f"{random.choice(dirs)}/hard{i:04d}"
    os.link(f"{src}{random.choice(regular)}", f"{src}{p}")

# 3-5. expected directories of the files workload.
for name, mode in (("create", 0o644), ("chmod", 0o600)):
    os.makedirs(f"{exp}/{name}")
    for i in range(files): os.close(os.open(f"{exp}/{name}/f{i:05d}", os.O_CREAT | os.O_WRONLY, mode))
os.makedirs(f"{exp}/empty")

with open(f"{work}/meta.sh", "w") as f:
    f.write(f"big_md5={h.hexdigest()}\nbig_size={size_mb * (1 << 20) + 1}\n")
PY
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1600000000 -cf "$work/data.tar" -C "$work/tarsrc" .
# shellcheck source=/dev/null
source "$work/meta.sh"
lower=$work/l0:$work/l1
tarball=$work/data.tar
tar_count=$(find "$work/tarsrc" -mindepth 1 | wc -l)
echo "  done in $(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 )) ms; tarball $(( $(stat -c %s "$tarball") >> 20 )) MiB, $tar_count entries" >&2

# ---------------------------------------------------------------------------------------------
# Steps and checks. Both run in a child bash under a watchdog, so a hang aborts the benchmark.
# tree_sig DIR: hash of everything under DIR (type, mode, size of files, link count of files,
# symlink targets, names, contents of files).
tree_sig() {
    (cd "$1" && {
        find . -mindepth 1 \( -type d -printf 'd %m %p\n' \) -o \( -type f -printf 'f %m %s %n %p\n' \) \
            -o -printf '%y %m %l %p\n' | sort
        find . -type f -print0 | sort -z | xargs -0r md5sum
    }) | md5sum | cut -c1-32
}
count() { find "$@" | wc -l; }
bad() { echo "$*" >&2; exit 1; }

step_small()  { local f; for f in "$1"/small/*/*; do printf x >> "$f"; done; }
step_big()    { printf x >> "$1/big.bin"; }
step_create() { mkdir "$1/new" && cd "$1/new" && seq -f 'f%05g' 0 $(( files - 1 )) | xargs touch --; }
step_chmod()  { cd "$1/new" && chmod 0600 -- *; }
step_rm()     { cd "$1/new" && rm -f -- *; }
step_untar()  { mkdir "$1/untar" && tar -xf "$tarball" -C "$1/untar"; }
step_rmtree() { rm -rf "$1/tree"; }

# check_STEP MOUNT prints the step's signature (compared with expected_STEP) or fails with why.
check_small() {
    local n; n=$(count "$1/small" -type f)
    [[ $n == "$small" ]] || bad "small: $n files, expected $small"
    tree_sig "$1/small"
}
check_big() {
    local s; s=$(stat -c %s "$1/big.bin")
    [[ $s == "$big_size" ]] || bad "big.bin: $s bytes, expected $big_size"
    echo "$s $(md5sum < "$1/big.bin" | cut -c1-32)"
}
check_create() {
    local n; n=$(count "$1/new" -mindepth 1)
    [[ $n == "$files" ]] || bad "new: $n entries, expected $files"
    tree_sig "$1/new"
}
check_chmod() {
    local n; n=$(count "$1/new" -type f -perm 0600)
    [[ $n == "$files" ]] || bad "new: $n files of mode 0600, expected $files"
    tree_sig "$1/new"
}
check_rm() {
    local n; n=$(count "$1/new" -mindepth 1)
    [[ $n == 0 ]] || bad "new: $n entries left, expected none"
    tree_sig "$1/new"
}
check_untar() {
    local n; n=$(count "$1/untar" -mindepth 1)
    [[ $n == "$tar_count" ]] || bad "untar: $n entries, expected $tar_count"
    tree_sig "$1/untar"
}
check_rmtree() {
    [[ ! -e $1/tree && ! -L $1/tree ]] || bad "tree still there"
    echo "$(ls -A "$1" | tr '\n' ' ')$(count "$1/small" -type f)"
}
check_initial() {   # the lower stack as each implementation shows it before any write
    echo "$(tree_sig "$1/small") $(tree_sig "$1/tree") $(stat -c %s "$1/big.bin")"
}

export files small tarball big_size tar_count
export -f tree_sig count bad step_small step_big step_create step_chmod step_rm step_untar step_rmtree \
    check_small check_big check_create check_chmod check_rm check_untar check_rmtree check_initial

# guarded FUNCTION ARGS...: runs it in a child bash with a watchdog; its stdout is ours.
guarded() {
    timeout -k 10 "$step_timeout" bash -c 'set -euo pipefail; "$@"' _ "$@"
}
# timed FUNCTION MOUNT: prints the wall time of the step in ms (stdout of the step discarded).
timed() {
    local out
    out=$(timeout -k 10 "$step_timeout" bash -c 'set -euo pipefail; t0=$EPOCHREALTIME; "$@" > /dev/null; t1=$EPOCHREALTIME; echo "${t0/./} ${t1/./}"' _ "$@") \
        || die "$1 on $impl exited with status $? (124/137: hung for more than ${step_timeout}s)"
    awk -v a="${out% *}" -v b="${out#* }" 'BEGIN { printf "%.1f", (b - a) / 1000 }'
}

expected_initial="$(tree_sig "$work/expect/small0") $(tree_sig "$work/expect/tree0") $(( big_size - 1 ))"
declare -A expected=(
    [small]=$(tree_sig "$work/expect/small1")
    [big]="$big_size $big_md5"
    [create]=$(tree_sig "$work/expect/create")
    [chmod]=$(tree_sig "$work/expect/chmod")
    [rm]=$(tree_sig "$work/expect/empty")
    [untar]=$(tree_sig "$work/tarsrc")
    [rmtree]="big.bin small $small"
)
declare -A steps=([small]="small" [big]="big" [files]="create chmod rm" [untar]="untar" [rmtree]="rmtree")

# ---------------------------------------------------------------------------------------------
# Mounting.
fo_pid=
mount_impl() {   # mount_impl IMPL MOUNT UPPER WORK
    local impl=$1 m=$2 u=$3 w=$4 opts
    case $impl in
        kernel) mount -t overlay overlay -o "lowerdir=$lower,upperdir=$u,workdir=$w" "$m" ;;
        strata) "$strata" mount --lower "$lower" --upper "$u" --work "$w" "$m" ;;
        fuse-overlayfs*)
            if [[ $impl == fuse-overlayfs ]]; then opts="lowerdir=$lower,upperdir=$u,workdir=$w"; else opts="lowerdir=$u:$lower"; fi
            fuse-overlayfs -f -o "$opts" "$m" < /dev/null >> "$work/fuse-overlayfs.log" 2>&1 &
            fo_pid=$!; fo_pids+=("$fo_pid")
            local i
            for ((i = 0; i < 500; i++)); do
                grep -q " $m fuse" /proc/self/mounts && break
                kill -0 "$fo_pid" 2>/dev/null || die "fuse-overlayfs exited: $(tail -3 "$work/fuse-overlayfs.log")"
                sleep 0.01
            done
            grep -q " $m fuse" /proc/self/mounts || die "fuse-overlayfs did not mount $m in 5 s" ;;
        check) mount -t overlay overlay -o "ro,lowerdir=$u:$lower" "$m" ;;
    esac
    mounted+=("$m"); kind[$m]=$impl
}
unmount_impl() {   # unmount_impl MOUNT: waits for the FUSE daemon to exit
    local m=$1 i keep=() x
    case ${kind[$m]} in
        strata) "$strata" unmount "$m" ;;
        fuse-overlayfs*)
            umount "$m"
            for ((i = 0; i < 1000; i++)); do kill -0 "$fo_pid" 2>/dev/null || break; sleep 0.01; done
            kill -0 "$fo_pid" 2>/dev/null && die "fuse-overlayfs $fo_pid still running 10 s after umount"
            wait "$fo_pid" || true
            for x in "${fo_pids[@]}"; do [[ $x == "$fo_pid" ]] || keep+=("$x"); done
            fo_pids=("${keep[@]}"); keep=() ;;
        *) umount "$m" ;;
    esac
    for x in "${mounted[@]}"; do [[ $x == "$m" ]] || keep+=("$x"); done
    mounted=("${keep[@]}")
}
fresh() { rm -rf --one-file-system "$work/run"; mkdir -p "$work/run/upper" "$work/run/work"; }
drop_caches() {
    sync; echo 3 > /proc/sys/vm/drop_caches
    # read back what every implementation needs alike: the tools a step runs, and the tarball
    seq 1 > /dev/null; xargs --version > /dev/null; touch --version > /dev/null; tar --version > /dev/null; chmod --version > /dev/null; rm --version > /dev/null
    cat "$tarball" > /dev/null
}
for impl in "${impls[@]}" check; do mkdir -p "$work/mnt-$impl"; done

# ---------------------------------------------------------------------------------------------
# Preflight: the three show the generated lower stack the same way, and as generated.
for impl in "${impls[@]}"; do
    m=$work/mnt-$impl; fresh
    mount_impl "$impl" "$m" "$work/run/upper" "$work/run/work"
    got=$(guarded check_initial "$m") || die "$impl: reading the lower stack failed"
    unmount_impl "$m"
    [[ $got == "$expected_initial" ]] || die "$impl shows the lower stack differently from how it was generated ($got, expected $expected_initial)"
done
echo "preflight: all three show the generated lower stack as generated" >&2

# ---------------------------------------------------------------------------------------------
declare -A samples notes
for ((r = 1; r <= runs; r++)); do
    for wl in $workloads; do
        [[ -n ${steps[$wl]:-} ]] || die "unknown workload $wl (known: ${!steps[*]})"
        for impl in "${impls[@]}"; do
            m=$work/mnt-$impl; fresh
            mount_impl "$impl" "$m" "$work/run/upper" "$work/run/work"
            line="run $r $impl:"
            for step in ${steps[$wl]}; do
                drop_caches
                ms=$(timed "step_$step" "$m")
                got=$(guarded "check_$step" "$m") || die "$step on $impl gave a wrong result (see above)"
                [[ $got == "${expected[$step]}" ]] || die "$step on $impl: result $got, expected ${expected[$step]}"
                samples[$step.$impl]+="$ms "
                line+=" $step $ms ms"
            done
            unmount_impl "$m"
            # the upper as left on disk, read-only under kernel overlayfs (lowerdir=UPPER:LOWERS)
            mount_impl check "$work/mnt-check" "$work/run/upper" ""
            got=$(guarded "check_$step" "$work/mnt-check" 2>&1) || got="error: $got"
            unmount_impl "$work/mnt-check"
            if [[ $got != "${expected[$step]}" && $impl == fuse-overlayfs ]]; then
                # fuse-overlayfs marks a directory it creates opaque with extra entries (.wh..wh..opq,
                # a .wh..opq whiteout) that kernel overlayfs lists: read its upper with itself instead
                notes[$step]="fuse-overlayfs's upper after $step, mounted again under kernel overlayfs: $got (read back with fuse-overlayfs itself: as expected)"
                mount_impl fuse-overlayfs-ro "$work/mnt-check" "$work/run/upper" ""
                got=$(guarded "check_$step" "$work/mnt-check" 2>&1) || got="error: $got"
                unmount_impl "$work/mnt-check"
            fi
            [[ $got == "${expected[$step]}" ]] || die "the upper $impl left after $step reads wrong when mounted again: $got; expected ${expected[$step]}"
            echo "$line" >&2
        done
    done
done
rm -rf --one-file-system "$work/run"

# ---------------------------------------------------------------------------------------------
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / (b > 0 ? b : 0.1) }'; }
declare -A label=(
    [small]="1 copy-up $small small files (+1 byte)"
    [big]="2 copy-up one $size_mb MiB file (+1 byte)"
    [create]="3 create $files empty files"
    [chmod]="4 chmod $files files"
    [rm]="5 rm $files files"
    [untar]="6 untar $tar_mb MiB, $tar_count entries"
    [rmtree]="7 rm -rf $(( tree / 40 * 40 ))-entry lower tree"
)
echo
printf '%-38s %10s %10s %10s %14s %22s\n' workload "kernel ms" "strata ms" "f-o ms" "strata/kernel" "fuse-overlayfs/kernel"
for wl in $workloads; do
    for step in ${steps[$wl]}; do
        k=$(median <<< "${samples[$step.kernel]}"); s=$(median <<< "${samples[$step.strata]}")
        f=$(median <<< "${samples[$step.fuse-overlayfs]}")
        printf '%-38s %10s %10s %10s %14s %22s\n' "${label[$step]}" "$k" "$s" "$f" "$(ratio "$s" "$k")" "$(ratio "$f" "$k")"
    done
done
echo
for step in "${!notes[@]}"; do echo "note: ${notes[$step]}"; done
echo "median of $runs run(s); caches dropped before each timed step; every result checked"
echo "machine: $(nproc) CPUs, kernel $(uname -r), /tmp on $(findmnt -no FSTYPE -T /tmp) ($(findmnt -no SOURCE -T /tmp)); load average $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo "strata: $strata ($("$strata" --version 2>/dev/null || echo '?')); $(fuse-overlayfs --version 2>/dev/null | grep -m1 'fuse-overlayfs')"
