"""The LAN API: versioned JSON under ``/api/v1/``, a WebSocket event stream and ``/metrics``.

:mod:`gateway.api.server` is the service component (named ``api``); :mod:`gateway.api.app`
builds the application (:mod:`gateway.api.http`), which :mod:`gateway.api.httpd` serves with
h11 and :mod:`gateway.api.ws` with wsproto; :mod:`gateway.api.token` owns the token file.
"""

from __future__ import annotations

import mimetypes

# Nothing in the service guesses a type from a file name (the dashboard's files carry theirs,
# the API sends JSON). Should a library initialise mimetypes all the same, the global table
# stays Python's own instead of being filled from the system's files (/etc/mime.types: some
# 2,000 types, ~0.8 MB of RSS for the process's life; aiohttp.web did so at import when it
# served the API). A table initialised before (by whoever) is left as it is.
if not mimetypes.inited:
    mimetypes.knownfiles = []
