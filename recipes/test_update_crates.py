#!/usr/bin/env python3
"""update-crates.py --check must catch drift: run against modified copies of the real
Cargo.lock and crates.inc (in a temporary directory), each drift makes it exit 1 naming the
crate, and the unmodified pair passes. Run by recipes/lint.sh; stdlib unittest only."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "update-crates.py"
LOCK = HERE.parent / "Cargo.lock"
INC = HERE / "meta-keywarden/recipes-keywarden/keywarden/keywarden-crates.inc"


def registry_packages() -> list[dict]:
    with LOCK.open("rb") as f:
        return [p for p in tomllib.load(f)["package"] if "crates.io" in p.get("source", "")]


def package_block(text: str, name: str, version: str) -> re.Match:
    """The [[package]] block of name@version in Cargo.lock's text."""
    m = re.search(
        r'\[\[package\]\]\nname = "%s"\nversion = "%s"\n.*?(?=\n\[\[package\]\]|\Z)'
        % (re.escape(name), re.escape(version)),
        text,
        re.S,
    )
    assert m, f"{name} {version} not found in Cargo.lock"
    return m


class CheckDetectsDrift(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.lock_text = LOCK.read_text()
        self.inc_text = INC.read_text()
        # A crate with a single version in the lock, so its name identifies it.
        pkgs = registry_packages()
        names = [p["name"] for p in pkgs]
        self.pkg = next(p for p in pkgs if names.count(p["name"]) == 1)

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def check(self, lock_text: str, inc_text: str | None = None) -> subprocess.CompletedProcess:
        lock = self.dir / "Cargo.lock"
        inc = self.dir / "keywarden-crates.inc"
        lock.write_text(lock_text)
        inc.write_text(self.inc_text if inc_text is None else inc_text)
        return subprocess.run(
            [sys.executable, str(SCRIPT), "--check", "--lock", str(lock), "--inc", str(inc)],
            capture_output=True,
            text=True,
            check=False,
        )

    def assertFails(self, result: subprocess.CompletedProcess, *expected: str) -> None:
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        for e in expected:
            self.assertIn(e, result.stderr)

    def test_committed_inc_matches_cargo_lock(self) -> None:
        result = self.check(self.lock_text)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_regenerating_writes_the_committed_file(self) -> None:
        out = self.dir / "regenerated.inc"
        subprocess.run(
            [sys.executable, str(SCRIPT), "--lock", str(LOCK), "--inc", str(out)],
            check=True,
            capture_output=True,
        )
        self.assertEqual(out.read_text(), self.inc_text)

    def test_changed_version_is_a_stale_version(self) -> None:
        name, version = self.pkg["name"], self.pkg["version"]
        block = package_block(self.lock_text, name, version)
        bumped = block.group(0).replace(f'version = "{version}"', 'version = "999.0.0"', 1)
        lock = self.lock_text[: block.start()] + bumped + self.lock_text[block.end() :]
        self.assertFails(
            self.check(lock), f"stale version: {name} is {version} in the crates.inc, 999.0.0"
        )

    def test_removed_crate_is_an_extra_crate(self) -> None:
        name, version = self.pkg["name"], self.pkg["version"]
        block = package_block(self.lock_text, name, version)
        lock = self.lock_text[: block.start()] + self.lock_text[block.end() :].lstrip("\n")
        self.assertFails(self.check(lock), f"extra crate: {name} {version}")

    def test_crate_added_to_the_lock_is_a_missing_crate(self) -> None:
        lock = self.lock_text + (
            '\n[[package]]\nname = "zz-new-crate"\nversion = "1.2.3"\n'
            'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
            'checksum = "%s"\n' % ("ab" * 32)
        )
        self.assertFails(self.check(lock), "missing crate: zz-new-crate 1.2.3")

    def test_changed_checksum_is_a_wrong_checksum(self) -> None:
        name, version, old = self.pkg["name"], self.pkg["version"], self.pkg["checksum"]
        lock = self.lock_text.replace(f'checksum = "{old}"', f'checksum = "{"0" * 64}"', 1)
        self.assertFails(self.check(lock), f"wrong checksum: {name}-{version}")

    def test_every_problem_is_named(self) -> None:
        # Two drifts at once: both are reported, not just the first.
        a, b = registry_packages()[0], registry_packages()[-1]
        lock = self.lock_text
        for p in (a, b):
            block = package_block(lock, p["name"], p["version"])
            lock = lock[: block.start()] + lock[block.end() :].lstrip("\n")
        self.assertFails(
            self.check(lock),
            f"extra crate: {a['name']} {a['version']}",
            f"extra crate: {b['name']} {b['version']}",
        )

    def test_hand_edited_format_is_reported(self) -> None:
        inc = self.inc_text.replace("# from Cargo.lock\n", "# from the lock file\n")
        self.assertFails(self.check(self.lock_text, inc), "format:")


if __name__ == "__main__":
    unittest.main(verbosity=1)
