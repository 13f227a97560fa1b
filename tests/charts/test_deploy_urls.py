"""`scripts/deploy.py` opens only http(s) URLs: a Prometheus URL or a preview address
given as `file:` or another scheme is refused before anything is read."""

from __future__ import annotations

import pytest

from tests.charts.test_deploy_script import _deploy_module


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/x", "/etc/passwd", "data:,x", ""],
)
def test_only_http_urls_are_opened(url: str) -> None:
    deploy = _deploy_module()
    with pytest.raises(deploy.DeployError, match="is not an http"):
        deploy.http("GET", url)
