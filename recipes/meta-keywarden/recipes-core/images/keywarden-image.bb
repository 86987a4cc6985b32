SUMMARY = "Keywarden appliance image: the services on systemd, read-only root, A/B disk"
DESCRIPTION = "The cabinet's image: keywarden-hwd, keywarden-policyd, keywarden-console \
               and the keywarden CLI on systemd, a read-only squashfs root with no package \
               manager, written by wic as the A/B disk image/ also builds: ESP (boot), \
               rootA, rootB, data."
LICENSE = "MIT"

inherit core-image features_check

# systemd is the init: the services are systemd units (Type=notify, watchdog, sandboxing).
# The distro chooses the init manager (INIT_MANAGER = "systemd", as the kas file sets it);
# building this image with another init fails here rather than at boot.
REQUIRED_DISTRO_FEATURES = "systemd"

# Only what the appliance runs. No package-management (and no debug-tweaks): nothing is
# installed or changed at run time, updates replace the whole inactive root.
IMAGE_FEATURES = "read-only-rootfs"
IMAGE_LINGUAS = ""
IMAGE_INSTALL = "\
    packagegroup-core-boot \
    kernel-image \
    keywarden-hwd \
    keywarden-policyd \
    keywarden-console \
    keywarden-updated \
    keywarden \
"

# The root file system is a squashfs (xz), written as it is into rootA and rootB by the wic
# kickstart; wic waits for it. The .wic.bmap is for factory flashing with bmaptool.
IMAGE_FSTYPES = "squashfs-xz wic wic.bmap"
# nooelint: oelint.vars.specific - the override is the image type (IMAGE_TYPEDEP:<type>), not a machine
IMAGE_TYPEDEP:wic = "squashfs-xz"
WKS_FILE = "keywarden-ab.wks.in"
WKS_FILE_DEPENDS:append = " grub-efi"
do_image_wic[depends] += "grub-efi:do_deploy"

# GRUB's configuration on the ESP: the repository's own image/grub/grub.cfg (A/B selection with
# boot counting from /EFI/BOOT/grubenv), the same file `cargo xtask image` installs.
KEYWARDEN_GRUB_CFG ?= "${KEYWARDEN_SRCDIR}/image/grub/grub.cfg"

# The ESP's wic plugin is bootimg-efi up to 5.1 (styhead) and bootimg_efi from 5.2 on.
KEYWARDEN_WIC_EFI_PLUGIN = "${@bb.utils.contains_any('LAYERSERIES_CORENAMES', 'scarthgap styhead', \
                              'bootimg-efi', 'bootimg_efi', d)}"

ROOTFS_POSTPROCESS_COMMAND += "keywarden_rootfs_layout"

# What the A/B layout expects inside each root: the kernel at /boot/vmlinuz (GRUB loads it
# from the root it boots), and the data partition (label "data") mounted at
# /var/lib/keywarden, the service's state directory. The mount point has to exist in the image:
# the root is read-only.
keywarden_rootfs_layout() {
    kernel=$(cd ${IMAGE_ROOTFS}/boot && ls ${KERNEL_IMAGETYPE}-* 2>/dev/null | head -n 1)
    if [ -z "$kernel" ]; then
        bbfatal "keywarden-image: no ${KERNEL_IMAGETYPE}-* in ${IMAGE_ROOTFS}/boot"
    fi
    ln -sf "$kernel" ${IMAGE_ROOTFS}/boot/vmlinuz
    install -d -m 0755 ${IMAGE_ROOTFS}${localstatedir}/lib/keywarden
    printf 'LABEL=data\t%s/lib/keywarden\text4\tdefaults,nodev,nosuid,noexec\t0\t2\n' \
        "${localstatedir}" >> ${IMAGE_ROOTFS}${sysconfdir}/fstab
}
