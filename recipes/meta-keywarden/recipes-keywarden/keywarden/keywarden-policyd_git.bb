SUMMARY = "Keywarden policy and audit service"
SUMMARY:${PN}-network = "Outbound network for keywarden-policyd's alerts and notifications"
DESCRIPTION = "keywarden-policyd decides who may take which key, records every request in a \
               hash-chained audit trail in SQLite, and offers org.keywarden.Policy1 on the \
               system bus. It runs as the unprivileged user keywarden with its state in \
               /var/lib/keywarden."

require keywarden.inc

inherit cargo cargo-update-recipe-crates systemd useradd

USERADD_PACKAGES = "${PN}"

SYSTEMD_SERVICE:${PN} = "keywarden-policyd.service"

# As crates/keywarden-policyd/sysusers/keywarden-policyd.conf declares them: the user keywarden
# (own group, home /var/lib/keywarden, which is the data partition and is not created here) and
# the groups whose members may use the service over D-Bus.
GROUPADD_PARAM:${PN} = "--system keywarden-console; --system keywarden-admin"
USERADD_PARAM:${PN} = "--system --user-group \
                       --home-dir ${localstatedir}/lib/keywarden --no-create-home \
                       --shell ${sbindir}/nologin \
                       --comment 'Keywarden policy and audit service' keywarden"

do_install:append() {
    install -D -m 0644 ${S}/crates/keywarden-policyd/systemd/keywarden-policyd.service.d/network.conf \
        ${D}${systemd_system_unitdir}/keywarden-policyd.service.d/network.conf
}

# The drop-in that gives the service outbound network for [notify] alerts (SMTP, webhooks) is
# its own package: without it the unit has no network at all, which is right for a cabinet that
# sends nothing. Add keywarden-policyd-network to IMAGE_INSTALL when [notify] is configured.
PACKAGES =+ "${PN}-network"
FILES:${PN}-network += "${systemd_system_unitdir}/keywarden-policyd.service.d/network.conf"

RDEPENDS:${PN} += "dbus"
RDEPENDS:${PN}-network = "${PN}"
