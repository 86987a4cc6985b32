#!/usr/bin/env bash
# Install what building and testing Keywarden needs on a Debian 12 machine: the kernel source and
# its build tools (VM test kernel), QEMU, busybox and gpiod (VM initramfs), dbus-daemon (integration
# tests and demo). Idempotent: installs only what is missing. `cargo xtask` calls it when a tool is
# missing; CI calls it first. e2fsprogs: the VM's data partition image (mkfs.ext4); tzdata: the
# VM's UTC zone file.
set -euo pipefail
packages=(
    linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev cpio xz-utils kmod
    qemu-system-x86 busybox-static gpiod dbus-daemon dbus-bin dbus-system-bus-common e2fsprogs tzdata
    tmux  # keywarden-console's tests (send-keys, capture-pane) and the interactive host demo
    # policyd's notification tests: a real SMTP server (STARTTLS and TLS) on loopback
    python3 python3-aiosmtpd
    # offsite audit copy tests: a real rsyslog collector with TLS (ossl stream driver)
    rsyslog rsyslog-openssl
    # the appliance image (cargo xtask image / vm / image-repro): root file system, squashfs, EFI
    # system partition, GPT disk, GRUB, UEFI firmware for QEMU, factory flashing, the local
    # package repository's index
    mmdebstrap genimage squashfs-tools dosfstools mtools grub-efi-amd64-bin ovmf bmap-tools apt-utils
    sqlite3 # the records bench times each report against the sqlite3 CLI on the same file
    python3-venv  # recipes/lint.sh: oelint-adv (PyPI) in a cached venv for the Yocto layer's lint
    openssl jq  # keywarden-bundle's test of ota/verify-by-hand.sh (FORMAT.md's by-hand check)
    # keywarden-updated's boot backends, checked against the real tools: grub-editenv, fw_printenv
    # and fw_setenv, mkenvimage, and image/uboot/boot.cmd run in Debian's U-Boot under QEMU
    grub-common libubootenv-tool u-boot-tools u-boot-qemu qemu-system-arm
    # diagnostic bundles: journalctl, and systemd-journal-remote to write the test's journal files
    systemd systemd-journal-remote
    rauc  # keywarden-updated's install bench compares with RAUC installing the same payload
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "setup-host: installing ${missing[*]}" >&2
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
