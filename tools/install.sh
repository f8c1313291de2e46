#!/bin/sh
# Install migw as a systemd service: `sudo make install` (see docs/operations.md).
#
#   /opt/migw                          Python venv with migw (+ share/doc/migw/operations.md)
#   /etc/sysusers.d/migw.conf          the static system user migw (dialout, gpio, bluetooth)
#   /etc/systemd/system/migw.service   the unit, enabled (multi-user.target)
#   /etc/dbus-1/system.d/migw.conf     lets migw talk to BlueZ
#   /etc/migw/config.toml              from config.example.toml, only when absent (never
#                                      overwritten); config.example.toml beside it
#   /var/lib/migw                      the state directory (database, API token, backups)
#
# Idempotent: a second run changes nothing; a run from newer sources upgrades the venv and
# restarts the service. DESTDIR=/some/root installs into a staging root instead (the user
# goes into DESTDIR's /etc/passwd via `systemd-sysusers --root`, the unit is enabled with
# `systemctl --root`, nothing is started). Environment:
#   DESTDIR         staging root (default: the live system; then root is required)
#   PYTHON          interpreter for the venv (default python3, >= 3.11)
#   MIGW_PIP_ARGS   extra pip arguments (the install test uses "--no-deps")
#   MIGW_EXTRAS     pip extras (default: pi, i.e. lgpio on a Raspberry Pi)
set -eu
umask 022

SRC=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PYTHON=${PYTHON:-python3}
MIGW_PIP_ARGS=${MIGW_PIP_ARGS:-}
MIGW_EXTRAS=${MIGW_EXTRAS-pi}
PREFIX=/opt/migw
# what pip builds the venv's migw from (copied to a scratch dir: the checkout stays clean)
PACKAGE_FILES="pyproject.toml README.md LICENSE gateway drivers hw-mocks"
USER_NAME=migw
CHANGED=0
UPGRADED=0

say() { printf 'migw install: %s\n' "$*"; }
die() { printf 'migw install: error: %s\n' "$*" >&2; exit 1; }

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
if [ -z "$DESTDIR" ] && [ "$IS_ROOT" -ne 1 ]; then
    die "run as root: sudo make install (or give DESTDIR=/staging/root)"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "$PYTHON is missing or older than 3.11 (Raspberry Pi OS Bookworm has 3.11)"
command -v systemd-sysusers >/dev/null 2>&1 || die "systemd-sysusers is missing (install systemd)"

# The live system runs systemd (not a container or chroot): start and reload things.
LIVE=0
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then LIVE=1; fi

# ---------------------------------------------------------------------------- helpers

owner_ids() {  # owner_ids USER GROUP -> "uid:gid" from DESTDIR's passwd/group (root: 0)
    uid=0
    gid=0
    if [ "$1" != root ]; then
        uid=$(awk -F: -v n="$1" '$1 == n { print $3 }' "$DESTDIR/etc/passwd")
    fi
    if [ "$2" != root ]; then
        gid=$(awk -F: -v n="$2" '$1 == n { print $3 }' "$DESTDIR/etc/group")
    fi
    if [ -z "$uid" ] || [ -z "$gid" ]; then die "user $1 or group $2 does not exist"; fi
    echo "$uid:$gid"
}

fix_meta() {  # fix_meta PATH MODE USER GROUP: change mode/owner only when they differ
    path=$1 mode=$2
    want=$(owner_ids "$3" "$4")
    if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
        chmod "$mode" "$path"
        CHANGED=1
    fi
    if [ "$IS_ROOT" -eq 1 ] && [ "$(stat -c %u:%g "$path")" != "$want" ]; then
        chown "$want" "$path"
        CHANGED=1
    fi
}

place_dir() {  # place_dir DIR MODE USER GROUP
    if [ ! -d "$DESTDIR$1" ]; then
        mkdir -p "$DESTDIR$1"
        CHANGED=1
    fi
    fix_meta "$DESTDIR$1" "$2" "$3" "$4"
}

place_file() {  # place_file SRC DST MODE USER GROUP: copy only when the content differs
    dst=$DESTDIR$2
    mkdir -p "$(dirname -- "$dst")"
    if ! cmp -s "$1" "$dst"; then
        cp "$1" "$dst.migw-new"
        mv -f "$dst.migw-new" "$dst"
        say "installed $2"
        CHANGED=1
    fi
    fix_meta "$dst" "$3" "$4" "$5"
}

source_digest() {  # a digest of everything that ends up in the venv
    (
        cd "$SRC"
        # shellcheck disable=SC2086 # a list of names
        find $PACKAGE_FILES -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info*' | LC_ALL=C sort |
            while IFS= read -r f; do sha256sum "$f"; done
        printf 'extras=%s\n' "$MIGW_EXTRAS"
    ) | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------------------- the user

user_complete() {  # the user exists and is a member of every group the unit names
    grep -q "^$USER_NAME:" "$DESTDIR/etc/passwd" 2>/dev/null || return 1
    for g in dialout gpio bluetooth; do
        awk -F: -v g="$g" -v u="$USER_NAME" \
            '$1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) found = 1 }
             END { exit !found }' "$DESTDIR/etc/group" || return 1
    done
}

CHANGED=0
place_file "$SRC/systemd/sysusers.d/migw.conf" /etc/sysusers.d/migw.conf 0644 root root
# systemd-sysusers also runs at every boot; run it now when the user is missing or changed
if [ "$CHANGED" -eq 1 ] || ! user_complete; then
    if [ -n "$DESTDIR" ]; then
        systemd-sysusers --root="$DESTDIR" >/dev/null
    else
        systemd-sysusers /etc/sysusers.d/migw.conf >/dev/null
    fi
    say "created or updated the system user $USER_NAME"
fi
owner_ids "$USER_NAME" "$USER_NAME" >/dev/null

# ---------------------------------------------------------------------------- the venv

VENV=$DESTDIR$PREFIX
STAMP=$VENV/.migw-source
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the venv in $PREFIX"
    # system site packages: Raspberry Pi OS ships lgpio (python3-lgpio) as a system package
    "$PYTHON" -m venv --system-site-packages "$VENV"
    CHANGED=1
fi
DIGEST=$(source_digest)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$DIGEST" ]; then
    say "installing migw from $SRC into $PREFIX"
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    # shellcheck disable=SC2086 # a list of names
    (cd "$SRC" && tar -cf - --exclude=__pycache__ --exclude='*.egg-info' $PACKAGE_FILES) |
        (cd "$scratch" && tar -xf -)
    target=$scratch
    [ -n "$MIGW_EXTRAS" ] && target="${scratch}[$MIGW_EXTRAS]"
    # shellcheck disable=SC2086 # MIGW_PIP_ARGS is a list of options
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        $MIGW_PIP_ARGS "$target"
    rm -rf "$scratch"
    trap - EXIT
    echo "$DIGEST" >"$STAMP"
    CHANGED=1
    UPGRADED=1
fi
[ -x "$VENV/bin/migw" ] || die "the venv has no migw command after pip install"
place_file "$SRC/docs/operations.md" "$PREFIX/share/doc/migw/operations.md" 0644 root root

# ---------------------------------------------------------------------------- config, state

place_dir /etc/migw 0750 root "$USER_NAME"
place_file "$SRC/config.example.toml" /etc/migw/config.example.toml 0640 root "$USER_NAME"
if [ ! -e "$DESTDIR/etc/migw/config.toml" ]; then
    place_file "$SRC/config.example.toml" /etc/migw/config.toml 0640 root "$USER_NAME"
else
    say "kept the existing /etc/migw/config.toml"
fi
place_dir /var/lib/migw 0750 "$USER_NAME" "$USER_NAME"

# ---------------------------------------------------------------------------- unit, D-Bus

UNIT_BEFORE=$CHANGED
CHANGED=0
place_file "$SRC/systemd/migw.service" /etc/systemd/system/migw.service 0644 root root
UNIT_CHANGED=$CHANGED
CHANGED=0
place_file "$SRC/systemd/dbus/migw.conf" /etc/dbus-1/system.d/migw.conf 0644 root root
DBUS_CHANGED=$CHANGED
CHANGED=$((UNIT_BEFORE | UNIT_CHANGED | DBUS_CHANGED))

if [ -n "$DESTDIR" ]; then
    systemctl --root="$DESTDIR" --quiet enable migw.service 2>/dev/null
    say "staged into $DESTDIR (nothing started)"
    exit 0
fi

if [ "$LIVE" -ne 1 ]; then
    systemctl --quiet enable migw.service 2>/dev/null
    say "systemd is not running here: enabled migw.service for the next boot"
    exit 0
fi
if [ "$DBUS_CHANGED" -eq 1 ]; then
    systemctl reload dbus.service 2>/dev/null || true
fi
if [ "$UNIT_CHANGED" -eq 1 ]; then
    systemctl daemon-reload
fi
systemctl --quiet enable migw.service
if systemctl --quiet is-active migw.service && [ $((UPGRADED | UNIT_CHANGED)) -eq 1 ]; then
    say "restarting migw for the new version"
    systemctl restart migw.service
else
    systemctl start migw.service
fi
if [ "$CHANGED" -eq 0 ]; then
    say "already installed and up to date"
fi
say "running. Configure /etc/migw/config.toml, then: systemctl reload migw;" \
    "watch: journalctl -u migw -f"
