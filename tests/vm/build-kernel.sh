#!/usr/bin/env bash
# Build the test/appliance kernel from Debian's linux-source package with the fragment in
# image/kernel/, or reuse a cached build. The cache lives outside the repository, keyed by the
# fragment, the linux-source version and this script, so an unchanged kernel is never rebuilt.
# Prints the path of the bzImage on stdout (last line).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
fragment="$repo/image/kernel/keywarden.config"
src_pkg=linux-source-6.1
tarball=/usr/src/$src_pkg.tar.xz
cache_root=${KEYWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keywarden}
[ -f "$tarball" ] || { echo "build-kernel: $tarball missing (apt-get install $src_pkg)" >&2; exit 1; }
src_version=$(dpkg-query -W -f='${Version}' "$src_pkg")
key=$( { cat "$fragment"; echo "$src_pkg=$src_version"; cat "$0"; } | sha256sum | cut -c1-16)
out="$cache_root/kernel/$key"
if [ -f "$out/bzImage" ]; then
    echo "build-kernel: cached $out/bzImage" >&2
    echo "$out/bzImage"
    exit 0
fi
work=$(mktemp -d "$cache_root/kernel-build.XXXXXX" 2>/dev/null || { mkdir -p "$cache_root"; mktemp -d "$cache_root/kernel-build.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
echo "build-kernel: building $src_pkg $src_version with $(basename "$fragment") (key $key) in $work" >&2
tar -C "$work" -xf "$tarball"
cd "$work/$src_pkg"
export KBUILD_BUILD_TIMESTAMP="1970-01-01" KBUILD_BUILD_USER=keywarden KBUILD_BUILD_HOST=keywarden
make -s ARCH=x86_64 KCONFIG_ALLCONFIG="$fragment" allnoconfig >&2
# Every option the fragment asks for must have survived dependency resolution.
missing=0
while IFS= read -r line; do
    case "$line" in CONFIG_*=*) grep -qxF "$line" .config || { echo "build-kernel: fragment option not in .config: $line" >&2; missing=1; } ;; esac
done < "$fragment"
[ "$missing" = 0 ] || exit 1
make -s ARCH=x86_64 -j"$(nproc)" bzImage >&2
mkdir -p "$out"
cp arch/x86/boot/bzImage "$out/bzImage.tmp" && cp .config "$out/config"
mv "$out/bzImage.tmp" "$out/bzImage"
echo "build-kernel: built $out/bzImage" >&2
echo "$out/bzImage"
