"""The API bearer token: generated at first start into the state dir, mode 0600.

The file holds one line, a URL-safe random token. The server compares the presented token
with :func:`hmac.compare_digest` and notices a rotation (``migw token --rotate``) by the
file's modification time, so a rotated token takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import NeedsHumanError

_LOGGER = logging.getLogger(__name__)

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret
#: Bytes of randomness in a token (256 bits).
TOKEN_BYTES = 32
#: Tokens shorter than this in the file are refused (someone wrote a weak one by hand).
MIN_TOKEN_LEN = 16


class TokenError(NeedsHumanError):
    """The token file cannot be read or written (permissions, missing state dir)."""


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _owner(path: Path) -> tuple[int, int] | None:
    """Who must own the token file: the owner of the current file, else of the state dir
    (``sudo migw token --rotate`` must not leave a file the service user cannot read)."""
    for candidate in (path, path.parent):
        try:
            st = candidate.stat()
        except OSError:
            continue
        return st.st_uid, st.st_gid
    return None


def _write(path: Path, token: str) -> None:
    """Write atomically with mode 0600 from the first byte (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = _owner(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, but be explicit
        if owner is not None and os.geteuid() == 0 and owner != (os.getuid(), os.getgid()):
            os.fchown(fd, *owner)
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_token(state_dir: Path) -> str | None:
    """The token, or None when there is no file yet. TokenError when it cannot be read."""
    path = token_path(state_dir)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except PermissionError:
        raise TokenError(
            f"no permission to read the API token {path}: run as the migw user or with sudo"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the API token {path}: {exc}") from None
    if len(text) < MIN_TOKEN_LEN or not text.isascii() or any(c.isspace() for c in text):
        raise TokenError(f"the API token in {path} is malformed: rotate it (migw token --rotate)")
    return text


def ensure_token(state_dir: Path) -> str:
    """The existing token, or a new one written now (first start). Tightens a lax mode."""
    path = token_path(state_dir)
    try:
        token = read_token(state_dir)
        if token is None:
            token = new_token()
            _write(path, token)
            _LOGGER.info("generated the API token in %s (mode 0600)", path)
            return token
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
            _LOGGER.warning("the API token %s was readable by others: set its mode to 0600", path)
    except OSError as exc:
        raise TokenError(f"cannot write the API token {path}: {exc}") from None
    return token


def rotate_token(state_dir: Path) -> str:
    """Replace the token; a running service accepts only the new one from its next request."""
    token = new_token()
    try:
        _write(token_path(state_dir), token)
    except OSError as exc:
        raise TokenError(f"cannot write the API token {token_path(state_dir)}: {exc}") from None
    return token


def file_mode(state_dir: Path) -> int | None:
    try:
        return stat.S_IMODE(token_path(state_dir).stat().st_mode)
    except OSError:
        return None


@dataclass(slots=True)
class TokenChecker:
    """Checks bearer tokens in constant time, re-reading the file after a rotation."""

    state_dir: Path
    _token: bytes = b""
    _mtime_ns: int = -1

    def __post_init__(self) -> None:
        self._token = ensure_token(self.state_dir).encode("ascii")
        self._mtime_ns = self._stat()

    def _stat(self) -> int:
        try:
            return token_path(self.state_dir).stat().st_mtime_ns
        except OSError:
            return -1

    def _refresh(self) -> None:
        mtime = self._stat()
        if mtime == self._mtime_ns or mtime < 0:
            return  # unchanged, or deleted: keep the token we have
        try:
            token = read_token(self.state_dir)
        except TokenError as exc:
            _LOGGER.warning("%s; keeping the previous token", exc)
            token = None
        self._mtime_ns = mtime
        if token is not None:
            self._token = token.encode("ascii")
            _LOGGER.info("API token rotated")

    def check(self, presented: str) -> bool:
        self._refresh()
        try:
            raw = presented.encode("ascii")
        except UnicodeEncodeError:
            raw = b""
        # compare_digest takes time independent of where the strings differ
        return hmac.compare_digest(raw, self._token) and bool(raw)
