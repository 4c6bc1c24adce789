#!/usr/bin/env bash
# The real `mender` and otalite on the same cases, each on its own fresh fake
# device (device.sh: same slot size, device_type and artifact_name), comparing
# what can be observed: exit codes, the U-Boot env, slot B's bytes,
# show-artifact and show-provides. Needs root.
#
#   tests/refdevice/compare.sh [path-to-otalite]   # exit 0 = no unexplained difference
#
# Without an argument, otalite is built (cargo build --release -p otalite-linux)
# and ${CARGO_TARGET_DIR:-target}/release/otalite is used. CASES="11 15"
# runs only those cases. Log wording is never
# compared (README: a documented departure); stdout is compared only where it
# is the verb's result (show-artifact, show-provides). Set KEEP=1 to keep the
# workdirs and logs.
set -uo pipefail

HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
ROOT=$(cd "$HERE/../.." && pwd)
DEVICE="$HERE/device.sh"
MENDER=${MENDER:-mender}
DT=otalite-compare
SLOT_MIB=16
IMG_SIZE=$((4 << 20))

die() { echo "compare: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (device.sh needs loop devices and mount namespaces)"
for tool in "$MENDER" mender-artifact fw_printenv fw_setenv openssl jq xxd; do
    command -v "$tool" >/dev/null || die "$tool not installed"
done

if [ $# -ge 1 ]; then
    OTALITE=$(readlink -f -- "$1")
else
    (cd "$ROOT" && "${CARGO:-cargo}" build --release -p otalite-linux) || die "cargo build failed"
    TARGET=${CARGO_TARGET_DIR:-target}
    case $TARGET in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
    OTALITE="$TARGET/release/otalite"
fi
[ -x "$OTALITE" ] || die "no otalite binary at $OTALITE"

STARTED=$(date +%s.%N)
TMP=$(mktemp -d /tmp/refdevice-compare.XXXXXX)
LOGS="$TMP/logs"
WM="$TMP/dev-mender"
WO="$TMP/dev-otalite"
mkdir -p "$LOGS"

cleanup() {
    local rc=$?
    # Only these two workdirs' loop devices (device.sh checks the backing file).
    [ -e "$WM/loops" ] && { "$DEVICE" destroy "$WM" >/dev/null 2>&1 || echo "compare: destroy $WM failed" >&2; }
    [ -e "$WO/loops" ] && { "$DEVICE" destroy "$WO" >/dev/null 2>&1 || echo "compare: destroy $WO failed" >&2; }
    if losetup -n -l -O BACK-FILE 2>/dev/null | grep -qF "$TMP/"; then
        echo "compare: loop devices still attached to $TMP" >&2
        rc=1
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "compare: kept $TMP"; else rm -rf -- "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "compare: mender=$(command -v "$MENDER") otalite=$OTALITE in $TMP"

# --- artifacts, made once -------------------------------------------------
# A deterministic 4 MiB image: 2 MiB AES-CTR keystream (incompressible), a
# text pattern, and an end marker (to find the payload in an uncompressed
# artifact and corrupt it).
IMG="$TMP/rootfs.img"
MARKER="OTALITE-COMPARE-END-OF-IMAGE"
{
    head -c $((2 << 20)) /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 2>/dev/null
    yes "otalite compare: the same cases for mender and otalite" | head -c $(((2 << 20) - ${#MARKER}))
    printf '%s' "$MARKER"
} >"$IMG"
[ "$(stat -c %s "$IMG")" = "$IMG_SIZE" ] || die "image has the wrong size"

A="$TMP/art"
mkdir -p "$A"
write() { # <out> <mender-artifact write rootfs-image options...>
    local out=$1; shift
    mender-artifact write rootfs-image -f "$IMG" -o "$A/$out" "$@" >"$LOGS/artifact-$out.log" 2>&1 ||
        die "mender-artifact write $out failed: $(cat "$LOGS/artifact-$out.log")"
}
openssl ecparam -genkey -name prime256v1 -noout -out "$A/key.pem" 2>/dev/null || die "openssl ecparam"
openssl pkey -in "$A/key.pem" -pubout -out "$A/pub.pem" 2>/dev/null || die "openssl pkey -pubout"
write good.mender -t "$DT" -n release-2
write plain.mender -t "$DT" -n release-2 --compression none
write wrongdt.mender -t other-device -n release-2
write depends.mender -t "$DT" -n release-2 --artifact-name-depends other
write signed.mender -t "$DT" -n release-2 -k "$A/key.pem"
write xz.mender -t "$DT" -n release-2 --compression lzma

# State scripts: every Artifact* group and phase in the artifact, the
# Download ones (and Idle/Sync, which standalone never runs) on the rootfs.
# Each appends its name to $SLOG; it exits with the code written in
# $FAILS/<name> when that file exists (the file is removed first when the
# code is 21, so the retry succeeds).
SLOG="$TMP/scripts.log"
FAILS="$TMP/fail"
SCR="$TMP/scripts"
mkdir -p "$FAILS" "$SCR/artifact" "$SCR/rootfs"
script() { # <dir> <name>
    cat >"$1/$2" <<SCRIPT
#!/bin/sh
echo "$2" >>"$SLOG"
f="$FAILS/$2"
if [ -e "\$f" ]; then
    code=\$(cat "\$f")
    # "21": retry once (the file goes); "21+": always retry.
    [ "\$code" != 21 ] || rm -f "\$f"
    [ "\$code" != 21+ ] || code=21
    echo "$2 fails with \$code" >&2
    exit "\$code"
fi
exit 0
SCRIPT
    chmod 755 "$1/$2"
}
SCRIPT_ARGS=()
for g in ArtifactInstall ArtifactReboot ArtifactCommit ArtifactRollback ArtifactRollbackReboot ArtifactFailure; do
    for p in Enter Leave Error; do
        script "$SCR/artifact" "${g}_${p}_01"
        SCRIPT_ARGS+=(-s "$SCR/artifact/${g}_${p}_01")
    done
done
script "$SCR/artifact" ArtifactInstall_Enter_02_second
SCRIPT_ARGS+=(-s "$SCR/artifact/ArtifactInstall_Enter_02_second")
for g in Idle Sync Download; do
    for p in Enter Leave Error; do script "$SCR/rootfs" "${g}_${p}_01"; done
done
echo 3 >"$SCR/rootfs/version"
write scripts.mender -t "$DT" -n release-2 "${SCRIPT_ARGS[@]}"

# Corrupt plain.mender: flip one bit of the marker (the image's last bytes).
cp "$A/plain.mender" "$A/corrupt.mender"
mapfile -t HITS < <(grep -obaF "$MARKER" "$A/corrupt.mender" | cut -d: -f1)
[ "${#HITS[@]}" = 1 ] || die "marker found ${#HITS[@]} times in the uncompressed artifact"
OFF=$((HITS[0] + 10))
BYTE=$(xxd -s "$OFF" -l 1 -p "$A/corrupt.mender")
printf "$(printf '\\x%02x' $((16#$BYTE ^ 1)))" |
    dd of="$A/corrupt.mender" bs=1 seek="$OFF" conv=notrunc status=none
cmp -s "$A/plain.mender" "$A/corrupt.mender" && die "corruption did not change the artifact"

# --- the two devices ---------------------------------------------------------
for w in "$WM" "$WO"; do
    "$DEVICE" create "$w" "$SLOT_MIB" "$DT" release-1 >"$LOGS/create-$(basename "$w").log" 2>&1 ||
        die "device.sh create $w failed: $(cat "$LOGS/create-$(basename "$w").log")"
    cp "$w/upper/etc/mender/mender.conf" "$w/mender.conf.orig"
done

W_of() { if [ "$1" = mender ]; then echo "$WM"; else echo "$WO"; fi; }
BIN_of() { if [ "$1" = mender ]; then echo "$MENDER"; else echo "$OTALITE"; fi; }

# client <who> <tag> <verb and options...>: runs the client in its device; RC.
client() {
    local who=$1 tag=$2; shift 2
    "$DEVICE" run "$(W_of "$who")" -- "$(BIN_of "$who")" --no-syslog "$@" \
        >"$LOGS/$tag.$who.out" 2>"$LOGS/$tag.$who.err" </dev/null
    RC=$?
    echo "\$ $(BIN_of "$who") --no-syslog $* -> $RC" >>"$LOGS/$tag.$who.err"
}

# Observations (one word each).
envs() { # part/hex/upgrade_available/bootcount
    local w v val out=""
    w=$(W_of "$1")
    for v in mender_boot_part mender_boot_part_hex upgrade_available bootcount; do
        val=$(fw_printenv -c "$w/fw_env.config" -n "$v" 2>/dev/null) || val="-"
        out+="$val/"
    done
    echo "env=${out%/}"
}
slotb() { # does slot B start with the image?
    if cmp -s -n "$IMG_SIZE" "$IMG" "$(W_of "$1")/slot-b.img"; then echo "slotB=image"
    elif cmp -s -n "$IMG_SIZE" /dev/zero "$(W_of "$1")/slot-b.img"; then echo "slotB=zero"
    else echo "slotB=other"; fi
}
show() { # <who> <tag> show-artifact|show-provides
    client "$1" "$2" "$3"
    local out
    out=$(LC_ALL=C sort "$LOGS/$2.$1.out" | paste -sd, -)
    local rc=""; [ "$RC" = 0 ] || rc="(rc=$RC)"
    if [ "$3" = show-artifact ]; then echo "art=${out:-<none>}$rc"
    else echo "provides=${out:-<none>}$rc"; fi
}

# Fresh device: env, data and artifact_info as created, mender.conf restored,
# slot B zeroed (so "slotB=image" proves this install wrote it).
fresh() {
    local w; w=$(W_of "$1")
    "$DEVICE" reset "$w"
    cp "$w/mender.conf.orig" "$w/upper/etc/mender/mender.conf"
    dd if=/dev/zero of="$w/slot-b.img" bs=1M count="$SLOT_MIB" conv=notrunc,fsync status=none
}
# The bootloader's part of a reboot into the trial slot: bootcount=1.
boot_trial() { fw_setenv -c "$(W_of "$1")/fw_env.config" bootcount 1; }
set_verify_key() {
    local w; w=$(W_of "$1")
    jq --arg key "$A/pub.pem" '. + {ArtifactVerifyKey: $key}' "$w/mender.conf.orig" \
        >"$w/upper/etc/mender/mender.conf"
}

# --- cases: each prints one observation line for <who> ----------------------
case1() { # install good gzip artifact
    fresh "$1"; client "$1" c1-install install "$A/good.mender"
    echo "rc=$RC $(envs "$1") $(slotb "$1") $(show "$1" c1-show show-artifact)"
}
case2() { # then (after the trial boot) commit
    boot_trial "$1"; client "$1" c2-commit commit
    echo "rc=$RC $(envs "$1") $(show "$1" c2-show show-artifact) $(show "$1" c2-prov show-provides)"
}
case3() { # install + rollback
    fresh "$1"; client "$1" c3-install install "$A/good.mender"; local irc=$RC
    client "$1" c3-rollback rollback
    echo "install=$irc rollback=$RC $(envs "$1") $(show "$1" c3-show show-artifact)"
}
case4() { # commit / rollback with nothing in progress
    fresh "$1"; client "$1" c4-commit commit; local crc=$RC
    client "$1" c4-rollback rollback
    echo "commit=$crc rollback=$RC $(envs "$1") $(show "$1" c4-prov show-provides)"
}
case5() { # corrupted payload
    fresh "$1"; client "$1" c5-install install "$A/corrupt.mender"
    echo "rc=$RC $(envs "$1") $(show "$1" c5-show show-artifact)"
}
case6() { # wrong device type
    fresh "$1"; client "$1" c6-install install "$A/wrongdt.mender"
    echo "rc=$RC $(envs "$1") $(slotb "$1") $(show "$1" c6-show show-artifact)"
}
case7() { # artifact_name depends not met
    fresh "$1"; client "$1" c7-install install "$A/depends.mender"
    echo "rc=$RC $(envs "$1") $(slotb "$1") $(show "$1" c7-show show-artifact)"
}
case8() { # ArtifactVerifyKey configured: unsigned refused, signed accepted
    fresh "$1"; set_verify_key "$1"
    client "$1" c8-unsigned install "$A/good.mender"; local urc=$RC
    local uenv; uenv=$(envs "$1")
    client "$1" c8-signed install "$A/signed.mender"
    echo "unsigned=$urc ${uenv/env=/envAfterUnsigned=} signed=$RC $(envs "$1") $(slotb "$1")"
}
case9() { # install --reboot-exit-code
    fresh "$1"; client "$1" c9-install install --reboot-exit-code "$A/good.mender"
    echo "rc=$RC $(envs "$1") $(slotb "$1")"
}
case10() { # xz (lzma) artifact, then commit
    fresh "$1"; client "$1" c10-install install "$A/xz.mender"; local irc=$RC
    local ienv islot; ienv=$(envs "$1"); islot=$(slotb "$1")
    boot_trial "$1"; client "$1" c10-commit commit
    echo "install=$irc $ienv $islot commit=$RC $(show "$1" c10-show show-artifact)"
}

# Script cases: the rootfs scripts installed, $SLOG emptied, the named
# scripts made to fail; the observation is the run order, rc, env and name.
with_scripts() { # <who> <failing-script=code>...
    local who=$1 w f; shift
    fresh "$who"; w=$(W_of "$who")
    rm -rf "$w/upper/etc/mender/scripts" "$FAILS"/*
    cp -a "$SCR/rootfs" "$w/upper/etc/mender/scripts"
    for f in "$@"; do echo "${f#*=}" >"$FAILS/${f%%=*}"; done
    : >"$SLOG"
}
ran() { echo "ran=$(paste -sd, "$SLOG")"; : >"$SLOG"; }
case11() { # scripts: install + commit
    with_scripts "$1"; client "$1" c11-install install "$A/scripts.mender"; local irc=$RC
    local r1; r1=$(ran); boot_trial "$1"; client "$1" c11-commit commit
    echo "install=$irc ${r1} commit=$RC $(ran) $(envs "$1") $(show "$1" c11-show show-artifact)"
}
case12() { # scripts: install + rollback
    with_scripts "$1"; client "$1" c12-install install "$A/scripts.mender"; local irc=$RC
    local r1; r1=$(ran); client "$1" c12-rollback rollback
    echo "install=$irc ${r1} rollback=$RC $(ran) $(envs "$1") $(show "$1" c12-show show-artifact)"
}
script_fail_case() { # <who> <tag> <then: none|commit|rollback> <failing=code>...
    local who=$1 tag=$2 then=$3; shift 3
    with_scripts "$who" "$@"; client "$who" "$tag-install" install "$A/scripts.mender"; local irc=$RC
    local r1; r1=$(ran); local more=""
    case $then in
        commit) boot_trial "$who"; client "$who" "$tag-commit" commit; more="commit=$RC $(ran) " ;;
        rollback) client "$who" "$tag-rollback" rollback; more="rollback=$RC $(ran) " ;;
    esac
    echo "install=$irc ${r1} ${more}$(envs "$who") $(show "$who" "$tag-show" show-artifact) $(show "$who" "$tag-prov" show-provides)"
}
case13() { script_fail_case "$1" c13 none Download_Enter_01=1; }
case14() { script_fail_case "$1" c14 none Download_Leave_01=1; }
case15() { script_fail_case "$1" c15 none ArtifactInstall_Enter_01=1; }
case16() { script_fail_case "$1" c16 none ArtifactInstall_Enter_02_second=3; }
case17() { script_fail_case "$1" c17 none ArtifactInstall_Leave_01=1; }
case18() { script_fail_case "$1" c18 commit ArtifactCommit_Enter_01=1; }
case19() { script_fail_case "$1" c19 commit ArtifactCommit_Leave_01=1; }
case20() { script_fail_case "$1" c20 rollback ArtifactRollback_Enter_01=1; }
case21() { script_fail_case "$1" c21 none ArtifactInstall_Enter_01=1 ArtifactFailure_Enter_01=1; }
case22() { script_fail_case "$1" c22 none ArtifactInstall_Enter_01=1 ArtifactRollback_Leave_01=1; }
case23() { script_fail_case "$1" c23 commit ArtifactCommit_Enter_01=1 ArtifactRollback_Enter_01=1; }
case24() { script_fail_case "$1" c24 none ArtifactInstall_Error_01=1 ArtifactInstall_Leave_01=2; }
retry_conf() { # <who>: 1 s between retries, 3 s in all
    local w; w=$(W_of "$1")
    jq '. + {StateScriptRetryIntervalSeconds: 1, StateScriptRetryTimeoutSeconds: 3}' \
        "$w/mender.conf.orig" >"$w/upper/etc/mender/mender.conf"
}
case33() {
    with_scripts "$1" ArtifactInstall_Enter_01=21; retry_conf "$1"
    client "$1" c33-install install "$A/scripts.mender"
    echo "rc=$RC $(ran) $(envs "$1") $(show "$1" c33-show show-artifact)"
}
case34() {
    with_scripts "$1" ArtifactInstall_Enter_01=21+; retry_conf "$1"
    client "$1" c34-install install "$A/scripts.mender"
    echo "rc=$RC $(ran) $(envs "$1") $(show "$1" c34-show show-artifact)"
}
case25() { # scripts: a corrupted payload (Download_Error, nothing of the artifact's)
    with_scripts "$1"; client "$1" c25-install install "$A/corrupt.mender"
    echo "rc=$RC $(ran) $(envs "$1") $(show "$1" c25-show show-artifact)"
}
case26() { # scripts: the rootfs scripts' version file missing
    with_scripts "$1"; rm -f "$(W_of "$1")/upper/etc/mender/scripts/version"
    client "$1" c26-install install "$A/scripts.mender"
    echo "rc=$RC $(ran) $(envs "$1") $(show "$1" c26-show show-artifact)"
}
case27() { # scripts: a non-executable rootfs script
    with_scripts "$1"; chmod 644 "$(W_of "$1")/upper/etc/mender/scripts/Download_Enter_01"
    client "$1" c27-install install "$A/scripts.mender"
    echo "rc=$RC $(ran) $(envs "$1") $(show "$1" c27-show show-artifact)"
}

PASSED=0
FAILED=0
NOTES=()
# compare <n> <title> <expected-mender-observation or ''>
compare() {
    local n=$1 title=$2 expected=$3 m o verdict
    # CASES="11 15" runs only those (while working on one behaviour).
    if [ -n "${CASES:-}" ] && [[ " $CASES " != *" $n "* ]]; then return; fi
    m=$("case$n" mender)
    o=$("case$n" otalite)
    if [ "$m" = "$o" ]; then verdict=SAME; PASSED=$((PASSED + 1)); else verdict=DIFF; FAILED=$((FAILED + 1)); fi
    echo "case $n ($title): mender=<$m> otalite=<$o> $verdict"
    if [ -n "$expected" ] && [ "$m" != "$expected" ]; then
        NOTES+=("case $n: the reference did not do what this test expects: expected <$expected>, got <$m>")
        echo "  note: reference differs from the expected <$expected>"
    fi
    if [ "$verdict" = DIFF ]; then
        local who
        for who in mender otalite; do
            echo "  --- $who logs (case $n):"
            tail -n 4 "$LOGS"/c"$n"-*."$who".err 2>/dev/null | sed 's/^/    | /'
        done
    fi
}

CHK=$(sha256sum "$IMG" | cut -d' ' -f1)
PROV="artifact_name=release-2,rootfs-image.checksum=$CHK,rootfs-image.version=release-2"
compare 1 "install gzip" "rc=0 env=3/3/1/0 slotB=image art=release-1"
compare 2 "commit after trial boot" "rc=0 env=3/3/0/1 art=release-2 provides=$PROV"
compare 3 "install + rollback" "install=0 rollback=0 env=2/2/0/0 art=release-1"
compare 4 "commit/rollback with nothing in progress" "commit=2 rollback=2 env=2/2/0/0 provides=<none>"
compare 5 "corrupted payload" "rc=1 env=2/2/0/0 art=release-1"
compare 6 "wrong device type" "rc=1 env=2/2/0/0 slotB=zero art=release-1"
compare 7 "artifact_name depends not met" "rc=1 env=2/2/0/0 slotB=zero art=release-1"
compare 8 "ArtifactVerifyKey: unsigned, then signed" \
    "unsigned=1 envAfterUnsigned=2/2/0/0 signed=0 env=3/3/1/0 slotB=image"
compare 9 "install --reboot-exit-code" "rc=4 env=3/3/1/0 slotB=image"
compare 10 "xz artifact, then commit" "install=0 env=3/3/1/0 slotB=image commit=0 art=release-2"

compare 11 "scripts: install + commit" ""
compare 12 "scripts: install + rollback" ""
compare 13 "scripts: Download_Enter fails" ""
compare 14 "scripts: Download_Leave fails" ""
compare 15 "scripts: ArtifactInstall_Enter fails" ""
compare 16 "scripts: the second ArtifactInstall_Enter fails (exit 3)" ""
compare 17 "scripts: ArtifactInstall_Leave fails" ""
compare 18 "scripts: ArtifactCommit_Enter fails" ""
compare 19 "scripts: ArtifactCommit_Leave fails" ""
compare 20 "scripts: ArtifactRollback_Enter fails at rollback" ""
compare 21 "scripts: ArtifactInstall_Enter and ArtifactFailure_Enter fail" ""
compare 22 "scripts: ArtifactInstall_Enter and ArtifactRollback_Leave fail" ""
compare 23 "scripts: ArtifactCommit_Enter and ArtifactRollback_Enter fail" ""
compare 24 "scripts: ArtifactInstall_Leave and its Error script fail" ""
compare 25 "scripts: corrupted payload" ""
compare 26 "scripts: rootfs version file missing" ""
compare 27 "scripts: a rootfs script not executable" ""

# --- update modules (standalone) -------------------------------------------
# The shipped modules, unchanged, behind a logging wrapper installed as
# <share>/modules/v3/<type> on both devices (the overlay's upper dir): it
# appends its state to <workdir>/modcalls.log and execs the real module (a
# copy taken before the overlay hides it). The modules write into $OUT
# (shared: cases run one device after the other and start from an empty
# $OUT).
OUT="$TMP/modout"
REALMODS="$TMP/realmods"
mkdir -p "$REALMODS"
cp -a /usr/share/mender/modules/v3/. "$REALMODS/"
GEN=/usr/share/doc/mender-client/examples
printf 'single file payload\n' >"$A/sf-payload.txt"
chmod 640 "$A/sf-payload.txt"
(cd "$A" && bash "$GEN/single-file-artifact-gen" -n mod-sf-1 -t "$DT" -d "$OUT/sf" \
    -o "$A/sf.mender" sf-payload.txt -- --software-name sf >/dev/null 2>&1) ||
    (cd "$A" && bash "$GEN/single-file-artifact-gen" -n mod-sf-1 -t "$DT" -d "$OUT/sf" \
        -o "$A/sf.mender" sf-payload.txt >/dev/null 2>&1) || die "single-file-artifact-gen failed"
mkdir -p "$A/dirsrc/sub"
printf 'new a\n' >"$A/dirsrc/a.txt"; printf 'new b\n' >"$A/dirsrc/sub/b.txt"
bash "$GEN/directory-artifact-gen" -n mod-dir-1 -t "$DT" -d "$OUT/dir" \
    -o "$A/dir.mender" "$A/dirsrc" >/dev/null 2>&1 || die "directory-artifact-gen failed"
printf '#!/bin/sh\necho "script module ran" >%s/script-ran\n' "$OUT" >"$A/run-me.sh"
mender-artifact write module-image -T script -n mod-script-1 -t "$DT" -f "$A/run-me.sh" \
    -o "$A/script.mender" >/dev/null 2>&1 || die "mender-artifact (script) failed"
mender-artifact write module-image -T nosuch-module -n mod-nosuch-1 -t "$DT" -f "$A/run-me.sh" \
    -o "$A/nosuch.mender" >/dev/null 2>&1 || die "mender-artifact (nosuch) failed"
# single-file into a destination that cannot be written: ArtifactInstall fails.
printf 'x\n' >"$A/blocker"
(cd "$A" && bash "$GEN/single-file-artifact-gen" -n mod-sf-bad -t "$DT" -d "$OUT/blocker/sub" \
    -o "$A/sf-bad.mender" sf-payload.txt >/dev/null 2>&1) || die "single-file-artifact-gen (bad) failed"

mod_fresh() { # <who> <type...>: fresh device with the rootfs state scripts
    # (with_scripts), empty $OUT, the wrappers: module calls (M-<state>) and
    # scripts land in the same log, so the order around the calls shows.
    local who=$1 w t; w=$(W_of "$1"); shift
    with_scripts "$who"
    rm -rf "$OUT"; mkdir -p "$OUT"
    rm -rf "$w/upper/share/modules/v3"; mkdir -p "$w/upper/share/modules/v3"
    for t in "$@"; do
        printf '#!/bin/sh\necho "M-$1" >>%s\nexec %s/%s "$@"\n' "$SLOG" "$REALMODS" "$t" \
            >"$w/upper/share/modules/v3/$t"
        chmod 755 "$w/upper/share/modules/v3/$t"
    done
}
calls() { echo "calls=$(paste -sd, "$SLOG")"; : >"$SLOG"; }
outfiles() { # what the modules wrote
    echo "out=$(cd "$OUT" && find . -type f | LC_ALL=C sort | while read -r f; do
        printf '%s:%s:%s;' "$f" "$(stat -c %a "$f")" "$(sha256sum <"$f" | cut -c1-12)"; done)"
}
tree() { # the module work tree left behind
    local w; w=$(W_of "$1")
    if [ -e "$w/data/modules/v3/payloads/0000/tree" ]; then echo "tree=kept"; else echo "tree=gone"; fi
}
case28() { # single-file: install, then commit
    mod_fresh "$1" single-file
    client "$1" c28-install install "$A/sf.mender"; local irc=$RC
    local i; i="$(calls "$1") $(outfiles) $(tree "$1") $(show "$1" c28-show1 show-artifact)"
    client "$1" c28-commit commit
    echo "install=$irc $i commit=$RC $(calls "$1") $(tree "$1") $(show "$1" c28-show show-artifact) $(show "$1" c28-prov show-provides)"
}
case29() { # directory: install over existing files, then rollback
    mod_fresh "$1" directory
    mkdir -p "$OUT/dir"; printf 'old a\n' >"$OUT/dir/a.txt"
    client "$1" c29-install install "$A/dir.mender"; local irc=$RC
    local i; i="$(calls "$1") $(outfiles)"
    client "$1" c29-rollback rollback
    echo "install=$irc $i rollback=$RC $(calls "$1") $(outfiles) $(tree "$1") $(show "$1" c29-show show-artifact) $(show "$1" c29-prov show-provides)"
}
case30() { # script: no rollback support, committed at once; --reboot-exit-code
    mod_fresh "$1" script
    client "$1" c30-install install --reboot-exit-code "$A/script.mender"
    echo "rc=$RC $(calls "$1") $(outfiles) $(tree "$1") $(show "$1" c30-show show-artifact) $(show "$1" c30-prov show-provides)"
}
case31() { # single-file: ArtifactInstall fails (rollback, failure, cleanup)
    mod_fresh "$1" single-file
    cp "$A/blocker" "$OUT/blocker"
    client "$1" c31-install install "$A/sf-bad.mender"
    echo "rc=$RC $(calls "$1") $(tree "$1") $(show "$1" c31-show show-artifact) $(show "$1" c31-prov show-provides)"
}
case32() { # no module for the payload type
    mod_fresh "$1"
    client "$1" c32-install install "$A/nosuch.mender"
    echo "rc=$RC $(tree "$1") $(show "$1" c32-show show-artifact)"
}
compare 33 "scripts: ArtifactInstall_Enter asks for a retry (exit 21) once" ""
compare 34 "scripts: ArtifactInstall_Enter keeps asking past StateScriptRetryTimeoutSeconds" ""
compare 28 "module single-file: install + commit" ""
compare 29 "module directory: install + rollback" ""
compare 30 "module script: committed at once, --reboot-exit-code" ""
compare 31 "module single-file: ArtifactInstall fails" ""
compare 32 "module: no module for the payload type" ""

for note in "${NOTES[@]}"; do echo "compare: $note"; done
echo "compare: runtime $(awk -v a="$STARTED" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
echo "compare: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
