"""What an OpenAI-compatible upstream's HTTP error becomes for our client.

=============================  ==============================================================
upstream status                our answer
=============================  ==============================================================
400, 413, 422                  400 ``upstream_rejected`` with the upstream's message (the
                               request does not fit the model: context window, bad option)
401, 403                       502 ``backend_error``: the server's upstream credentials are
                               wrong (one warning in the log; the key is never shown)
429, 503                       503 ``upstream_busy`` with ``Retry-After`` (the upstream's, in
                               whole seconds, else 1): the upstream, not this client's own
                               budget, is exhausted, so it is not our ``429 rate_limited``
408, 504                       504 ``backend_timeout``
any other                      502 ``backend_error``
=============================  ==============================================================

Every one of them keeps the upstream's status in the error body as ``upstream_status``.
"""
from __future__ import annotations

import email.utils
import logging
import math
import time
from typing import Mapping

from ..errors import ApiError, BackendError, BackendTimeout, UpstreamBusy, UpstreamRejected

log = logging.getLogger("monoai_tornado.backends.upstream")

#: Retry-After sent when a busy upstream gave none.
DEFAULT_RETRY_AFTER = 1
#: Longest Retry-After passed on, in seconds (a day).
MAX_RETRY_AFTER = 86400


def upstream_error(status: int, reason: str, where: str, headers: Mapping[str, str], message: str) -> ApiError:
    """The error for an upstream's answer ``status`` with the (already redacted) ``message``."""
    details = {"upstream_status": status}
    said = f"upstream {where} answered {status} {reason}: {message}"
    if status in (400, 413, 422):
        return UpstreamRejected(f"The model server refused the request: {message}", extra=details)
    if status in (401, 403):
        log.warning("upstream %s refused our credentials (%d %s): check the API key given to the server",
                    where, status, reason)
        return BackendError(f"{said} (the server's credentials for its model server are refused: "
                            "check its API key)", extra=details)
    if status in (429, 503):
        retry_after = retry_after_of(headers)
        return UpstreamBusy(f"The model server is busy ({status} {reason}: {message}); retry in {retry_after} s",
                            extra=details, retry_after=retry_after)
    if status in (408, 504):
        return BackendTimeout(said, extra=details)
    return BackendError(said, extra=details)


def retry_after_of(headers: Mapping[str, str]) -> int:
    """Whole seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    milliseconds = headers.get("retry-after-ms", "").strip()
    seconds: float | None = None
    try:
        if milliseconds:
            seconds = float(milliseconds) / 1000
    except ValueError:
        pass
    value = headers.get("Retry-After", "").strip()
    if seconds is None and value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                seconds = None
    if seconds is None or seconds != seconds:
        return DEFAULT_RETRY_AFTER
    return max(1, min(MAX_RETRY_AFTER, math.ceil(seconds)))
