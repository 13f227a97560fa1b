"""The chart's sign-in settings: OIDC single sign-on and trusted-header mode become the
api's BALLAST_AUTH__* variables (which the api's configuration reads back), the client
secret comes from the existing Secret, and the api may reach the provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast_common.config import load_config
from tests.charts.conftest import (
    VALUE_SETS,
    Obj,
    find,
    helm,
    one,
    render,
    template_args,
)

OIDC = {
    "config": {
        "auth": {
            "localAccounts": False,
            "oidc": {
                "enabled": True,
                "issuer": "https://login.example.com/realms/ballast",
                "clientId": "ballast",
                "redirectUri": "https://ballast.example.com/",
                "groupRoles": {"ballast-admins": "admin", "staff": "viewer"},
                "defaultRole": "viewer",
                "peers": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
            },
        }
    }
}
PROXY = {
    "config": {
        "trustedProxies": ["10.0.0.0/8"],
        "auth": {
            "proxy": {
                "enabled": True,
                "userHeader": "X-Auth-Request-User",
                "groupRoles": {"staff": "editor"},
            }
        },
    }
}


def _values(tmp_path: Path, values: dict[str, Any]) -> list[Path]:
    path = tmp_path / "auth-values.yaml"
    path.write_text(yaml.safe_dump(values))
    return [*VALUE_SETS["production"], path]


def _config(objs: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = one(objs, "ConfigMap", "rel-ballast-config")["data"]
    return data


def _env(objs: list[Obj], component: str) -> dict[str, Any]:
    deployments = [
        d
        for d in find(objs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert deployments
    container = deployments[0]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container.get("env", [])}


def test_defaults_keep_passwords_and_no_single_sign_on() -> None:
    objs = render(VALUE_SETS["production"])
    config = _config(objs)
    assert config["BALLAST_AUTH__LOCAL_ACCOUNTS"] == "true"
    assert not [
        k for k in config if k.startswith(("BALLAST_AUTH__OIDC", "BALLAST_AUTH__PROXY"))
    ]
    assert "BALLAST_AUTH__OIDC__CLIENT_SECRET" not in _env(objs, "api")


def test_oidc_values_become_settings_the_api_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = render(_values(tmp_path, OIDC))
    config = _config(objs)
    secret = _env(objs, "api")["BALLAST_AUTH__OIDC__CLIENT_SECRET"]
    assert secret["valueFrom"]["secretKeyRef"]["key"] == "oidc-client-secret"
    assert "BALLAST_AUTH__OIDC__CLIENT_SECRET" not in _env(objs, "ui")
    # The api's own configuration parses what the chart renders.
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BALLAST_ENV", "dev")
    monkeypatch.setenv(
        "BALLAST_AUTH__OIDC__CLIENT_SECRET", "from-the-secret-0123456789"
    )
    auth = load_config().auth
    assert auth.local_accounts is False
    assert auth.oidc.enabled
    assert auth.oidc.issuer == "https://login.example.com/realms/ballast"
    assert auth.oidc.group_roles == {"ballast-admins": "admin", "staff": "viewer"}
    assert auth.oidc.default_role == "viewer"
    assert auth.oidc.scopes == ["openid", "profile", "email"]
    assert auth.oidc.client_secret is not None
    # The api may reach the provider (HTTPS) through its NetworkPolicy.
    policy = one(objs, "NetworkPolicy", "rel-ballast-api")
    assert {
        "ports": [{"protocol": "TCP", "port": 443}],
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
    } in policy["spec"]["egress"]


def test_proxy_values_become_settings_the_api_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(render(_values(tmp_path, PROXY)))
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BALLAST_ENV", "dev")
    loaded = load_config()
    assert loaded.auth.proxy.enabled
    assert loaded.auth.proxy.user_header == "X-Auth-Request-User"
    assert loaded.auth.proxy.group_roles == {"staff": "editor"}
    assert loaded.security.trusted_proxies == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"config": {"auth": {"oidc": {"enabled": True}}}},
            "needs issuer, clientId and redirectUri",
        ),
        (
            {"config": {"auth": {"proxy": {"enabled": True}}}},
            "needs config.trustedProxies",
        ),
        ({"config": {"auth": {"oidc": {"defaultRole": "root"}}}}, 'not "root"'),
        (
            {"config": {"auth": {"proxy": {"groupRoles": {"ops": "superuser"}}}}},
            'not "superuser"',
        ),
    ],
)
def test_incomplete_sign_in_settings_fail_to_render(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    proc = helm(*template_args(_values(tmp_path, values)), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
