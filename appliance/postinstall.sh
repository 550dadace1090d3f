#!/bin/sh
# Post-installation script of the smta package (deb postinst, rpm %post).
# It must be idempotent: dpkg runs it on every install and upgrade.
set -e

# A system account with no login and no home of its own; it owns the
# spool and the log directory and nothing else.
if ! getent group smta >/dev/null; then
    groupadd --system smta
fi
if ! getent passwd smta >/dev/null; then
    useradd --system --gid smta --home-dir /var/spool/smta --no-create-home \
        --shell /usr/sbin/nologin --comment "smta mail relay" smta
fi

# The unit's ReadWritePaths require both directories to exist. 0750 keeps
# message bodies and accounting records away from other local users.
install -d -o smta -g smta -m 0750 /var/spool/smta /var/log/smta

# smta.conf may hold webhook credentials (header lines): readable by the
# daemon's group, not by everyone.
if [ -f /etc/smta/smta.conf ]; then
    chown root:smta /etc/smta/smta.conf
    chmod 0640 /etc/smta/smta.conf
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable smta.service >/dev/null
    # Restart a running relay on upgrade. A fresh install is not started,
    # so the administrator can review /etc/smta/smta.conf first, and port 25
    # is not taken from another MTA without notice.
    if systemctl is-active --quiet smta.service; then
        systemctl restart smta.service
    else
        echo "smta: review /etc/smta/smta.conf, then run: systemctl start smta"
    fi
fi
