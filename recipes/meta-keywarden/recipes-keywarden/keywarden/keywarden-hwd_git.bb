SUMMARY = "Keywarden hardware service: GPIO locks and sensors, badge readers, keypads"
DESCRIPTION = "keywarden-hwd is the only process that touches the cabinet's GPIO lines, \
               input devices and fingerprint module. It runs as the unprivileged user \
               keywarden-hw with device access granted to its groups by udev, and offers \
               org.keywarden.Hardware1 on the system bus."

require keywarden.inc

inherit cargo cargo-update-recipe-crates systemd useradd

USERADD_PACKAGES = "${PN}"

SYSTEMD_SERVICE:${PN} = "keywarden-hwd.service"

# As crates/keywarden-hwd/sysusers/keywarden-hwd.conf declares them: groups gpio, input and
# dialout (udev gives them the device nodes, see 60-keywarden.rules), and the user keywarden-hw
# with its own group and membership in the three. Groups that already exist (input and dialout
# usually do) are left as they are.
GROUPADD_PARAM:${PN} = "--system gpio; --system input; --system dialout"
USERADD_PARAM:${PN} = "--system --user-group --groups gpio,input,dialout \
                       --home-dir /nonexistent --no-create-home --shell ${sbindir}/nologin \
                       --comment 'Keywarden hardware service' keywarden-hw"

do_install:append() {
    # The board description is the BSP's: it installs /etc/keywarden/board.toml (its GPIO line
    # names and readers). The example the host demo uses is shipped for reference.
    install -D -m 0644 ${S}/crates/keywarden-hwd/boards/sim-demo.toml \
        ${D}${datadir}/keywarden/boards/sim-demo.toml
}

FILES:${PN} += "${datadir}/keywarden/boards"

RDEPENDS:${PN} += "dbus udev"
