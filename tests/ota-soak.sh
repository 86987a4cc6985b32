#!/usr/bin/env bash
# OTA power-cut soak: the VM update test with 1,000 power cuts (QEMU killed at deterministic
# pseudo-random moments of an install and of the boot that commits it; after each, the cabinet
# must boot a working, committed slot, and the install must complete in the end). Hours, not
# for CI: `cargo xtask test` runs the same test with 20 cuts. Needs the image: cargo xtask image.
# Usage: tests/ota-soak.sh [CUTS]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo xtask vm-update-test --power-cuts "${1:-1000}"
