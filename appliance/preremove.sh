#!/bin/sh
# Pre-removal script of the smta package (deb prerm, rpm %preun).
# dpkg passes "remove" or "upgrade"; rpm passes 0 on removal and 1 on upgrade.
set -e

case "$1" in
remove | purge | 0)
    if [ -d /run/systemd/system ]; then
        # SIGTERM: sessions finish their transaction, queued mail stays in
        # the spool for a later install to deliver.
        systemctl stop smta.service || true
        systemctl disable smta.service >/dev/null || true
    fi
    ;;
esac

# The smta user, /var/spool/smta and /var/log/smta are kept on purpose:
# the spool may hold accepted mail that has not been delivered yet.
