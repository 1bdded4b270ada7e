#!/usr/bin/env bash
# Soak: a writable Strata overlay over a generated 3-layer lower stack, under
# load for DURATION seconds (default 600) in PHASES phases (default 2). In each
# phase, all at once through the mount:
#   - stress-ng filesystem stressors with --verify (hdd, dir, dirmany, rename,
#     link, symlink, chmod, chown, access, dentry, fallocate, fpunch, seek,
#     filename, xattr, utime, sync-file, copy-file, readahead, iomix, fsize,
#     lockf, mknod, mmap, aio, getdent; all but dentry, dirmany, fpunch and
#     fsize check what they read back); any "fail:" line or failed stressor is
#     a verification error;
#   - fio, two jobs (4 KiB random writes, 128 KiB sequential writes) with
#     verify=crc32c checked as they go (verify_backlog), verify_fatal;
#   - readers over lower content: `find | md5sum` of every file and
#     `tar c | tar t`, each pass compared with what kernel overlayfs shows for
#     the same lowers.
# After each phase its files are removed and the kernel drops its dentries and
# inodes (echo 2 > drop_caches: FORGETs); then the daemon's RSS (VmRSS) and
# descriptors are taken, as they were after mount and a warm-up.
# Fails (non-zero) on:
#   - any verification error, or the daemon dying;
#   - descriptors other than pipes above the start level + FD_SLACK (default 4)
#     (libfuse keeps one splice pipe pair per worker thread while the thread
#     lives: pipes are only required to stay within 2 per thread);
#   - RSS growth over RSS_GROWTH_MB (default 192) in all, or over
#     RSS_LAST_PHASE_MB (default 32) during the last phase: memory that keeps
#     growing from phase to phase is a leak; a plateau is malloc's per-thread
#     arenas and caches (measured on a debug build, 600 s in 2 phases: +54 to
#     +74 MiB in all, +0.3 to +7 MiB of it in the second phase; metadata-heavy
#     load alone plateaus at about +23 MiB, data load at +2 MiB).
# Installs stress-ng and fio when missing (apt). Needs root.
#   DURATION=600 STRATA_BIN=.build/debug/strata scripts/soak.sh
# Only processes this script started are signalled (by the process group each
# job leads), and only the mounts it made are unmounted, also on failure or
# interruption.
set -euo pipefail
# A caller that blocks signals (a test runner's worker thread spawns with its
# mask) hands the mask down to everything here: stress-ng's --timeout alarm
# never fires, TERM never reaches the trap. Start again with none blocked.
if ! grep -qE '^SigBlk:\s*0+$' /proc/$$/status && [ -z "${SOAK_SIGNALS_UNBLOCKED:-}" ]; then
    export SOAK_SIGNALS_UNBLOCKED=1
    exec python3 -c 'import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])' \
        bash "$0" "$@"
fi
here=$(cd "$(dirname "$0")/.." && pwd)
strata=${STRATA_BIN:-$here/.build/debug/strata}
duration=${DURATION:-600}
phases=${PHASES:-2}
fd_slack=${FD_SLACK:-4}
rss_growth_mb=${RSS_GROWTH_MB:-192}
rss_last_phase_mb=${RSS_LAST_PHASE_MB:-32}
log() { echo "soak: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (mounts, drop_caches)"; exit 2; }
[ -x "$strata" ] || { log "no strata binary at $strata (set STRATA_BIN)"; exit 2; }
strata=$(realpath "$strata")
if ! command -v stress-ng >/dev/null || ! command -v fio >/dev/null; then
    log "installing stress-ng and fio"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng fio >/dev/null
fi

work=$(mktemp -d /tmp/strata-soak.XXXXXX)
m=$work/m k=$work/k
mkdir -p "$work"/{l0,l1,l2,u,w,m,k}
cd "$work"   # whatever a tool leaves in its working directory goes with the rest
groups=()        # process groups of the running jobs started here (each job leads its own)
mounts=()        # mountpoints mounted here
cleanup() {
    local rc=$?
    for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
    for g in "${groups[@]}"; do wait "$g" 2>/dev/null || true; done
    for mp in "${mounts[@]}"; do
        if mountpoint -q "$mp"; then
            if [ "$mp" = "$m" ]; then "$strata" unmount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
            else umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; fi
        fi
    done
    rm -rf --one-file-system "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Starts "$@" in the background as the leader of a new process group; records the group.
start() { setsid "$@" & groups+=($!); }

# Lower stack: data/ (read by the readers, never written), shadowed names, whiteouts, symlinks.
python3 - "$work" <<'PY'
import os, sys, random
work = sys.argv[1]
random.seed(5)
for layer in range(3):
    root = f"{work}/l{layer}"
    for i in range(900):
        d = f"{root}/data/d{i % 40:02d}/s{i % 7}"
        os.makedirs(d, exist_ok=True)
        name = f"f{i}" if random.random() < 0.3 else f"l{layer}-f{i}"
        size = random.choice([0, 10, 300, 4096, 70000]) if i % 150 else 3 << 20
        with open(f"{d}/{name}", "wb") as f: f.write(os.urandom(size))
        if i % 97 == 0: os.symlink(name, f"{d}/link-{layer}-{i}")
    if layer < 2:   # whiteouts in the upper two layers hide names of the ones below
        for i in range(0, 900, 61):
            p = f"{root}/data/d{i % 40:02d}/s{i % 7}/f{i + 1}"
            if not os.path.lexists(p): os.mknod(p, 0o020000, 0)
PY
lowers="$work/l0:$work/l1:$work/l2"

# The readers' expected answers, from kernel overlayfs over the same lowers (read-only).
checksum() { (cd "$1/data" && find . -type f -print0 | sort -z | xargs -0 md5sum | md5sum | cut -d' ' -f1); }
entries() { tar cf - -C "$1" data | tar tf - | wc -l; }
mount -t overlay overlay -o "lowerdir=$lowers" "$k"; mounts+=("$k")
expected_sum=$(checksum "$k"); expected_entries=$(entries "$k")
umount "$k"

"$strata" mount --lower "$lowers" --upper "$work/u" --work "$work/w" "$m"; mounts+=("$m")
device=$(awk -v mp="$(realpath "$m")" '$5 == mp { print $3 }' /proc/self/mountinfo | tail -1)
pid=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["pid"] if r["mountpoint"]==sys.argv[2] else "")' \
    "/run/strata/mounts/$device.json" "$(realpath "$m")")
[ -n "$pid" ] || { log "no daemon registered for $m"; exit 1; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }
threads() { awk '/^Threads/ { print $2 }' "/proc/$pid/status"; }
pipe_fds() { find "/proc/$pid/fd" -mindepth 1 -lname 'pipe:*' | wc -l; }
plain_fds() { echo $(( $(find "/proc/$pid/fd" -mindepth 1 | wc -l) - $(pipe_fds) )); }
settle() {   # the kernel forgets its dentries and inodes; wait until the daemon's descriptors stop falling
    local previous=-1 now
    for _ in $(seq 20); do
        sync; echo 2 > /proc/sys/vm/drop_caches; sleep 0.5
        now=$(plain_fds); [ "$now" = "$previous" ] && break; previous=$now
    done
}

# Warm-up: read everything once, write and remove a little.
[ "$(checksum "$m")" = "$expected_sum" ] || { log "the merged view differs from kernel overlayfs before the load"; exit 1; }
mkdir "$m/warm" && cp -r "$m/data/d00" "$m/warm/" && rm -rf "$m/warm"
settle
resources=("$(rss) $(plain_fds) $(pipe_fds) $(threads)")
log "daemon $pid after mount and warm-up: VmRSS ${resources[0]%% *} KiB; $(( duration / phases )) s of load, $phases times"

cat > "$work/fio.job" <<EOF
[global]
directory=$m/fio
time_based
runtime=RUNTIME
verify=crc32c
verify_backlog=256
verify_fatal=1
verify_state_save=0
[randwrite]
rw=randwrite
bs=4k
size=48M
[seqwrite]
rw=write
bs=128k
size=48M
EOF
reader() {   # $1: find or tar, $2: phase
    local passes=0 bad=0
    while [ "$(date +%s)" -lt "$end" ]; do
        if [ "$1" = find ]; then [ "$(checksum "$m")" = "$expected_sum" ] || bad=$((bad + 1))
        else [ "$(entries "$m")" = "$expected_entries" ] || bad=$((bad + 1)); fi
        passes=$((passes + 1))
    done
    echo "$passes $bad" > "$work/reader-$1.$2"
}

problems=0 stress_failures=0 stress_reports=0 stress_exits="" fio_errors=0 fio_written=0 fio_verified=0 reader_passes=0 reader_bad=0

# One phase of load: everything at once for $1 seconds, then its files removed and
# the kernel's inodes forgotten. Adds to the counters, appends the resources.
phase() {
    local seconds=$1 n=$2
    mkdir -p "$m/stress" "$m/fio"
    end=$(( $(date +%s) + seconds ))
    start stress-ng --temp-path "$m/stress" --timeout "${seconds}s" --verify --metrics-brief \
        --hdd 1 --hdd-bytes 128M --dir 1 --dirmany 1 --rename 1 --link 1 --symlink 1 --chmod 1 --chown 1 --access 1 \
        --dentry 1 --fallocate 1 --fallocate-bytes 64M --fpunch 1 --seek 1 --seek-size 64M --filename 1 --xattr 1 --utime 1 \
        --sync-file 1 --sync-file-bytes 32M --copy-file 1 --copy-file-bytes 128M --readahead 1 --readahead-bytes 32M \
        --iomix 1 --iomix-bytes 64M --fsize 1 --lockf 1 --mknod 1 --mmap 1 --mmap-bytes 32M --aio 1 --getdent 1 \
        > "$work/stress-ng.$n.log" 2>&1
    local stress_group=${groups[-1]}
    sed "s/^runtime=.*/runtime=$seconds/" "$work/fio.job" > "$work/fio.$n.job"
    start fio --output-format=json --output="$work/fio.$n.json" "$work/fio.$n.job"
    local fio_group=${groups[-1]}
    local environment="m='$m' end=$end expected_sum=$expected_sum expected_entries=$expected_entries work='$work'"
    start bash -c "$(declare -f checksum entries reader); $environment; reader find $n"
    start bash -c "$(declare -f checksum entries reader); $environment; reader tar $n"

    # Wait for every job (bounded: the load plus 5 minutes).
    local deadline=$(( end + 300 )) g status stress_status=1 fio_status=1
    for g in "${groups[@]}"; do
        while kill -0 "$g" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 1; done
        if kill -0 "$g" 2>/dev/null; then
            log "phase $n: job $g still running 5 minutes after the load should have ended"
            problems=$((problems + 1)); kill -KILL -- "-$g" 2>/dev/null || true
        fi
        status=0; wait "$g" || status=$?
        if [ "$g" = "$stress_group" ]; then stress_status=$status; elif [ "$g" = "$fio_group" ]; then fio_status=$status; fi
    done
    groups=()
    kill -0 "$pid" 2>/dev/null || { log "the daemon died during the load"; exit 1; }

    # Verification errors.
    local fails stressors
    fails=$(grep -c "fail:" "$work/stress-ng.$n.log" || true)
    stressors=$(grep -cE "metrc: \[[0-9]+\] [a-z-]+ +[0-9]+( +[0-9.]+){5} *$" "$work/stress-ng.$n.log" || true)
    stress_failures=$((stress_failures + fails)); stress_reports=$((stress_reports + stressors)); stress_exits+="$stress_status "
    if [ "$stress_status" != 0 ] || [ "$fails" != 0 ]; then
        log "phase $n: stress-ng exited with $stress_status, $fails failure lines:"
        { grep -E "fail:|error:" "$work/stress-ng.$n.log" || tail -5 "$work/stress-ng.$n.log"; } | head -20 >&2
        problems=$((problems + 1))
    fi
    local errors written verified
    read -r errors written verified < <(python3 -c '
import json, sys
try:
    jobs = json.load(open(sys.argv[1]))["jobs"]
    print(sum(j["error"] for j in jobs), sum(j["write"]["io_kbytes"] for j in jobs) // 1024, sum(j["read"]["io_kbytes"] for j in jobs) // 1024)
except Exception:
    print("unreadable 0 0")' "$work/fio.$n.json")
    if [ "$fio_status" != 0 ] || [ "$errors" != 0 ]; then
        log "phase $n: fio exited with $fio_status, errors: $errors"; tail -20 "$work/fio.$n.json" >&2
        problems=$((problems + 1)); fio_errors=$((fio_errors + 1))
    fi
    fio_written=$((fio_written + written)); fio_verified=$((fio_verified + verified))
    local kind passes bad
    for kind in find tar; do
        read -r passes bad < "$work/reader-$kind.$n" || { passes=0; bad=1; }
        reader_passes=$((reader_passes + passes)); reader_bad=$((reader_bad + bad))
        [ "$bad" = 0 ] || { log "phase $n: $kind readers saw other content in $bad of $passes passes"; problems=$((problems + 1)); }
    done
    [ "$(checksum "$m")" = "$expected_sum" ] || { log "phase $n: lower content differs after the load"; problems=$((problems + 1)); }

    # Resources once the load stopped and its files are gone.
    rm -rf "$m/stress" "$m/fio"
    settle
    resources+=("$(rss) $(plain_fds) $(pipe_fds) $(threads)")
}

for n in $(seq "$phases"); do
    phase $(( duration / phases )) "$n"
    log "after phase $n of $phases: VmRSS KiB, descriptors (pipes apart), pipes, threads: ${resources[-1]}"
done

read -r rss_start plain_start _ _ <<< "${resources[0]}"
read -r rss_before_last _ _ _ <<< "${resources[-2]}"
read -r rss_end plain_end pipes_end threads_end <<< "${resources[-1]}"
echo "soak: ${duration} s under load in ${phases} phases; verification errors: stress-ng ${stress_failures} (exits ${stress_exits% }; ${stress_reports} stressor reports), fio ${fio_errors} (${fio_written} MiB written, ${fio_verified} MiB read back and checked), readers ${reader_bad} differing of ${reader_passes} find and tar passes"
echo "soak: daemon $pid VmRSS ${rss_start} KiB at the start, $(for r in "${resources[@]:1}"; do printf '%s ' "${r%% *}"; done)KiB after each phase ($(( (rss_end - rss_start) / 1024 )) MiB growth, limit ${rss_growth_mb}; last phase $(( (rss_end - rss_before_last) / 1024 )) MiB, limit ${rss_last_phase_mb})"
echo "soak: descriptors (pipes apart) ${plain_start} -> ${plain_end} (slack ${fd_slack}); libfuse splice pipes ${pipes_end} for ${threads_end} threads"
if [ "$plain_end" -gt $(( plain_start + fd_slack )) ]; then log "descriptors did not return to the start level"; problems=$((problems + 1)); fi
if [ "$pipes_end" -gt $(( 2 * threads_end )) ]; then log "more pipes than two per thread"; problems=$((problems + 1)); fi
if [ $(( rss_end - rss_start )) -gt $(( rss_growth_mb * 1024 )) ]; then log "RSS grew by more than ${rss_growth_mb} MiB"; problems=$((problems + 1)); fi
if [ $(( rss_end - rss_before_last )) -gt $(( rss_last_phase_mb * 1024 )) ]; then log "RSS still grew by more than ${rss_last_phase_mb} MiB in the last phase"; problems=$((problems + 1)); fi
[ "$problems" = 0 ] || { log "FAILED ($problems problems)"; exit 1; }
echo "soak: passed"
