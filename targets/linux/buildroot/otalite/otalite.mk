################################################################################
#
# otalite
#
################################################################################

OTALITE_VERSION = 0.1.0
OTALITE_SITE = https://example.invalid/otalite.git
OTALITE_SITE_METHOD = git
OTALITE_LICENSE = Apache-2.0
OTALITE_LICENSE_FILES = LICENSE

# The binary is the workspace member targets/linux; cargo-package vendors
# the workspace's crates (the download post-process) and runs
# `cargo install --path targets/linux` into $(TARGET_DIR)/usr.
OTALITE_SUBDIR = targets/linux

OTALITE_DIST = $(@D)/targets/linux/dist

define OTALITE_INSTALL_FILES
	$(INSTALL) -D -m 0644 $(OTALITE_DIST)/dbus/io.mender.AuthenticationManager.conf \
		$(TARGET_DIR)/usr/share/dbus-1/system.d/io.mender.AuthenticationManager.conf
	$(INSTALL) -D -m 0644 $(OTALITE_DIST)/dbus/io.mender.UpdateManager.conf \
		$(TARGET_DIR)/usr/share/dbus-1/system.d/io.mender.UpdateManager.conf
	$(INSTALL) -D -m 0644 $(OTALITE_DIST)/mender.conf.example \
		$(TARGET_DIR)/usr/share/doc/otalite/mender.conf.example
	$(INSTALL) -d -m 0755 $(TARGET_DIR)/usr/share/mender/modules/v3
	$(INSTALL) -d -m 0755 $(TARGET_DIR)/etc/mender
	$(INSTALL) -d -m 0755 $(TARGET_DIR)/var/lib
	ln -snf /data/mender $(TARGET_DIR)/var/lib/mender
endef
OTALITE_POST_INSTALL_TARGET_HOOKS += OTALITE_INSTALL_FILES

ifeq ($(BR2_PACKAGE_OTALITE_MENDER_COMPAT),y)
define OTALITE_INSTALL_COMPAT
	ln -sf otalite $(TARGET_DIR)/usr/bin/mender
endef
OTALITE_POST_INSTALL_TARGET_HOOKS += OTALITE_INSTALL_COMPAT
OTALITE_UNIT = mender-client.service
else
OTALITE_UNIT = otalite.service
endif

# Buildroot enables installed units through its systemd presets.
define OTALITE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(OTALITE_DIST)/systemd/$(OTALITE_UNIT) \
		$(TARGET_DIR)/usr/lib/systemd/system/$(OTALITE_UNIT)
endef

$(eval $(cargo-package))
