SUMMARY = "Keywarden OTA updater"
DESCRIPTION = "keywarden-updated installs signed update bundles, checked against the fleet's \
               TUF repository, into the inactive A/B root slot, drives boot counting through \
               the GRUB or U-Boot environment, and commits a new system only after its boot \
               health check passes. It offers org.keywarden.Update1 on the system bus (root, \
               sandboxed)."

require keywarden.inc

inherit cargo cargo-update-recipe-crates systemd

SYSTEMD_SERVICE:${PN} = "keywarden-updated.service keywarden-health-check.service keywarden-bless-boot.service"

do_install:append() {
    install -D -m 0644 ${S}/crates/keywarden-updated/config/update.toml \
        ${D}${sysconfdir}/keywarden/update.toml
}

# The board's update.toml (slot devices, GRUB or U-Boot) is the BSP's to override with a
# bbappend; U-Boot boards also need libubootenv's fw_env.config and image/uboot/boot.cmd.
CONFFILES:${PN} = "${sysconfdir}/keywarden/update.toml"

RDEPENDS:${PN} += "dbus keywarden"
