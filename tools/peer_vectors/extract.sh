#!/bin/sh
# Regenerates tests/vectors/peers/{xiaomi_ble,bthome_ble}.jsonl from the peers' own test
# suites (data only: see record.py) and tests/vectors/peers/theengs.jsonl from Theengs
# decoder's tests/BLE/test_ble.cpp (theengs.py). Not run by `make test`.
#
#   tools/peer_vectors/extract.sh XIAOMI_CHECKOUT BTHOME_CHECKOUT THEENGS_CHECKOUT
#
# Each checkout is a git work tree of the peer at the commit to record. Their tests run
# against their own src/ with this repository's virtualenv (which has their dependencies
# through the bench extra).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/tests/vectors/peers"
py="$root/.venv/bin/python"
mkdir -p "$out"
run() {  # run NAME CHECKOUT OWNER/REPO
    commit=$(git -C "$2" rev-parse HEAD)
    rm -f "$out/$1.jsonl"
    (cd "$2" && PYTHONPATH="src:$here" PEER_VECTORS_OUT="$out/$1.jsonl" \
        PEER_VECTORS_SOURCE="$3@$commit" \
        "$py" -m pytest tests -q -p record -p no:cacheprovider -o addopts="" -W ignore)
}
run xiaomi_ble "$1" Bluetooth-Devices/xiaomi-ble
run bthome_ble "$2" Bluetooth-Devices/bthome-ble
"$py" "$here/theengs.py" "$3" "$(git -C "$3" rev-parse HEAD)" > "$out/theengs.jsonl"
