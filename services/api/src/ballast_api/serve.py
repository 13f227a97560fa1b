"""How uvicorn serves the api: the options `python -m ballast_api` runs it with."""

from __future__ import annotations

from typing import Any

from ballast_api.http_protocol import CoalescingHttpToolsProtocol
from ballast_common.config import AppConfig


def uvicorn_options(config: AppConfig) -> dict[str, Any]:
    """`uvicorn.run` keyword arguments for the api of `config` (app and host aside)."""
    return {
        "port": config.api.port,
        "workers": config.api.workers,
        # Our JSON logging handles access lines (with trace ids); uvicorn's would
        # duplicate them.
        "access_log": False,
        "log_config": None,
        # X-Forwarded-* are read by the app, from security.trusted_proxies only
        # (ClientAddressMiddleware); uvicorn's own handling would trust its own list.
        "proxy_headers": False,
        # No "server: uvicorn" on responses: the api does not advertise what it runs on.
        "server_header": False,
        # httptools, each response in one write (head and body together).
        "http": CoalescingHttpToolsProtocol,
    }


__all__ = ["uvicorn_options"]
