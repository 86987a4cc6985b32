SUMMARY = "Keywarden front-panel console"
DESCRIPTION = "keywarden-console is the text display of keypad-and-display cabinets, on \
               tty1: a D-Bus client of keywarden-policyd running as the unprivileged user \
               keywarden-console."

require keywarden.inc

inherit cargo cargo-update-recipe-crates systemd useradd

USERADD_PACKAGES = "${PN}"

SYSTEMD_SERVICE:${PN} = "keywarden-console.service"

# As crates/keywarden-console/sysusers/keywarden-console.conf declares them: the group
# keywarden-console (keywarden-policyd declares it too; whichever package comes first creates
# it) and the user keywarden-console, whose group it is and who is a member of it.
GROUPADD_PARAM:${PN} = "--system keywarden-console"
USERADD_PARAM:${PN} = "--system --gid keywarden-console --groups keywarden-console \
                       --home-dir /nonexistent --no-create-home --shell ${sbindir}/nologin \
                       --comment 'Keywarden front-panel console' keywarden-console"

RDEPENDS:${PN} += "dbus keywarden-policyd"
