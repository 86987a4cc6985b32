#!/usr/bin/env bash
# Adaptive update on real images: builds the appliance's root file system twice from HEAD, the
# second time with one crate changed (one log message of keywarden-hwd, so only that binary
# differs), then runs the install benchmark between them (`KW_BENCH_OLD`, `KW_BENCH_NEW`):
# what an install of the second fetches with the first in the active slot (goal <= 15% of the
# bundle). Needs root (the image build does). Not part of CI: two image builds take a while.
#
#   tests/bench-one-crate.sh            # work in target/bench-one-crate
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${KW_BENCH_WORK:-$repo/target/bench-one-crate}
src=$work/src
mkdir -p "$work"
git -C "$repo" worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
git -C "$repo" worktree add --detach "$src" HEAD
trap 'git -C "$repo" worktree remove --force "$src"' EXIT
# One target directory for both builds (and the repository's): the binaries do not carry the
# path of the tree they were built from.
ln -s "$repo/target" "$src/target"
cd "$src"
cargo xtask image --out "$work/base"
file=crates/keywarden-hwd/src/daemon/mod.rs
grep -q '"all locks driven locked"' "$file"
sed -i 's/"all locks driven locked"/"all locks driven locked (one-crate change)"/' "$file"
cargo xtask image --out "$work/changed"
# The installer measured is the repository's (with any uncommitted change), not the worktree's.
cd "$repo"
KW_BENCH_OLD="$work/base/rootfs.squashfs" KW_BENCH_NEW="$work/changed/rootfs.squashfs" \
    cargo bench -p keywarden-updated --bench install
