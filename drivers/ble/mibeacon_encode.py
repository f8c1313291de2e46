"""Building MiBeacon frames (plain, legacy-encrypted v2/v3, AES-CCM v4/v5): for tests and
the simulated fleet (:mod:`hw_mocks.ble_fleet`). The inverse of :func:`drivers.ble.mibeacon.decode`.
"""

from __future__ import annotations

from drivers.ble import crypto
from drivers.ble.keys import BindKey
from drivers.ble.mibeacon import FrameControl


def encode_objects(objects: list[tuple[int, bytes]]) -> bytes:
    return b"".join(oid.to_bytes(2, "little") + bytes([len(d)]) + d for oid, d in objects)


def encode(
    *,
    product_id: int,
    frame_counter: int,
    mac: str,
    objects: list[tuple[int, bytes]],
    version: int = 5,
    key: BindKey | None = None,
    ext_counter: int = 0,
    include_mac: bool = True,
    capability: int | None = None,
    extra_flags: int = 0,
) -> bytes:
    """Build a MiBeacon frame (encrypted when ``key`` is given) for tests and simulation."""
    fc = version << 12 | extra_flags
    if include_mac:
        fc |= FrameControl.MAC_INCLUDED
    if capability is not None:
        fc |= FrameControl.CAPABILITY_INCLUDED
    if objects:
        fc |= FrameControl.OBJECT_INCLUDED
    if key is not None:
        fc |= FrameControl.ENCRYPTED
    mac_rev = bytes.fromhex(mac.replace(":", ""))[::-1]
    header = (
        fc.to_bytes(2, "little") + product_id.to_bytes(2, "little") + bytes([frame_counter & 0xFF])
    )
    out = header + (mac_rev if include_mac else b"")
    if capability is not None:
        out += bytes([capability])
    plain = encode_objects(objects)
    if key is None:
        return out + plain
    ext = (ext_counter & 0xFFFFFF).to_bytes(3, "little")
    if version >= 4:
        nonce = crypto.mibeacon_v45_nonce(mac_rev, header, ext)
        ct, tag = crypto.ccm_encrypt(key.aes_key(), nonce, plain, crypto.AAD_11)
        return out + ct + ext + tag
    nonce = crypto.mibeacon_legacy_nonce(header, ext, mac_rev)
    return out + crypto.ccm_ctr_only(key.aes_key(), nonce, plain) + ext + b"\x00"
