"""The LAN API: versioned JSON under ``/api/v1/``, a WebSocket event stream and ``/metrics``.

:mod:`gateway.api.server` is the service component (named ``api``); :mod:`gateway.api.app`
builds the aiohttp application; :mod:`gateway.api.token` owns the bearer token file.
"""
