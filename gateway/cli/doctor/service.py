"""Doctor checks of the configuration, the running service and its API token."""

from __future__ import annotations

from gateway.api.token import TokenError, file_mode, read_token, token_path
from gateway.cli.client import (
    ApiClient,
    ApiFailure,
    ServiceDown,
    Target,
    resolve,
)
from gateway.cli.doctor.base import UNIT, Check, Checks, Doctor, Level, Named, needs_config
from gateway.config import DEFAULT_CONFIG_PATH, read_secret
from gateway.errors import GatewayError

CONFIG = Named("config")
SERVICE = Named("service")
TOKEN = Named("api token")


async def check_config(d: Doctor) -> Check:
    path = d.ctx.config_path
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    try:
        d.target = resolve(d.ctx)
        cfg = d.target.config
        read_secret(cfg.upstream.password, cfg.upstream.password_file, "upstream.password")
        for mac, key_file in cfg.ble.key_files.items():
            read_secret(None, key_file, f"ble.key_files.{mac}")
    except GatewayError as exc:
        return CONFIG(
            Level.FAIL,
            f"{path or 'config'}: {exc}",
            "fix the key named above (see config.example.toml), then "
            f"`migw config check {path or 'FILE'}`",
        )
    if path is None:
        return CONFIG(
            Level.WARN,
            f"no config file ({DEFAULT_CONFIG_PATH} is missing): built-in defaults",
            f"copy config.example.toml to {DEFAULT_CONFIG_PATH} and edit it, or pass --config",
        )
    return CONFIG(Level.PASS, f"{path} is valid")


@needs_config(SERVICE)
async def check_service(d: Doctor, target: Target) -> Check:
    async with ApiClient(target) as api:
        try:
            d.status = await api.get("/api/v1/status")
        except ServiceDown:
            return SERVICE(
                Level.WARN,
                f"not running (nothing answers at {target.base_url})",
                f"sudo systemctl start {UNIT}; `journalctl -u migw -n 50` shows why it stopped",
            )
        except ApiFailure as exc:
            return SERVICE(
                Level.FAIL,
                f"the API at {target.base_url} answered: {exc}",
                "run doctor as the service user or with sudo so it can read the API token",
            )
    assert d.status is not None
    d.radios = {r["name"]: r for r in d.status.get("radios", [])}
    svc = d.status["service"]
    if svc["status"] != "ok":
        return SERVICE(
            Level.WARN,
            "running but degraded: " + "; ".join(svc.get("reasons", [])),
            "see the checks below and `journalctl -u migw` for the degraded parts",
        )
    return SERVICE(
        Level.PASS,
        f"running, healthy, up {svc['uptime_s']:.0f} s, version {svc.get('version', '?')}",
    )


@needs_config(TOKEN)
async def check_token(_d: Doctor, target: Target) -> Check:
    path = token_path(target.state_dir)
    try:
        token = read_token(target.state_dir)
    except TokenError as exc:
        return TOKEN(Level.WARN, str(exc), "run `sudo migw doctor`")
    if token is None:
        return TOKEN(
            Level.WARN,
            f"no token file {path} yet",
            "the service creates it at its first start and logs where "
            "(`migw token --create` makes one here before that)",
        )
    mode = file_mode(target.state_dir)
    if mode is not None and mode & 0o077:
        return TOKEN(
            Level.FAIL,
            f"{path} has mode {mode:04o}: other users can read the API token",
            f"chmod 600 {path}; then `migw token --rotate`",
        )
    return TOKEN(Level.PASS, f"{path} (mode 0600)")


#: This module's checks in the order they run, each with its name.
CHECKS: Checks = (
    (CONFIG, check_config),
    (SERVICE, check_service),
    (TOKEN, check_token),
)
