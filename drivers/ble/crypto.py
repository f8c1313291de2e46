"""AES-CCM for MiBeacon (legacy and v4/v5), ATC/pvvx and BTHome v1/v2: pure functions.

Decrypt helpers return ``None`` when the tag does not verify (wrong key or corrupt frame);
encrypt helpers exist so tests and the simulated fleet can build valid encrypted adverts.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from drivers.ble.errors import MalformedError
from drivers.ble.types import mac_digits

#: MiBeacon, ATC/pvvx and BTHome v1 authenticate one header byte.
AAD_11 = b"\x11"
TAG_LEN = 4


def nonce_mac(mac: str | None, what: str, *, model: str = "") -> bytes:
    """The advertiser's MAC as 6 bytes in display order, for the nonce of an encrypted frame.

    Only encrypted frames need it: plain frames decode whatever the address is. An address
    that is not a MAC (macOS CoreBluetooth gives a UUID; a JSON line may hold anything)
    raises :class:`MalformedError` naming it, so the caller counts one clear error.
    """
    digits = mac_digits(mac) if mac else None
    if digits is None:
        why = f"the advertiser address {mac[:40]!r} is not a MAC" if mac else "no advertiser MAC"
        raise MalformedError(
            f"{what} needs the MAC for its nonce; {why}", model=model, encrypted=True
        )
    return bytes.fromhex(digits)


#: One AESCCM per key, built once (keys are immutable). Bounded: cleared when full.
_CCMS: dict[bytes, AESCCM] = {}
_CCMS_MAX = 1024


def _new_ccm(key: bytes) -> AESCCM:
    if len(_CCMS) >= _CCMS_MAX:
        _CCMS.clear()
    ccm = _CCMS[key] = AESCCM(key, tag_length=TAG_LEN)
    return ccm


#: ``AESCCM(key).decrypt`` per key, bound once (the method lookup is a tenth of the call).
_DECRYPTS: dict[bytes, Callable[[bytes, bytes, bytes | None], bytes]] = {}


def _new_decrypt(key: bytes) -> Callable[[bytes, bytes, bytes | None], bytes]:
    if len(_DECRYPTS) >= _CCMS_MAX:
        _DECRYPTS.clear()
    decrypt = _DECRYPTS[key] = _ccm(key).decrypt
    return decrypt


def _ccm(key: bytes) -> AESCCM:
    return _CCMS.get(key) or _new_ccm(key)


def ccm_decrypt(
    key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes, aad: bytes | None
) -> bytes | None:
    """Verified AES-CCM decryption with a 4-byte tag; None when the tag does not match."""
    try:
        return _ccm(key).decrypt(nonce, ciphertext + tag, aad)
    except InvalidTag:
        return None


def decryptor(key: bytes) -> Callable[[bytes, bytes, bytes | None], bytes]:
    """``AESCCM(key, tag_length=4).decrypt``, bound once per key: ``(nonce, ciphertext +
    tag, aad) -> plaintext``, raising :class:`InvalidTag` when the tag does not verify.

    For a caller that keeps it per sensor (the MiBeacon fast path) and calls it directly.
    """
    return _DECRYPTS.get(key) or _new_decrypt(key)


def mibeacon_v45_decrypt(key: bytes, nonce: bytes, ciphertext_tag: bytes) -> bytes | None:
    """The objects of a MiBeacon v4/v5 frame, decrypted and verified; None on a tag mismatch.

    ``nonce`` is :func:`mibeacon_v45_nonce`, ``ciphertext_tag`` the ciphertext followed by
    the 4-byte tag (the frame carries the 3-byte extended counter between them); the AAD
    is ``0x11``. The key's AESCCM is built once and looked up here.
    """
    decrypt = _DECRYPTS.get(key) or _new_decrypt(key)
    try:
        return decrypt(nonce, ciphertext_tag, AAD_11)
    except InvalidTag:
        return None


def ccm_encrypt(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes | None
) -> tuple[bytes, bytes]:
    """AES-CCM encryption with a 4-byte tag: ``(ciphertext, tag)``."""
    out = _ccm(key).encrypt(nonce, plaintext, aad)
    return out[:-TAG_LEN], out[-TAG_LEN:]


def ccm_ctr_only(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """The CTR half of CCM without tag verification (legacy MiBeacon has no usable tag).

    CCM counter blocks are ``flags(L-1) | nonce | counter``, starting at counter 1 for the
    payload (RFC 3610 section 2.3). Encryption and decryption are the same operation.
    """
    q = 15 - len(nonce)  # length-field size L
    first = bytes([q - 1]) + nonce + (1).to_bytes(q, "big")
    ctx = Cipher(algorithms.AES(key), modes.CTR(first)).encryptor()
    return ctx.update(data) + ctx.finalize()


# --- nonces -------------------------------------------------------------------------------


def mibeacon_v45_nonce(mac_rev: bytes, header: bytes, ext_cnt: bytes) -> bytes:
    """12 bytes: reversed MAC + product id (2, as sent) + frame counter + 3-byte ext counter."""
    return mac_rev + header[2:5] + ext_cnt


def mibeacon_legacy_nonce(header: bytes, ext_cnt: bytes, mac_rev: bytes) -> bytes:
    """13 bytes: FC + product id + frame counter (5) + ext counter (3) + reversed MAC[:5]."""
    return header[0:5] + ext_cnt + mac_rev[:5]


def atc_nonce(mac_rev: bytes, sd_len: int, counter: int) -> bytes:
    """11 bytes: reversed MAC + the AD header bleak strips, rebuilt: len, 0x16, 0x181A, counter."""
    return mac_rev + bytes([sd_len + 3, 0x16, 0x1A, 0x18, counter])


def bthome_v2_nonce(mac: bytes, info: int, counter: bytes) -> bytes:
    """13 bytes: MAC in display order + UUID 0xFCD2 (LE) + device-info byte + counter (4)."""
    return mac + b"\xd2\xfc" + bytes([info]) + counter


def bthome_v1_nonce(mac: bytes, counter: bytes) -> bytes:
    """12 bytes: MAC in display order + UUID 0x181E (LE) + counter (4)."""
    return mac + b"\x1e\x18" + counter
