#!/usr/bin/env bash
# Records Benchmarks/Thresholds/ from a fresh run: for every benchmark, the p90
# of the two stable metrics only, malloc counts and LayerSystem syscalls (never
# wall-clock times, which `make bench-check` must not compare). Run it when a
# change makes those counts differ on purpose, and commit the new files with it.
# Extra arguments go to the benchmark plugin (e.g. --target OverlayLookup).
set -euo pipefail
cd "$(dirname "$0")"
exec "${SWIFT:-swift}" package --disable-sandbox --allow-writing-to-package-directory \
    benchmark thresholds update --metric mallocCountTotal --metric layerSyscalls --no-progress "$@"
