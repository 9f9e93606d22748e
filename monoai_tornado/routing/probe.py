"""The probe of a deployment cooled down by a failure: ``GET base_url/models`` answers 2xx."""
from __future__ import annotations

import logging
import os

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .state import Deployment

log = logging.getLogger("monoai_tornado.routing")

#: Seconds a probe may take.
PROBE_TIMEOUT = 5.0


async def probe(deployment: Deployment) -> bool:
    """Whether the deployment answers; one without a URL (demo, in-process) always does."""
    config = deployment.config
    if config.base_url is None:
        return True
    headers = {}
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = config.base_url.rstrip("/") + "/models"
    try:
        response = await AsyncHTTPClient().fetch(url, headers=headers, request_timeout=PROBE_TIMEOUT,
                                                 connect_timeout=PROBE_TIMEOUT)
    except HTTPClientError as exc:
        log.debug("probe of %s: %s", deployment.id, exc)
        return False
    except Exception as exc:  # refused, reset, timed out, DNS
        log.debug("probe of %s: %s", deployment.id, exc)
        return False
    return 200 <= response.code < 300
