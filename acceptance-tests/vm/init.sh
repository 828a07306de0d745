#!/bin/bash
# PID 1 of the tier-4 test VMs (exec'd by the image's /sbin/blockstor-init stub from the
# config disk): no systemd, so a VM is up in seconds under TCG. Brings up udev, the two NICs,
# the per-VM config disk (/dev/vdb: hostname, IP, SSH host key, authorized_keys, agent binary and agent.toml), the
# kernel modules the agent drives, the LVM-thin pool vg0/tp on the disk with serial "data",
# and sshd; then reaps orphans forever. Progress goes to the serial console.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "[blockstor-init] $*" >/dev/console; }

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -o remount,rw /
mkdir -p /run/lock /run/lvm /run/cryptsetup /run/sshd

/lib/systemd/systemd-udevd --daemon
udevadm trigger --action=add --type=subsystems
udevadm trigger --action=add --type=devices
udevadm settle --timeout=60

cfg=/dev/vdb
mkdir -p /mnt/cfg
if mount -o ro "$cfg" /mnt/cfg; then
    install -m 0600 /mnt/cfg/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
    install -m 0644 /mnt/cfg/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub
    install -d -m 0700 /root/.ssh
    install -m 0600 /mnt/cfg/authorized_keys /root/.ssh/authorized_keys
    install -m 0755 /mnt/cfg/blockstor-agent /usr/local/bin/blockstor-agent
    install -D -m 0644 /mnt/cfg/agent.toml /etc/blockstor/agent.toml
    hostname "$(cat /mnt/cfg/hostname)"
    cat /mnt/cfg/hostname >/etc/hostname
    link_ip=$(cat /mnt/cfg/link-ip)
    umount /mnt/cfg
else
    say "no config disk (serial cfg)"
fi

# NICs by MAC: 52:54:00:00:00:xx is user-net (SSH), 52:54:00:99:00:xx the VM-to-VM link.
ip link set lo up
for dev in /sys/class/net/*; do
    name=${dev##*/}
    case $(cat "$dev/address") in
    52:54:00:00:00:*)
        ip link set "$name" up
        ip addr add 10.0.2.15/24 dev "$name"
        ip route add default via 10.0.2.2
        ;;
    52:54:00:99:00:*)
        ip link set "$name" up
        ip addr add "$link_ip/24" dev "$name"
        ;;
    esac
done

for m in dm_mod dm_crypt dm_thin_pool drbd; do modprobe "$m" || say "modprobe $m failed"; done

data=/dev/disk/by-id/virtio-data
vgchange -ay >/dev/null 2>&1
if ! vgs vg0 >/dev/null 2>&1; then
    pvcreate -q "$data" && vgcreate -q vg0 "$data" &&
        lvcreate -q --type thin-pool -l 90%FREE -n tp vg0 || say "creating vg0/tp failed"
fi

/usr/sbin/sshd || say "sshd failed"
say "ready: $(hostname) $link_ip kernel $(uname -r) drbd $(cat /proc/drbd 2>/dev/null | head -n1)"

trap '' TERM INT
while true; do
    wait -n 2>/dev/null || sleep 1
done
