#!/usr/bin/env bash
# Builds (or finds in the cache) the tier-4 VM kit: a Debian bookworm root filesystem image
# with the real kernel tools (LVM-thin, cryptsetup, DRBD 8.4 in Debian's kernel), the kernel
# and initramfs to boot it, and an unpacked QEMU (apt-get download + dpkg -x: installing
# qemu-system-x86 would remove qemu-utils). Everything comes from deb.debian.org.
#
#   build-image.sh            prints the kit directory on its last stdout line
#
# The kit lives in ${BLOCKSTOR_VM_CACHE:-/var/cache/blockstor-vm}/<hash of this recipe>, so an
# unchanged recipe is built once; the agent binary and per-VM settings are NOT in the image
# (the harness hands them over on a small config disk at boot), so agent changes never
# rebuild it. Run as root on Debian 12.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mirror="${BLOCKSTOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${BLOCKSTOR_VM_CACHE:-/var/cache/blockstor-vm}"
packages=linux-image-amd64,initramfs-tools,udev,kmod,lvm2,thin-provisioning-tools,cryptsetup-bin,drbd-utils,openssh-server,e2fsprogs,util-linux,iproute2,procps,coreutils
# Only this script shapes the image: the VM's real init (init.sh) travels on the config disk.
key=$(sha256sum <"$here/build-image.sh" | cut -c1-16)
kit="$cache/$key"

log() { printf '[vm-image] %s\n' "$*" >&2; }

if [[ -f $kit/ready ]]; then
    log "cached kit $kit"
    echo "$kit"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { log "run me as root (debootstrap needs it)"; exit 1; }
for tool in debootstrap mke2fs apt-get dpkg; do
    command -v "$tool" >/dev/null || { log "missing $tool: run scripts/install-deps.sh"; exit 1; }
done

start=$SECONDS
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
cleanup() {
    # debootstrap mounts /proc etc. in the chroot; never let rm walk into a mount.
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# 1. QEMU, unpacked: the package and every dependency the host lacks.
log "unpacking qemu-system-x86 and its missing dependencies"
mkdir -p "$work/qemu" "$work/debs"
deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances qemu-system-x86 | grep -v '^ ' | grep -v '^<' | sort -u)
want=()
for p in $deps; do
    case $p in qemu-system-x86 | qemu-system-common | qemu-system-data | seabios) want+=("$p") ;;
    *) dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want+=("$p") ;;
    esac
done
(cd "$work/debs" && apt-get download -q "${want[@]}" >/dev/null)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/qemu"; done
rm -rf "$work/debs"
log "qemu unpacked ($((SECONDS - start))s)"

# 2. The root filesystem.
root="$work/root"
log "debootstrap bookworm ($packages)"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
log "debootstrap done ($((SECONDS - start))s)"

# PID 1 is a stub that runs init.sh from the config disk (/dev/vdb, the second virtio disk),
# so changing the VM's boot steps never rebuilds the image.
cat >"$root/sbin/blockstor-init" <<'STUB'
#!/bin/sh
mount -t proc proc /proc 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /mnt/cfg
mount -o ro -t ext2 /dev/vdb /mnt/cfg && cp /mnt/cfg/init.sh /sbin/blockstor-init-stage2
umount /mnt/cfg
exec /bin/bash /sbin/blockstor-init-stage2
STUB
chmod 0755 "$root/sbin/blockstor-init"
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/ssh/sshd_config.d/blockstor.conf" <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
CONF
echo 'root=/dev/vda / ext4 rw 0 1' >"$root/etc/fstab"
mkdir -p "$root/etc/blockstor" "$root/var/lib/blockstor"
# The initramfs must find the virtio root disk in any VM.
echo 'MODULES=most' >"$root/etc/initramfs-tools/conf.d/blockstor"
chroot "$root" update-initramfs -u -k all >/dev/null 2>&1 || chroot "$root" update-initramfs -c -k all >/dev/null
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
mkdir -p "$work/kit"
cp "$root/boot/vmlinuz-$kver" "$work/kit/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/kit/initrd.img"
echo "$kver" >"$work/kit/kernel-version"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
mv "$work/qemu" "$work/kit/qemu"

log "mke2fs -d root image"
mke2fs -q -t ext4 -L root -d "$root" "$work/kit/root.img" 2G
rm -rf "$root"
rm -rf "$kit"
mv "$work/kit" "$kit"
touch "$kit/ready"
log "kit ready in $((SECONDS - start))s: $kit (kernel $kver)"
echo "$kit"
