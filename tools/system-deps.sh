#!/bin/sh
# Installs the system packages migw's tests and demo need, when missing and when we may.
# Mosquitto is a real broker for the sync tests; systemd-analyze/sysusers, dbus-daemon and
# the shellcheck linter check the unit, the D-Bus policy and the install scripts; unshare
# and ip give the README test a network namespace of its own; Node.js and npm run
# zigbee-herdsman for the Zigbee tests; python3-dbusmock stands in for bluetoothd in the
# BLE tests (bleak's real BlueZ backend on a private bus).
set -eu
missing=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
command -v mosquitto_sub >/dev/null 2>&1 || missing="$missing mosquitto-clients"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v systemd-sysusers >/dev/null 2>&1 || missing="$missing systemd"
command -v dbus-daemon >/dev/null 2>&1 || missing="$missing dbus-daemon"
# bluetoothd's stand-in for the BLE tests (tests/bluez_mock.py runs on the system python)
/usr/bin/python3 -c 'import dbusmock, dbus, gi' >/dev/null 2>&1 || missing="$missing python3-dbusmock"
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
# the web dashboard test drives Debian's chromium through chromium-driver
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
# the README test runs the demo in its own network namespace (unshare, ip)
command -v unshare >/dev/null 2>&1 || missing="$missing util-linux"
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing="$missing iproute2"
# zigbee-herdsman (tools/herdsman.sh) checks our Zigbee command table and simulator
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -n "$missing" ] || exit 0
missing=$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$(id -u)" -eq 0 ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
    # The Debian package enables a system broker on :1883; tests start their own.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now mosquitto >/dev/null 2>&1 || true
    fi
else
    echo "missing system packages:$missing (run: sudo apt-get install$missing)"
    if [ "${CI:-}" = "true" ]; then exit 1; fi
fi
