# GRUB modules Keywarden's grub.cfg (image/grub/grub.cfg) needs beyond OE-core's default
# GRUB_BUILDIN: squash4 to read /boot/vmlinuz from the squashfs root, regexp to find the A/B
# root on the disk GRUB started from. Only for the reference machine, like the kernel
# bbappend; a manufacturer's BSP adds the same line for its MACHINE (recipes/README.md).
# nooelint: oelint.vars.noncoreoverride - the layer's reference machine is OE-core's qemux86-64
GRUB_BUILDIN:append:qemux86-64 = " squash4 xzio regexp loadenv test echo"
