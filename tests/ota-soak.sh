#!/usr/bin/env bash
# OTA power-cut soak: the VM update test with 1,000 power cuts. Each cycle publishes a newer
# release and kills QEMU at a seeded pseudo-random moment of its install (two cycles in three)
# or of the boot that commits it; after each, the cabinet must boot a working, committed slot
# and the cut install must complete (resumed). The seed is printed; pass it again to replay.
# Hours (about a minute per cut under TCG), not for CI: `cargo xtask test` runs the same test
# with 20 cuts. Needs the image: cargo xtask image.
# Usage: tests/ota-soak.sh [CUTS [SEED]]   (default 1000, seed from the clock)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo xtask vm-update-test --power-cuts "${1:-1000}" ${2:+--seed "$2"}
