#!/usr/bin/env bash
# Mounts the example layers with Strata, shows the merged view, unmounts; then mounts
# them again under a writable upper, makes changes, and shows the diff and the upper.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
strata=${STRATA_BIN:-$here/.build/release/strata}
work=$(mktemp -d /tmp/strata-demo.XXXXXX)
cleanup() {
    if grep -q " $work/merged fuse.strata " /proc/self/mounts 2>/dev/null; then
        "$strata" unmount "$work/merged" || umount -l "$work/merged" || true
    fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
cp -a "$here/Examples/layers" "$work/layers"
mkdir -p "$work/layers/app/opt" "$work/merged"
if ! mknod "$work/layers/app/opt/legacy" c 0 0 2>/dev/null; then
    : > "$work/layers/app/opt/.wh.legacy"     # not root: use the OCI whiteout instead
fi

echo "== layers (top first): app, base"
echo "\$ strata mount --lower $work/layers/app:$work/layers/base $work/merged"
"$strata" mount --lower "$work/layers/app:$work/layers/base" "$work/merged"
echo
echo "== merged tree"
(cd "$work/merged" && find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./|/|')
echo
echo "== /etc/motd (from the app layer)"
cat "$work/merged/etc/motd"
echo "== /usr/bin/hello (from the base layer)"
"$work/merged/usr/bin/hello"
echo "== writing is refused: the mount has no upper layer"
if touch "$work/merged/new" 2>&1; then echo "unexpected: write succeeded"; exit 1; fi
echo
"$strata" unmount "$work/merged"
echo "== unmounted"
echo

# The same layers under a writable upper, as a container's root filesystem.
mkdir -p "$work/upper" "$work/work"
echo "\$ strata mount --lower $work/layers/app:$work/layers/base --upper $work/upper --work $work/work $work/merged"
"$strata" mount --lower "$work/layers/app:$work/layers/base" --upper "$work/upper" --work "$work/work" "$work/merged"
echo "hello from the container" > "$work/merged/hello.txt"
echo "# appended in the container" >> "$work/merged/etc/motd"   # copies the app layer's motd up
rm "$work/merged/usr/bin/hello"                                  # a base-layer file: leaves a whiteout
echo "== changes, as docker diff shows them (strata diff MOUNTPOINT)"
"$strata" diff "$work/merged"
echo "== the upper directory (kernel overlayfs format)"
(cd "$work/upper" && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
    if [ -c "$p" ]; then echo "${p#.}  (whiteout: char device $(stat -c '%t,%T' "$p"))"; else echo "${p#.}"; fi
done)
echo "== the layers are untouched: base still has /usr/bin/hello"
ls "$work/layers/base/usr/bin/hello"
"$strata" unmount "$work/merged"
echo "== unmounted"
