SUMMARY = "Keywarden command line: hardware, administration, audit export and verification"
DESCRIPTION = "keywarden is the cabinet's command line for technicians and administrators: \
               hardware status and control, the policy service's admin and console-session \
               commands, and audit export and verification."

require keywarden.inc

# No unit, bus policy or service user of its own: callers are authorised by their own groups
# (keywarden-admin, created by keywarden-policyd), so no systemd or useradd here.
inherit cargo cargo-update-recipe-crates
