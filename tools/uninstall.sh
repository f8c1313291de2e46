#!/bin/sh
# Remove migw's service: `sudo make uninstall` (see docs/operations.md).
#
# Stops and disables the unit and removes it, the D-Bus policy, the sysusers.d entry and the
# venv in /opt/migw. The configuration (/etc/migw), the data (/var/lib/migw: database,
# API token, Zigbee network backups) and the user are kept unless PURGE=1. Idempotent.
#   DESTDIR   staging root used at install time (default: the live system; then root)
#   PURGE=1   also delete /etc/migw, /var/lib/migw and the user migw
set -eu

DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PURGE=${PURGE:-0}

say() { printf 'migw uninstall: %s\n' "$*"; }
die() { printf 'migw uninstall: error: %s\n' "$*" >&2; exit 1; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root: sudo make uninstall (or give DESTDIR=/staging/root)"
fi

remove() {  # remove PATH...: delete what exists, say what went
    for path in "$@"; do
        if [ -e "$DESTDIR$path" ] || [ -L "$DESTDIR$path" ]; then
            rm -rf "$DESTDIR$path"
            say "removed $path"
        fi
    done
}

UNIT=/etc/systemd/system/migw.service
if [ -n "$DESTDIR" ]; then
    if [ -e "$DESTDIR$UNIT" ]; then
        systemctl --root="$DESTDIR" --quiet disable migw.service 2>/dev/null || true
    fi
elif [ -d /run/systemd/system ]; then
    if [ -e "$UNIT" ]; then
        systemctl --quiet disable --now migw.service || true
    fi
elif [ -e "$UNIT" ]; then
    systemctl --quiet disable migw.service 2>/dev/null || true
fi
# a leftover link when systemctl was not available
remove /etc/systemd/system/multi-user.target.wants/migw.service

remove "$UNIT" /etc/dbus-1/system.d/migw.conf /etc/sysusers.d/migw.conf /opt/migw

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reload dbus.service 2>/dev/null || true
fi

if [ "$PURGE" = 1 ]; then
    remove /etc/migw /var/lib/migw
    if grep -q '^migw:' "$DESTDIR/etc/passwd" 2>/dev/null; then
        if [ -n "$DESTDIR" ]; then
            userdel --prefix "$DESTDIR" migw
        else
            userdel migw
        fi
        say "removed the user migw"
    fi
    if grep -q '^migw:' "$DESTDIR/etc/group" 2>/dev/null; then
        if [ -n "$DESTDIR" ]; then
            groupdel --prefix "$DESTDIR" migw
        else
            groupdel migw
        fi
    fi
else
    for kept in /etc/migw /var/lib/migw; do
        [ -e "$DESTDIR$kept" ] && say "kept $kept"
    done
    if grep -q '^migw:' "$DESTDIR/etc/passwd" 2>/dev/null; then
        say "kept the user migw (PURGE=1 removes it with the config and the data)"
    fi
fi
say "done"
