"""`python -m ballast_api`: serve the api with uvicorn on the configured host and port."""

import uvicorn

from ballast_common.config import load_config

config = load_config()
uvicorn.run(
    "ballast_api.main:create_app",
    factory=True,
    host=config.api.host,
    port=config.api.port,
    workers=config.api.workers,
    # Our JSON logging handles access lines (with trace ids); uvicorn's would duplicate them.
    access_log=False,
    log_config=None,
    # X-Forwarded-* are read by the app, from security.trusted_proxies only
    # (ClientAddressMiddleware); uvicorn's own handling would trust its own default list.
    proxy_headers=False,
    # No "server: uvicorn" on responses: the api does not advertise what it runs on.
    server_header=False,
)
