#!/bin/sh
# Installs zigbee-herdsman 10.9.5 into .cache/herdsman for the tests (an independent MT
# command table and a second Z-Stack host against our simulator); the product never uses it.
# npm without a lockfile: nothing with a registry address is written into the tree.
set -eu
cd "$(dirname "$0")/.."
version=10.9.5
dir=.cache/herdsman
pkg="$dir/node_modules/zigbee-herdsman/package.json"
if [ -f "$pkg" ] && grep -q "\"version\": \"$version\"" "$pkg"; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "node and npm are missing (tools/system-deps.sh installs them: apt-get install nodejs npm)"
    exit 1
fi
mkdir -p "$dir"
npm install --prefix "$dir" --no-package-lock --no-save --no-audit --no-fund --loglevel=error \
    "zigbee-herdsman@$version"
