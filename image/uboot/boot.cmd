# Keywarden boot selection (U-Boot, ARM boards): the U-Boot counterpart of image/grub/grub.cfg,
# with the same variables and the same algorithm, so keywarden-updated drives both through one
# trait. Compiled to boot.scr (mkimage -A arm64 -T script -C none -d boot.cmd boot.scr) and found
# by U-Boot's distro boot on the boot partition (partition 1), which sets devtype and devnum.
#
# The U-Boot environment (fw_env.config; preferably the redundant pair) holds, per slot S in {A, B}:
#   S_OK   1 = the slot holds an installed system that has not been marked bad; 0 = never boot it.
#   S_TRY  empty/unset = committed (boots with no write at all, so ordinary power cycles never
#          flip slots); 3/2/1 = tries left for an uncommitted slot; 0 = tries used up.
#   ORDER  the slots in order of preference, e.g. "B A" after an install into B.
# Unlike GRUB script, U-Boot has arithmetic (setexpr), so the try counter is decremented with it;
# the budget is still 3 and any other value counts as used up, exactly as grub.cfg reads it.
# Userspace (the updater, fw_setenv semantics) writes the same variables: after an install
# "S_OK=1 S_TRY=3 ORDER=S other"; after the health check passes "S_TRY=" (commit; an empty value
# unsets it); mark-bad "S_OK=0".
# A slot whose tries are used up is marked bad here, before the next slot in ORDER is tried,
# so a new system that never commits falls back to the old one by itself.
#
# saveenv writes the whole environment, so the script's own variables (kw_*) are unset before
# every saveenv and only the boot-counting variables change. U-Boot's hush has no reliable
# break/continue: a loop guard (kw_slot still empty) plays their part.

# Defaults for an environment that has never been written (the factory image boots A): the same
# as grub.cfg's and keywarden-updated's. Unlike GRUB's they live in the environment from here on,
# so the next saveenv stores them explicitly, which means the same.
if test -z "${ORDER}"; then setenv ORDER "A B"; fi
if test -z "${A_OK}"; then setenv A_OK 1; fi
if test -z "${B_OK}"; then setenv B_OK 0; fi

setenv kw_slot
for S in ${ORDER}; do
    if test -z "${kw_slot}"; then
        if test "${S}" = A; then
            setenv kw_ok "${A_OK}"; setenv kw_try "${A_TRY}"
        else
            setenv kw_ok "${B_OK}"; setenv kw_try "${B_TRY}"
        fi
        if test "${kw_ok}" = 1; then
            if test -z "${kw_try}"; then
                # Committed: boot it, write nothing.
                setenv kw_slot "${S}"
            elif test "${kw_try}" = 3 || test "${kw_try}" = 2 || test "${kw_try}" = 1; then
                # One try less, saved before booting, so a hang or crash still counts.
                setexpr kw_left ${kw_try} - 1
                if test "${S}" = A; then setenv A_TRY "${kw_left}"; else setenv B_TRY "${kw_left}"; fi
                setenv kw_ok; setenv kw_try; setenv kw_left
                saveenv
                setenv kw_slot "${S}"
            else
                # Tries used up (or garbage): this slot failed to commit. Never try it again.
                echo "keywarden: slot ${S} used up its tries without committing; marking it bad"
                if test "${S}" = A; then setenv A_OK 0; else setenv B_OK 0; fi
                setenv kw_ok; setenv kw_try; setenv kw_left
                saveenv
            fi
        fi
    fi
done
setenv kw_ok; setenv kw_try; setenv kw_left

if test -z "${kw_slot}"; then
    # No slot is bootable (both marked bad): better a system that might run than none. Boot the
    # first in ORDER and let the health check and the updater's status say what is wrong.
    echo "keywarden: no slot is marked bootable; trying the first in ORDER"
    for S in ${ORDER}; do
        if test -z "${kw_slot}"; then setenv kw_slot "${S}"; fi
    done
fi

# rootA is partition 2, rootB partition 3 (the same GPT layout as the x86 image).
if test "${kw_slot}" = A; then setenv kw_part 2; else setenv kw_part 3; fi
if test -z "${console}"; then setenv console ttyS0,115200; fi
echo "keywarden: booting slot ${kw_slot} (${devtype} ${devnum}:${kw_part})"
setenv bootargs "root=PARTLABEL=root${kw_slot} rootfstype=squashfs ro rootwait console=${console} panic=10 keywarden.slot=${kw_slot} quiet"

# Kernel and device tree come from the slot itself, so an update replaces both together (U-Boot
# needs CONFIG_FS_SQUASHFS to read the squashfs root). A slot whose kernel cannot be loaded (a
# file system U-Boot cannot read, no kernel) is marked bad, committed or not, as grub.cfg does,
# and the board resets, so the selection above picks the next slot in ORDER by itself; resetting
# without marking it would loop for good on a committed slot.
if load ${devtype} ${devnum}:${kw_part} ${kernel_addr_r} /boot/Image; then
    echo "keywarden: kernel loaded from slot ${kw_slot}"
else
    echo "keywarden: slot ${kw_slot} cannot be booted; marking it bad and resetting"
    if test "${kw_slot}" = A; then setenv A_OK 0; else setenv B_OK 0; fi
    setenv kw_slot; setenv kw_part; setenv bootargs
    saveenv
    reset
fi
if load ${devtype} ${devnum}:${kw_part} ${fdt_addr_r} /boot/dtb/${fdtfile}; then
    booti ${kernel_addr_r} - ${fdt_addr_r}
else
    # No device tree in the slot: the one U-Boot itself runs with.
    booti ${kernel_addr_r} - ${fdtcontroladdr}
fi
