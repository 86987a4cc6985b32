#!/usr/bin/env python3
"""Check that meta-keywarden still agrees with the repository it builds (stdlib only).

bitbake cannot run here, so these are the facts a build would trip over, checked against the
checkout the layer sits in:
  - LIC_FILES_CHKSUM: every file://...;md5= entry matches the file's (lines') md5 today;
  - each recipe's crate (crates/<CARGO_SRC_DIR>) exists with a Cargo.toml and a src/main.rs;
  - every unit in a crate's systemd/ is in that recipe's SYSTEMD_SERVICE, and every unit named
    there exists;
  - every user, group and membership declared in crates/*/sysusers/*.conf is created by the
    recipe's useradd parameters (same primary group, groups, home and shell), and nothing more;
  - every ${S}/... path a recipe installs from exists;
  - the kernel bbappend's fragment (image/kernel/keywarden.config) exists;
  - the wic kickstart has the A/B layout: GPT names boot, rootA, rootB, data in that order with
    64, 256, 256 and 256 MiB, and the same names and sizes as image/genimage.cfg once that exists.
Exits 1 naming each problem.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYER = REPO / "recipes/meta-keywarden"
RECIPES = LAYER / "recipes-keywarden/keywarden"


def bb_vars(path: Path) -> dict[str, str]:
    """Plain `NAME op "value"` assignments of a recipe and the files it requires, joined."""
    text = path.read_text()
    for req in re.findall(r"^require\s+(\S+)", text, re.M):
        inc = path.parent / req
        if inc.exists() and not inc.name.endswith("-crates.inc"):
            text = inc.read_text() + "\n" + text
    text = re.sub(r"\\\n\s*", " ", text)
    out: dict[str, str] = {}
    for m in re.finditer(r'^([A-Za-z0-9_:${}\-]+)\s*(\?\?=|\?=|\+=|=\+|=|:=)\s*"(.*)"\s*$', text, re.M):
        name, op, value = m.groups()
        if op in ("+=", "=+") and name in out:
            out[name] = f"{out[name]} {value}" if op == "+=" else f"{value} {out[name]}"
        elif op in ("?=", "??=") and name in out:
            continue
        else:
            out[name] = value
    return out


def expand(value: str, bpn: str) -> str:
    return (
        value.replace("${PN}", bpn)
        .replace("${BPN}", bpn)
        .replace("${sbindir}", "/usr/sbin")
        .replace("${localstatedir}", "/var")
    )


def parse_sysusers(crate_dir: Path) -> tuple[dict[str, dict], set[str], set[tuple[str, str]]]:
    users: dict[str, dict] = {}
    groups: set[str] = set()
    members: set[tuple[str, str]] = set()
    for f in sorted((crate_dir / "sysusers").glob("*.conf")):
        for line in f.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = shlex.split(line)
            kind, name = fields[0], fields[1]
            if kind == "g":
                groups.add(name)
            elif kind == "u":
                users[name] = {"home": fields[4], "shell": fields[5]}
            elif kind == "m":
                members.add((name, fields[2]))
    return users, groups, members


def parse_useradd(params: str) -> dict[str, dict]:
    users: dict[str, dict] = {}
    for cmd in filter(None, (c.strip() for c in params.split(";"))):
        args = shlex.split(cmd)
        u = {"groups": set(), "user_group": False, "gid": None, "home": None, "shell": None}
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("--groups", "-G"):
                u["groups"] = set(args[i + 1].split(","))
                i += 1
            elif a in ("--gid", "-g"):
                u["gid"] = args[i + 1]
                i += 1
            elif a in ("--home-dir", "-d"):
                u["home"] = args[i + 1]
                i += 1
            elif a in ("--shell", "-s"):
                u["shell"] = args[i + 1]
                i += 1
            elif a in ("--comment", "-c"):
                i += 1
            elif a in ("--user-group", "-U"):
                u["user_group"] = True
            elif not a.startswith("-"):
                users[a] = u
            i += 1
    return users


def parse_groupadd(params: str) -> set[str]:
    return {shlex.split(c)[-1] for c in params.split(";") if c.strip()}


def check_recipe(bb: Path, problems: list[str]) -> None:
    bpn = bb.name.split("_")[0]
    v = bb_vars(bb)
    where = bb.relative_to(REPO)

    for entry in v.get("LIC_FILES_CHKSUM", "").split():
        m = re.match(r"file://([^;]+)(.*)", entry)
        if not m:
            continue
        params = dict(p.split("=", 1) for p in m.group(2).split(";") if "=" in p)
        path = REPO / m.group(1)
        if not path.exists():
            problems.append(f"{where}: LIC_FILES_CHKSUM names {m.group(1)}, which does not exist")
            continue
        lines = path.read_bytes().splitlines(keepends=True)
        begin = int(params.get("beginline", 1))
        end = int(params.get("endline", len(lines)))
        got = hashlib.md5(b"".join(lines[begin - 1 : end])).hexdigest()
        if got != params.get("md5"):
            problems.append(
                f"{where}: LIC_FILES_CHKSUM md5 for {m.group(1)} lines {begin}-{end} is "
                f"{params.get('md5')}, the checkout's is {got}"
            )

    crate = expand(v.get("KEYWARDEN_CRATE", "${BPN}"), bpn)
    crate_dir = REPO / "crates" / crate
    for need in ("Cargo.toml", "src/main.rs"):
        if not (crate_dir / need).exists():
            problems.append(f"{where}: builds crates/{crate}, which has no {need}")

    units = {p.name for p in (crate_dir / "systemd").glob("*.service")}
    listed = set(expand(v.get("SYSTEMD_SERVICE:${PN}", ""), bpn).split())
    for u in sorted(units - listed):
        problems.append(f"{where}: crates/{crate}/systemd/{u} is not in SYSTEMD_SERVICE")
    for u in sorted(listed - units):
        problems.append(f"{where}: SYSTEMD_SERVICE names {u}, not in crates/{crate}/systemd/")

    for rel in re.findall(r"\$\{S\}/([^\s\"'*]+)", bb.read_text()):
        if not (REPO / rel).exists():
            problems.append(f"{where}: installs ${{S}}/{rel}, which does not exist")

    want_users, want_groups, want_members = parse_sysusers(crate_dir)
    have_users = parse_useradd(expand(v.get("USERADD_PARAM:${PN}", ""), bpn))
    have_groups = parse_groupadd(v.get("GROUPADD_PARAM:${PN}", ""))
    for name in sorted(set(want_users) - set(have_users)):
        problems.append(f"{where}: sysusers user {name} is not created by USERADD_PARAM")
    for name in sorted(set(have_users) - set(want_users)):
        problems.append(f"{where}: USERADD_PARAM creates {name}, not in crates/{crate}/sysusers/")
    for name in sorted(set(want_users) & set(have_users)):
        want, have = want_users[name], have_users[name]
        # sysusers' `u NAME` takes an existing group of its name, or creates one.
        if not (have["user_group"] or have["gid"] == name):
            problems.append(f"{where}: {name}'s primary group should be {name}")
        for key in ("home", "shell"):
            if have[key] != want[key]:
                problems.append(f"{where}: {name}'s {key} is {have[key]}, sysusers says {want[key]}")
        want_supp = {g for u, g in want_members if u == name and g != name}
        have_supp = have["groups"] - {name}
        if want_supp != have_supp:
            problems.append(
                f"{where}: {name}'s groups are {sorted(have_supp)}, sysusers says {sorted(want_supp)}"
            )
    implicit = {n for n, u in have_users.items() if u["user_group"]}
    for g in sorted(want_groups - have_groups - implicit):
        problems.append(f"{where}: sysusers group {g} is not created by GROUPADD_PARAM")
    for g in sorted(have_groups - want_groups):
        problems.append(f"{where}: GROUPADD_PARAM creates {g}, not in crates/{crate}/sysusers/")


# The A/B layout (image/ builds the same disk): GPT partition name and size in MiB, in order.
AB_LAYOUT = [("boot", 64), ("rootA", 256), ("rootB", 256), ("data", 256)]


def mib(size: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG])(?:i?B)?", size.strip(), re.I)
    if not m:
        return None
    return float(m.group(1)) * {"K": 1 / 1024, "M": 1, "G": 1024}[m.group(2).upper()]


def wks_layout(text: str) -> list[tuple[str, float | None, str]]:
    """(part-name, size in MiB, the whole line) of each `part` line of a kickstart."""
    parts = []
    for line in text.splitlines():
        if not line.startswith("part "):
            continue
        name = re.search(r"--part-name[= ](\S+)", line)
        size = re.search(r"--fixed-size[= ](\S+)", line)
        parts.append((name.group(1) if name else "?", mib(size.group(1)) if size else None, line))
    return parts


def genimage_layout(text: str) -> list[tuple[str, float | None]]:
    """(name, size in MiB or None) of each `partition NAME { ... }` block of a genimage config."""
    parts = []
    for m in re.finditer(r"\bpartition\s+([A-Za-z0-9_-]+)\s*\{(.*?)\}", text, re.S):
        size = re.search(r"\bsize\s*=\s*\"?([0-9.]+\s*[KMG](?:i?B)?)", m.group(2), re.I)
        parts.append((m.group(1), mib(size.group(1)) if size else None))
    return parts


def check_layout(problems: list[str]) -> None:
    wks = LAYER / "wic/keywarden-ab.wks.in"
    parts = wks_layout(wks.read_text())
    got = [(n, s) for n, s, _ in parts]
    if got != [(n, float(s)) for n, s in AB_LAYOUT]:
        problems.append(f"{wks.relative_to(REPO)}: partitions {got}, the A/B layout is {AB_LAYOUT}")
    for name, _, line in parts:
        if name == "boot" and "--fstype=vfat" not in line:
            problems.append(f"{wks.relative_to(REPO)}: boot is not vfat")
        if name == "data" and ("--fstype=ext4" not in line or "--label data" not in line):
            problems.append(f"{wks.relative_to(REPO)}: data is not ext4 labelled data")
    genimage = REPO / "image/genimage.cfg"
    if genimage.exists():
        theirs = genimage_layout(genimage.read_text())
        if not theirs:
            problems.append("image/genimage.cfg: no `partition NAME { ... }` blocks found to compare")
        elif [n for n, _ in theirs] != [n for n, _ in got]:
            problems.append(
                f"image/genimage.cfg partitions {[n for n, _ in theirs]} differ from the wic "
                f"kickstart's {[n for n, _ in got]}"
            )
        else:
            for (name, size), (_, ours) in zip(theirs, got):
                if size is not None and size != ours:
                    problems.append(
                        f"partition {name}: {size:g} MiB in image/genimage.cfg, {ours:g} MiB in the wic kickstart"
                    )


def main() -> int:
    problems: list[str] = []
    recipes = sorted(RECIPES.glob("*.bb"))
    if not recipes:
        problems.append(f"no recipes in {RECIPES.relative_to(REPO)}")
    for bb in recipes:
        check_recipe(bb, problems)
    services = {bb.name.split("_")[0] for bb in recipes}
    for crate_dir in sorted((REPO / "crates").iterdir()):
        if (crate_dir / "systemd").is_dir() and crate_dir.name not in services:
            problems.append(f"crates/{crate_dir.name} ships units but has no recipe")

    bbappend = LAYER / "recipes-kernel/linux/linux-yocto_%.bbappend"
    if "${KEYWARDEN_SRCDIR}/image/kernel" not in bbappend.read_text():
        problems.append(f"{bbappend.relative_to(REPO)} does not read image/kernel/")
    if not (REPO / "image/kernel/keywarden.config").exists():
        problems.append("image/kernel/keywarden.config (the kernel fragment) does not exist")

    check_layout(problems)

    if problems:
        print("check-layer: meta-keywarden does not match the repository:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"check-layer: {len(recipes)} recipes agree with the checkout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
