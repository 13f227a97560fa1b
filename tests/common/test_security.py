import hashlib
import hmac

import pytest

from ballast_common.security import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    has_permission,
    hash_password,
    hash_token,
    needs_rehash,
    new_token,
    nonce_digest,
    permissions_for,
    verify_password,
    verify_token,
)


class TestPasswords:
    def test_round_trip(self) -> None:
        hashed = hash_password("correct horse battery staple")
        assert hashed.startswith("$argon2id$")
        assert "correct horse" not in hashed
        assert verify_password("correct horse battery staple", hashed)
        assert not verify_password("wrong", hashed)
        assert not needs_rehash(hashed)
        assert hash_password("same") != hash_password("same")  # salted

    @pytest.mark.parametrize(
        "garbage",
        [
            None,
            "",
            "not a hash",
            "$argon2id$v=19$m=65536,t=3,p=4$garbage$garbage",
            "$argon2id$v=19$m=65536,t=3,p=4$",
            "$2b$12$abcdefghijklmnopqrstuv",
        ],
    )
    def test_malformed_hash_is_false_not_an_exception(
        self, garbage: str | None
    ) -> None:
        assert verify_password("whatever", garbage) is False

    def test_needs_rehash(self) -> None:
        weak = "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$JGoyxjVxb4v+Fqgz9d+yzA"
        assert needs_rehash(weak)
        assert needs_rehash("$2b$12$notargon")
        assert needs_rehash("$argon2id$v=19$m=x,t=1,p=1$a$b")
        assert needs_rehash(
            "$argon2id$v=19$m=65536,t=3,p=4"
        )  # identified, then unparsable

    def test_non_string_password_is_false(self) -> None:
        assert verify_password(None, hash_password("x")) is False  # type: ignore[arg-type]


class TestTokens:
    def test_new_token_is_random_and_url_safe(self) -> None:
        tokens = {new_token() for _ in range(50)}
        assert len(tokens) == 50
        for token in tokens:
            assert len(token) == 43
            assert set(token) <= set(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            )

    def test_hash_token_is_hmac_sha256_hex(self) -> None:
        digest = hash_token("tok", "pepper")
        assert digest == hmac.new(b"pepper", b"tok", hashlib.sha256).hexdigest()
        assert len(digest) == 64
        assert hash_token("tok", "other") != digest
        assert verify_token("tok", "pepper", digest)
        assert not verify_token("tok2", "pepper", digest)

    def test_empty_pepper_is_refused(self) -> None:
        with pytest.raises(ValueError, match="pepper"):
            hash_token("tok", "")


class TestRbac:
    def test_permission_values(self) -> None:
        expected = {
            "projects:read",
            "projects:write",
            "projects:delete",
            "drafts:read",
            "drafts:write",
            "forms:read",
            "forms:write",
            "audit:read",
            "users:read",
            "users:write",
            "events:write",
            "jobs:read",
            "jobs:write",
            "jobs:admin",
            "datasets:read",
            "datasets:write",
            "ops:read",
            "backups:admin",
        }
        assert expected <= {p.value for p in Permission}

    def test_viewer_is_read_only_but_keeps_personal_drafts(self) -> None:
        viewer = ROLE_PERMISSIONS[Role.VIEWER]
        assert Permission.EVENTS_WRITE in viewer
        assert {p for p in viewer if not p.endswith(":read")} == {
            Permission.EVENTS_WRITE,
            Permission.DRAFTS_WRITE,
        }
        assert Permission.AUDIT_READ not in viewer
        assert Permission.USERS_READ not in viewer

    def test_editor_extends_viewer_with_writes(self) -> None:
        editor = ROLE_PERMISSIONS[Role.EDITOR]
        assert ROLE_PERMISSIONS[Role.VIEWER] < editor
        for perm in (
            "projects:write",
            "forms:write",
            "drafts:write",
            "jobs:write",
            "datasets:write",
        ):
            assert perm in editor
        for perm in (
            "users:write",
            "audit:read",
            "backups:admin",
            "jobs:admin",
            "projects:delete",
        ):
            assert perm not in editor

    def test_admin_has_everything(self) -> None:
        assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)

    def test_permissions_for_unions_and_ignores_unknown(self) -> None:
        assert permissions_for([]) == frozenset()
        assert permissions_for(["superuser", ""]) == frozenset()
        assert permissions_for(["viewer", "nope"]) == ROLE_PERMISSIONS[Role.VIEWER]
        assert (
            permissions_for([" Editor ", Role.VIEWER]) == ROLE_PERMISSIONS[Role.EDITOR]
        )

    def test_has_permission(self) -> None:
        assert has_permission(["editor"], Permission.PROJECTS_WRITE)
        assert has_permission(["editor"], "projects:write")
        assert not has_permission(["viewer"], "projects:write")
        assert not has_permission(["admin"], "made:up")
        assert has_permission(["viewer", "admin"], Permission.BACKUPS_ADMIN)


def test_nonce_digest_is_sha256_hex() -> None:
    assert nonce_digest("abc") == hashlib.sha256(b"abc").hexdigest()
