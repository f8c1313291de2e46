"""The LAN API: versioned JSON under ``/api/v1/``, a WebSocket event stream and ``/metrics``.

:mod:`gateway.api.server` is the service component (named ``api``); :mod:`gateway.api.app`
builds the aiohttp application; :mod:`gateway.api.token` owns the bearer token file.
"""

from __future__ import annotations

import mimetypes

# aiohttp.web makes a MimeTypes of Python's own table when it is imported (for its
# FileResponse), and the first MimeTypes also fills the module's global table from the
# system's files (/etc/mime.types: some 2,000 types, ~0.8 MB of RSS for the process's life).
# Nothing here guesses a type from a file name (the dashboard's files carry theirs, the API
# sends JSON): before aiohttp.web is loaded, the global table is Python's own. A table
# initialised before (by whoever) is left as it is.
if not mimetypes.inited:
    mimetypes.knownfiles = []
