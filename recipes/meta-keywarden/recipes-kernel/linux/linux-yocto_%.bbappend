# Keywarden's kernel options for qemux86-64, from the repository's image/kernel/keywarden.config:
# the one fragment the VM test harness and the appliance image use, read from the checkout this
# layer sits in (KEYWARDEN_SRCDIR, conf/layer.conf), not copied.
#
# That file is written against `make allnoconfig` (it lists everything the appliance needs).
# Under linux-yocto it is applied differently: as a configuration fragment merged on top of the
# BSP's own configuration (qemux86-64's definition in the kernel cache), so it adds what the
# appliance needs (gpio-sim, uinput, squashfs xz, the watchdogs, the namespaces and seccomp the
# units' sandboxing uses) and the BSP keeps everything else it enables. Options the BSP sets
# differently are reported by do_kernel_configcheck. linux-yocto only merges SRC_URI entries
# named *.cfg or *.scc, and the file is named .config, so files/keywarden.scc names it.
# nooelint: oelint.vars.noncoreoverride - the layer's reference machine is OE-core's qemux86-64
FILESEXTRAPATHS:prepend:qemux86-64 := "${THISDIR}/files:${KEYWARDEN_SRCDIR}/image/kernel:"
# nooelint: oelint.vars.noncoreoverride - the layer's reference machine is OE-core's qemux86-64
SRC_URI:append:qemux86-64 = " file://keywarden.scc file://keywarden.config"
