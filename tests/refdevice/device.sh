#!/usr/bin/env bash
# A fake A/B device for the real `mender` client (and for otalite), as in
# docs/test-device.md level 2. Needs root (loop devices, mount namespaces).
#
#   device.sh create  <workdir> <slot-size-MiB> <device_type> <artifact_name>
#   device.sh run     <workdir> -- <command...>
#   device.sh env     <workdir>            # fw_printenv -c <workdir>/fw_env.config
#   device.sh reset   <workdir>            # env and data back to "fresh", slots kept
#   device.sh destroy <workdir>            # detach this workdir's loop devices
#
# Layout of <workdir> (everything the device owns lives here):
#   slot-a.img slot-b.img   the two rootfs slots, attached to loop devices
#   loops                   "<slot> <loopdev> <major> <minor>" per attached slot
#   uboot.env               redundant U-Boot env (2 x 0x4000), made by mkenvimage
#   fw_env.config           host-side config for it (also seen as /etc/fw_env.config)
#   data/                   persistent /var/lib/mender (device_type, mender-store, ...)
#   upper/{etc,varlib,share,sbin}  overlay upper dirs (persist across runs = reboots)
#   ovl-work/...            overlay work dirs
#   bin/reboot              fake reboot, first in PATH and over /usr/sbin/reboot
#   reboot.log              one line per fake reboot call
#
# Inside `run`, the command sees /etc/mender/mender.conf (RootfsPartA=/dev/mmcblk0p2,
# RootfsPartB=/dev/mmcblk0p3), /etc/mender/artifact_info, /etc/fw_env.config,
# /var/lib/mender (= <workdir>/data), and a fresh tmpfs /dev holding only
# null zero full random urandom tty, the fd links and mmcblk0p2/p3 (block nodes of
# the loop devices). Nothing on the host is changed. Paths outside /dev stay
# reachable (the overlays show the host files underneath), so
# `device.sh run W -- /work/target/release/otalite install /work/a.mender` works.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
ENV_SIZE=0x4000

die() { echo "device.sh: $*" >&2; exit 1; }
usage() { sed -n '2,10p' "$SELF" | sed 's/^# \{0,1\}//' >&2; exit 2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (loop devices, mount namespace)"; }

abs_workdir() {
    [ -n "${1:-}" ] || usage
    readlink -f -- "$1"
}

# Print "loopdev" attached to exactly this backing file, if any (first match).
loop_for() {
    losetup -n -l -O NAME,BACK-FILE 2>/dev/null | while read -r name back; do
        # losetup appends " (deleted)" for removed backing files; compare exactly.
        if [ "$back" = "$1" ]; then echo "$name"; break; fi
    done
}

attach_slots() {
    local w=$1 slot dev maj min
    : >"$w/loops.tmp"
    for slot in a b; do
        dev=$(loop_for "$w/slot-$slot.img")
        [ -n "$dev" ] || dev=$(losetup -f --show -- "$w/slot-$slot.img")
        maj=$((16#$(stat -c %t "$dev")))
        min=$((16#$(stat -c %T "$dev")))
        echo "$slot $dev $maj $min" >>"$w/loops.tmp"
    done
    mv "$w/loops.tmp" "$w/loops"
}

# Redundant env: copy 0 active (flag 1), copy 1 identical but flag 0.
write_env() {
    local w=$1
    printf 'mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\nbootcount=0\n' >"$w/uboot.env.txt"
    mkenvimage -r -s "$ENV_SIZE" -o "$w/uboot.env.copy" "$w/uboot.env.txt"
    cat "$w/uboot.env.copy" "$w/uboot.env.copy" >"$w/uboot.env.new"
    printf '\0' | dd of="$w/uboot.env.new" bs=1 seek=$((ENV_SIZE + 4)) conv=notrunc status=none
    mv "$w/uboot.env.new" "$w/uboot.env"
    rm -f "$w/uboot.env.copy" "$w/uboot.env.txt"
}

cmd_create() {
    need_root
    [ $# -eq 4 ] || usage
    local w size dt name
    w=$(abs_workdir "$1"); size=$2; dt=$3; name=$4
    [[ "$size" =~ ^[0-9]+$ ]] && [ "$size" -gt 0 ] || die "slot size must be a positive number of MiB"
    [ ! -e "$w/loops" ] || die "$w already holds a device (destroy it first)"
    mkdir -p "$w"/{data,bin} "$w"/upper/{etc,varlib,share,sbin} "$w"/ovl-work/{etc,varlib,share,sbin}

    rm -f "$w/slot-a.img" "$w/slot-b.img"
    truncate -s "${size}M" "$w/slot-a.img" "$w/slot-b.img"

    write_env "$w"
    printf '# device.sh: redundant U-Boot env in a file\n%s 0x0 %s\n%s %s %s\n' \
        "$w/uboot.env" "$ENV_SIZE" "$w/uboot.env" "$ENV_SIZE" "$ENV_SIZE" >"$w/fw_env.config"
    fw_printenv -c "$w/fw_env.config" mender_boot_part >/dev/null ||
        die "fw_printenv cannot read the env it was given"

    # Files the agent finds in /etc (overlay upper dir, persists across runs).
    mkdir -p "$w/upper/etc/mender"
    cat >"$w/upper/etc/mender/mender.conf" <<EOF
{
  "RootfsPartA": "/dev/mmcblk0p2",
  "RootfsPartB": "/dev/mmcblk0p3",
  "ServerURL": "",
  "UpdatePollIntervalSeconds": 1800,
  "InventoryPollIntervalSeconds": 28800,
  "RetryPollIntervalSeconds": 300
}
EOF
    echo "artifact_name=$name" >"$w/upper/etc/mender/artifact_info"
    echo "$name" >"$w/artifact_name"
    cp "$w/fw_env.config" "$w/upper/etc/fw_env.config"
    echo "device_type=$dt" >"$w/data/device_type"

    # Fake reboot: record the call, do nothing else.
    cat >"$w/bin/reboot" <<EOF
#!/bin/sh
echo "reboot \$*" >>"$w/reboot.log"
exit 0
EOF
    chmod 755 "$w/bin/reboot"
    cp "$w/bin/reboot" "$w/upper/sbin/reboot"
    : >"$w/reboot.log"

    attach_slots "$w"
    echo "device created in $w ($(awk '{printf "%s=%s ", $1, $2}' "$w/loops"))"
}

cmd_env() {
    local w; w=$(abs_workdir "${1:-}")
    [ -f "$w/fw_env.config" ] || die "$w is not a device workdir"
    fw_printenv -c "$w/fw_env.config"
}

# Back to the state right after `create` (slot contents kept): fresh env,
# empty data dir except device_type, original artifact_info, no reboot log.
cmd_reset() {
    local w; w=$(abs_workdir "${1:-}")
    [ -f "$w/fw_env.config" ] && [ -f "$w/data/device_type" ] || die "$w is not a device workdir"
    write_env "$w"
    find "$w/data" -mindepth 1 -maxdepth 1 ! -name device_type -exec rm -rf -- {} +
    [ -f "$w/artifact_name" ] && echo "artifact_name=$(cat "$w/artifact_name")" >"$w/upper/etc/mender/artifact_info"
    : >"$w/reboot.log"
}

cmd_destroy() {
    need_root
    local w slot dev back; w=$(abs_workdir "${1:-}")
    for slot in a b; do
        [ -e "$w/slot-$slot.img" ] || continue
        # Detach every loop device backed by this workdir's slot file, nothing else.
        while dev=$(loop_for "$w/slot-$slot.img") && [ -n "$dev" ]; do
            back=$(losetup -n -O BACK-FILE "$dev")
            [ "$back" = "$w/slot-$slot.img" ] || die "refusing to detach $dev (backs $back)"
            losetup -d "$dev"
        done
    done
    rm -f "$w/loops"
}

cmd_run() {
    need_root
    local w; w=$(abs_workdir "${1:-}"); shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || usage
    [ -f "$w/fw_env.config" ] || die "$w is not a device workdir (run create first)"
    attach_slots "$w"   # re-attach if the machine was restarted
    # Make a relative program path absolute, so it resolves inside as outside.
    local prog=$1; shift
    if [[ "$prog" == */* ]]; then prog=$(readlink -f -- "$prog"); fi
    exec unshare --mount --propagation private -- "$SELF" __inner "$w" "$prog" "$@"
}

# Runs inside the new mount namespace.
cmd_inner() {
    local w=$1; shift
    mount --make-rprivate /

    # Overlays first (they must see the host /dev), then the fresh /dev.
    ovl() { # <target> <name>
        mount -t overlay "otalite-dev-$2" \
            -o "lowerdir=$1,upperdir=$w/upper/$2,workdir=$w/ovl-work/$2" "$1"
    }
    ovl /etc etc
    ovl /var/lib varlib
    # Debian ships /var/lib/mender as a symlink to /data/mender: replace it (in
    # the overlay only) by a directory, the mount point of <workdir>/data.
    if [ -L /var/lib/mender ] || [ ! -d /var/lib/mender ]; then rm -f /var/lib/mender; fi
    mkdir -p /var/lib/mender
    mount --bind "$w/data" /var/lib/mender
    mkdir -p /usr/share/mender
    ovl /usr/share/mender share
    ovl /usr/sbin sbin

    mount -t tmpfs -o mode=755,nosuid otalite-dev /dev
    mknod -m 666 /dev/null c 1 3
    mknod -m 666 /dev/zero c 1 5
    mknod -m 666 /dev/full c 1 7
    mknod -m 666 /dev/random c 1 8
    mknod -m 666 /dev/urandom c 1 9
    mknod -m 666 /dev/tty c 5 0
    ln -s /proc/self/fd /dev/fd
    ln -s /proc/self/fd/0 /dev/stdin
    ln -s /proc/self/fd/1 /dev/stdout
    ln -s /proc/self/fd/2 /dev/stderr
    local slot dev maj min part
    while read -r slot dev maj min; do
        case $slot in a) part=2 ;; b) part=3 ;; *) continue ;; esac
        mknod -m 660 "/dev/mmcblk0p$part" b "$maj" "$min"
    done <"$w/loops"

    export PATH="$w/bin:$PATH"
    exec "$@"
}

case "${1:-}" in
    create) shift; cmd_create "$@" ;;
    run) shift; cmd_run "$@" ;;
    env) shift; cmd_env "$@" ;;
    reset) shift; cmd_reset "$@" ;;
    destroy) shift; cmd_destroy "$@" ;;
    __inner) shift; cmd_inner "$@" ;;
    *) usage ;;
esac
