#!/usr/bin/env bash
# Verifies a Keywarden update bundle by hand, with openssl, jq and coreutils only, following
# ota/FORMAT.md ("Verifying a bundle by hand") step by step: no Keywarden code is involved, so it
# is an independent check of the format and of `keywarden bundle verify`.
#
# Usage: ota/verify-by-hand.sh BUNDLE TRUSTED-PUBLIC-KEY.pem
# Exit status 0 if the bundle verifies; 1 with the reason on standard error if not.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUNDLE TRUSTED-PUBLIC-KEY.pem" >&2; exit 2; }
bundle=$1 pub=$2
fail() { echo "verify-by-hand: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
u32() { od -An -tu4 --endian=little -j "$1" -N 4 "$bundle" | tr -d ' '; }
hexof() { od -An -tx1 -v | tr -d ' \n'; }
# extract OFFSET LENGTH: LENGTH bytes of the bundle from byte OFFSET (0-based).
extract() { dd if="$bundle" bs=1M iflag=skip_bytes,count_bytes skip="$1" count="$2" status=none; }

# 1. The header: magic, format version, manifest length (bytes 0-15).
[ "$(extract 0 8)" = KWBUNDLE ] || fail "bad magic: not a Keywarden bundle"
format=$(u32 8)
[ "$format" = 1 ] || fail "unsupported format version $format"
mlen=$(u32 12)
[ "$mlen" -ge 1 ] && [ "$mlen" -le 4194304 ] || fail "manifest length $mlen outside 1..4194304"

# 2. The signer the header names (bytes 16-47) must be the trusted key.
signer=$(extract 16 32 | hexof)
trusted=$(openssl pkey -pubin -in "$pub" -outform DER | tail -c 32 | hexof)
[ "$signer" = "$trusted" ] || fail "signed by $signer, not by the trusted key $trusted"

# 3. The signature (bytes 48-111) over the manifest's exact bytes (from byte 112).
extract 48 64 >"$work/signature.bin"
extract 112 "$mlen" >"$work/manifest.json"
[ "$(stat -c %s "$work/manifest.json")" = "$mlen" ] || fail "truncated manifest"
openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$work/manifest.json" \
    -sigfile "$work/signature.bin" || fail "bad signature"
m=$work/manifest.json
[ "$(jq .format "$m")" = 1 ] || fail "manifest format is not 1"
echo "version $(jq -r .version "$m") for $(jq -r .compatible "$m"), created $(jq -r .created "$m")"

# 4. The payloads, back to back after the manifest: whole sha256 and each chunk's.
offset=$((112 + mlen))
count=$(jq '.payloads | length' "$m")
for ((i = 0; i < count; i++)); do
    name=$(jq -r ".payloads[$i].name" "$m")
    size=$(jq -r ".payloads[$i].size" "$m")
    chunk_size=$(jq -r ".payloads[$i].chunk_size" "$m")
    extract "$offset" "$size" >"$work/payload"
    [ "$(stat -c %s "$work/payload")" = "$size" ] || fail "payload $name is truncated"
    whole=$(sha256sum <"$work/payload" | cut -d' ' -f1)
    [ "$whole" = "$(jq -r ".payloads[$i].sha256" "$m")" ] || fail "payload $name: sha256 mismatch"
    mkdir "$work/chunks"
    if [ "$size" -gt 0 ]; then
        split -b "$chunk_size" -d -a 8 "$work/payload" "$work/chunks/c"
        (cd "$work/chunks" && sha256sum c*) | cut -d' ' -f1 >"$work/got"
    else
        : >"$work/got"
    fi
    jq -r ".payloads[$i].chunks[]" "$m" >"$work/want"
    if ! diff "$work/want" "$work/got" >"$work/diff"; then
        first=$(grep -m1 '^[0-9]' "$work/diff" | sed 's/[^0-9].*//')
        fail "payload $name: chunk $((first - 1)) (0-based) does not match its hash"
    fi
    echo "payload $name: $(wc -l <"$work/want") chunks OK, sha256 $whole"
    rm -r "$work/chunks" "$work/payload"
    offset=$((offset + size))
done

# 5. Nothing after the last payload.
total=$(stat -c %s "$bundle")
[ "$total" = "$offset" ] || fail "bundle is $total bytes, the manifest accounts for $offset"
echo "bundle OK"
