#!/usr/bin/env bash
# Self-test of device.sh with the real `mender` client (needs root):
# create a device, install a rootfs-image artifact, check slot B, the boot env,
# commit, show-artifact, then destroy and check no loop device is left attached.
#
#   tests/refdevice/selftest.sh [mender-binary]     # exit 0 = PASS
set -uo pipefail

HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
DEVICE="$HERE/device.sh"
MENDER=${1:-mender}
DT=otalite-selftest
TMP=$(mktemp -d /tmp/refdevice-selftest.XXXXXX)
W="$TMP/dev"
FAILS=0

ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; FAILS=$((FAILS + 1)); }
check() { # <description> <command...>
    local what=$1; shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
envvar() { "$DEVICE" env "$W" | sed -n "s/^$1=//p"; }

cleanup() {
    "$DEVICE" destroy "$W" >/dev/null 2>&1 || true
    rm -rf -- "$TMP"
}
trap cleanup EXIT

command -v mender-artifact >/dev/null || { echo "FAIL: mender-artifact not installed"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "FAIL: must run as root"; exit 1; }

echo "refdevice selftest in $TMP"
"$DEVICE" create "$W" 32 "$DT" release-1 || { echo "FAIL: create"; exit 1; }

# An 8 MiB image: 4 MiB of random bytes, then 4 MiB of a repeated text pattern.
IMG="$TMP/rootfs.img"
{ head -c $((4 << 20)) /dev/urandom; yes "otalite refdevice selftest" | head -c $((4 << 20)); } >"$IMG"
mender-artifact write rootfs-image -t "$DT" -n release-2 -f "$IMG" -o "$TMP/a.mender" >/dev/null 2>&1 ||
    { echo "FAIL: mender-artifact write"; exit 1; }

read -r _ LOOP_A _ _ < <(grep '^a ' "$W/loops")
read -r _ LOOP_B _ _ < <(grep '^b ' "$W/loops")
check "loop devices back the slot files" \
    test "$(losetup -n -O BACK-FILE "$LOOP_A")" = "$W/slot-a.img" -a \
         "$(losetup -n -O BACK-FILE "$LOOP_B")" = "$W/slot-b.img"

check "inside: /dev/mmcblk0p3 is a block device of slot B's loop" \
    "$DEVICE" run "$W" -- sh -c "[ -b /dev/mmcblk0p3 ] && [ \"\$(stat -c %t:%T /dev/mmcblk0p3)\" = \"$(stat -c %t:%T "$LOOP_B")\" ]"
check "inside: host disk is invisible (/dev has no vda/sda/nvme)" \
    "$DEVICE" run "$W" -- sh -c '! ls /dev | grep -Eq "^(vd|sd|nvme|xvd)"'

echo "--- $MENDER install a.mender"
"$DEVICE" run "$W" -- "$MENDER" --no-syslog install "$TMP/a.mender" 2>&1 | sed 's/^/    | /'
rc=${PIPESTATUS[0]}
check "mender install exits 0 (rc=$rc)" test "$rc" = 0

SIZE=$(stat -c %s "$IMG")
check "slot-b.img starts with the image bytes" cmp -n "$SIZE" "$IMG" "$W/slot-b.img"
check "$LOOP_B (mmcblk0p3) starts with the image bytes" cmp -n "$SIZE" "$IMG" "$LOOP_B"
check "slot A untouched (all zero)" cmp -n $((32 << 20)) "$W/slot-a.img" /dev/zero
check "env: mender_boot_part=3" test "$(envvar mender_boot_part)" = 3
check "env: mender_boot_part_hex=3" test "$(envvar mender_boot_part_hex)" = 3
check "env: upgrade_available=1" test "$(envvar upgrade_available)" = 1
check "env: bootcount=0" test "$(envvar bootcount)" = 0

# "Reboot" into slot B: a new namespace over the same files; the bootloader
# would set bootcount=1 on the trial boot.
fw_setenv -c "$W/fw_env.config" bootcount 1
echo "--- $MENDER commit"
"$DEVICE" run "$W" -- "$MENDER" --no-syslog commit 2>&1 | sed 's/^/    | /'
rc=${PIPESTATUS[0]}
check "mender commit exits 0 (rc=$rc)" test "$rc" = 0
check "env: upgrade_available=0 after commit" test "$(envvar upgrade_available)" = 0
check "env: mender_boot_part=3 after commit" test "$(envvar mender_boot_part)" = 3
NAME=$("$DEVICE" run "$W" -- "$MENDER" --no-syslog show-artifact 2>/dev/null)
check "show-artifact = release-2 (got '$NAME')" test "$NAME" = release-2
check "host /etc/mender/artifact_info not created" test ! -e /etc/mender/artifact_info
check "host /etc/fw_env.config not created" test ! -e /etc/fw_env.config

"$DEVICE" reset "$W"
check "reset: mender_boot_part=2, upgrade_available=0" \
    test "$(envvar mender_boot_part)$(envvar upgrade_available)" = 20
NAME=$("$DEVICE" run "$W" -- "$MENDER" --no-syslog show-artifact 2>/dev/null)
check "reset: show-artifact = release-1 (got '$NAME')" test "$NAME" = release-1
OUT=$("$DEVICE" run "$W" -- "$MENDER" --no-syslog install "$TMP/a.mender" 2>&1)
check "re-install after reset exits 0" test $? = 0
check "re-install: mender_boot_part=3" test "$(envvar mender_boot_part)" = 3
echo "$OUT" | grep -F "optimized block-device writer" | sed 's/^/    | /'

"$DEVICE" destroy "$W"
check "destroy: no loop device backed by the workdir" \
    test -z "$(losetup -n -l -O BACK-FILE | grep -F "$W/" || true)"

if [ "$FAILS" = 0 ]; then echo "PASS: refdevice selftest"; exit 0; fi
echo "FAIL: refdevice selftest ($FAILS checks failed)"
exit 1
