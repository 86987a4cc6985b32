#!/usr/bin/env bash
# Lint meta-keywarden and check it against the repository (bitbake cannot run here):
#   1. oelint-adv (PyPI, pinned in lint-requirements.txt, venv cached outside the repo) on
#      every .bb/.bbappend/.bbclass, once per release in LAYERSERIES_COMPAT; any error or
#      warning fails, info findings are counted and shown;
#   2. the kas files against kas's own schema (same venv), every remote repo pinned, the
#      layer paths present;
#   3. check-layer.py: licence checksums, crates, units, users and groups vs the checkout;
#   4. update-crates.py --check: keywarden-crates.inc matches Cargo.lock;
#   5. test_update_crates.py: --check really fails on a changed version, a removed, an added
#      crate, a changed checksum and a hand edit (temporary copies, nothing in the repo changes).
# Exits non-zero naming every step that failed. `cargo xtask test` runs it.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
layer="$here/meta-keywarden"
python=${KEYWARDEN_PYTHON:-/usr/bin/python3}
requirements="$here/lint-requirements.txt"

die() { echo "lint: $*" >&2; exit 2; }

[ -x "$python" ] || die "$python not found (Debian: apt-get install python3 python3-venv; tests/setup-host.sh installs both)"
"$python" -c 'import ensurepip, venv' 2>/dev/null \
    || die "$python has no venv/ensurepip module (Debian: apt-get install python3-venv; tests/setup-host.sh installs it)"

# The venv lives outside the repository, keyed by the pinned versions: a change to
# lint-requirements.txt gets a new venv, an unchanged one is reused as it is.
oelint_version=$(sed -n 's/^oelint-adv==//p' "$requirements")
key=$(sha256sum "$requirements" | cut -c1-12)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/keywarden/oelint-adv-$oelint_version-$key"
# A venv's scripts name their interpreter by absolute path, so it is built where it stays; the
# .complete marker is written last, so an interrupted install is redone, and flock keeps two
# runs from building it at once.
install_venv() {
    [ -e "$venv/.complete" ] && return 0
    echo "lint: installing oelint-adv $oelint_version into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2 \
        && "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
            --requirement "$requirements" >&2 \
        && touch "$venv/.complete"
}
mkdir -p "$(dirname "$venv")" || die "cannot create $(dirname "$venv")"
(
    flock 9 || exit 1
    install_venv
) 9>"$venv.lock" || die "could not install oelint-adv $oelint_version from PyPI into $venv (see above)"
got=$("$venv/bin/oelint-adv" --version 2>&1) || die "$venv/bin/oelint-adv does not run: $got"
[ "$got" = "oelint-adv $oelint_version" ] || die "$venv has '$got', expected oelint-adv $oelint_version"

failed=()

# 1. oelint-adv, once per release the layer claims.
releases=$(sed -n 's/^LAYERSERIES_COMPAT_meta-keywarden = "\(.*\)"/\1/p' "$layer/conf/layer.conf")
[ -n "$releases" ] || die "no LAYERSERIES_COMPAT_meta-keywarden in $layer/conf/layer.conf"
mapfile -t files < <(cd "$repo" && find recipes/meta-keywarden -type f \
    \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' \) | sort)
[ ${#files[@]} -gt 0 ] || die "no recipes found under $layer"
echo "lint: $got on ${#files[@]} files for releases: $releases"
out=$(mktemp) || die "mktemp failed"
trap 'rm -f "$out"' EXIT
for release in $releases; do
    # OELINT_SKIP_CONFIG: a developer's ~/.oelint.cfg must not change what CI sees.
    # Suppressed rules (each for the whole run):
    #  - oelint.vars.inconspaces: keywarden-crates.inc is generated in OE-core's own
    #    cargo-update-recipe-crates format, `SRC_URI += " \`, and must stay byte-identical to it;
    #  - oelint.vars.homepageping: it fetches HOMEPAGE over the network (the lint runs offline,
    #    and the project's URL is a placeholder).
    # Variables the rules do not know (the layer's own, and OE-core's GRUB_BUILDIN,
    # IMAGE_TYPEDEP, CARGO_LOCK_*) are declared in oelint-constants.json.
    (cd "$repo" && OELINT_SKIP_CONFIG=1 "$venv/bin/oelint-adv" --quiet --exit-zero --relpaths \
        --release "$release" \
        --constantmods "+$here/oelint-constants.json" \
        --suppress oelint.vars.inconspaces \
        --suppress oelint.vars.homepageping \
        "${files[@]}") >"$out" 2>&1
    errors=$(grep -c ':error:' "$out")
    warnings=$(grep -c ':warning:' "$out")
    infos=$(grep -c ':info:' "$out")
    other=$(grep -v -c -E ':(error|warning|info):' "$out")
    echo "lint: oelint-adv --release $release: $errors errors, $warnings warnings, $infos info"
    if [ "$errors" -gt 0 ] || [ "$warnings" -gt 0 ] || [ "$other" -gt 0 ]; then
        grep -v ':info:' "$out" | sed 's/^/  /'
        failed+=("oelint-adv ($release)")
    elif [ "$release" = "${releases%% *}" ] && [ "$infos" -gt 0 ]; then
        grep ':info:' "$out" | sed 's/^/  /'
    fi
done

# 2. The kas files: kas's schema, pinned remote repos, this repository's layers present.
"$venv/bin/python" - "$repo" "$here"/kas/*.yml <<'PY' || failed+=("kas files")
import sys
from pathlib import Path

import jsonschema
import yaml
import kas
from kas.configschema import CONFIGSCHEMA

repo, files = Path(sys.argv[1]), sys.argv[2:]
bad = []
for name in files:
    path = Path(name)
    cfg = yaml.safe_load(path.read_text())
    try:
        jsonschema.validate(cfg, CONFIGSCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "top level"
        bad.append(f"{path.name}: {e.message} (at {where})")
        continue
    for rid, r in (cfg.get("repos") or {}).items():
        r = r or {}
        if r.get("url") and not (r.get("commit") or r.get("tag")):
            bad.append(f"{path.name}: repo {rid} is not pinned (no commit or tag)")
        if not r.get("url") and not r.get("path"):
            for layer in r.get("layers") or {}:
                if not (repo / layer / "conf/layer.conf").exists():
                    bad.append(f"{path.name}: layer {layer} of repo {rid} has no conf/layer.conf")
for b in bad:
    print(f"kas: {b}", file=sys.stderr)
if bad:
    sys.exit(1)
print(f"lint: kas {kas.__version__} schema: {len(files)} kas file(s) valid, remote repos pinned")
PY

# 3-5. The layer against the checkout, the crates.inc against Cargo.lock, and the drift test.
"$python" "$here/check-layer.py" || failed+=("check-layer.py")
"$python" "$here/update-crates.py" --check || failed+=("update-crates.py --check")
if ! test_out=$("$python" "$here/test_update_crates.py" 2>&1); then
    echo "$test_out" | sed 's/^/  /'
    failed+=("test_update_crates.py")
else
    echo "lint: test_update_crates.py: $(echo "$test_out" | grep -E '^Ran [0-9]+ tests')"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "lint: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "lint: meta-keywarden OK"
