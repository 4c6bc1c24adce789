SUMMARY = "otalite: over-the-air A/B update agent, a drop-in for mender-client"
DESCRIPTION = "Installs Mender Artifacts into the inactive rootfs slot, \
streaming, and runs as a daemon against a Mender server. Reads the \
reference client's configuration and state files."
HOMEPAGE = "https://example.invalid/otalite"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

SRC_URI = "git://example.invalid/otalite.git;protocol=https;branch=main;destsuffix=git"
# Pin a commit for a reproducible image; AUTOREV follows the branch.
SRCREV ?= "${AUTOREV}"
PV = "0.1.0+git"
S = "${UNPACKDIR}/git"

inherit cargo cargo-update-recipe-crates systemd

# The crates of the workspace's Cargo.lock (crate:// fetches: the build is
# offline). Regenerate with `cargo xtask yocto-crates` in the source tree
# or `bitbake -c update_crates otalite`.
require ${BPN}-crates.inc

# Build the binary's package (a workspace member); the lock file is the
# workspace's.
CARGO_SRC_DIR = "targets/linux"
CARGO_LOCK_SRC_DIR = "${S}"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/targets/linux/dist/systemd/otalite.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/targets/linux/dist/systemd/mender-client.service ${D}${systemd_system_unitdir}/
    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/targets/linux/dist/dbus/io.mender.AuthenticationManager.conf \
        ${S}/targets/linux/dist/dbus/io.mender.UpdateManager.conf ${D}${datadir}/dbus-1/system.d/
    install -d ${D}${docdir}/${BPN}
    install -m 0644 ${S}/targets/linux/dist/mender.conf.example ${D}${docdir}/${BPN}/
    install -d ${D}${datadir}/mender/modules/v3
    install -d ${D}${sysconfdir}/mender
    # The data directory on the data partition, as meta-mender's client has it.
    install -d ${D}${localstatedir}/lib
    ln -sf /data/mender ${D}${localstatedir}/lib/mender
    ln -sf otalite ${D}${bindir}/mender
}

PACKAGES =+ "${PN}-mender-compat"

FILES:${PN} += " \
    ${datadir}/dbus-1/system.d \
    ${datadir}/mender/modules/v3 \
    ${sysconfdir}/mender \
    ${localstatedir}/lib/mender \
"
FILES:${PN}-mender-compat = " \
    ${bindir}/mender \
    ${systemd_system_unitdir}/mender-client.service \
"

SYSTEMD_PACKAGES = "${PN} ${PN}-mender-compat"
SYSTEMD_SERVICE:${PN} = "otalite.service"
SYSTEMD_SERVICE:${PN}-mender-compat = "mender-client.service"
# Install both packages, enable one unit: they conflict (Conflicts= in the
# units). The compat unit is the one a Mender image expects.
SYSTEMD_AUTO_ENABLE:${PN} = "disable"
SYSTEMD_AUTO_ENABLE:${PN}-mender-compat = "enable"

RDEPENDS:${PN}-mender-compat = "${PN}"
# The compat package stands in for the reference client: `mender` on the
# PATH, mender-client.service. It provides the name, so an image or
# packagegroup asking for mender-client gets it (see
# PREFERRED_RPROVIDER_mender-client in the layer's README), and it cannot
# be installed beside the real one.
RPROVIDES:${PN}-mender-compat = "mender-client"
RCONFLICTS:${PN}-mender-compat = "mender-client"
RREPLACES:${PN}-mender-compat = "mender-client"
# otalite itself owns the same D-Bus names and /var/lib/mender state as
# mender-client 4.x's split packages. (No RCONFLICTS on mender-client here:
# it would hit the compat package's RPROVIDES. The real 3.x mender-client
# beside otalite fails do_rootfs on the shared D-Bus policy files.)
RCONFLICTS:${PN} = "mender-update mender-auth"
