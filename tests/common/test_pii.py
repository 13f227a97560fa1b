import random
import secrets
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ballast_common.telemetry import (
    MASK,
    bind_request_context,
    correlation_id_var,
    is_sensitive_key,
    mask_data,
    mask_value,
    redact_secrets,
)


class TestMaskValue:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("contact jane.doe@example.com now", "contact j***@example.com now"),
            ("broker redis://:s3cret@redis:6379/0", "broker redis://:***@redis:6379/0"),
            ("<Bob+tag@mail.example.org>", "<B***@mail.example.org>"),
            ("email='jane@example.com'", "email='j***@example.com'"),
            ("?user=jane@example.com&x=1", "?user=j***@example.com&x=1"),
            ("odd a!b@example.com", "odd a!b***@example.com"),
            ("call +49 30 1234567 today", "call ***67 today"),
            ("digits 12 34 56 78 90 12 34 56 78", "digits 12 34 56 78 90 12 34 56 78"),
            ("short 12-345", "short 12-345"),
            ("call +1 (555) 123-4567.", "call ***67."),
            ("(555) 123-4567", "***67"),
            ("555-123-4567", "***67"),
            ("030 12345678", "***78"),
            ("mobile 01711234567", "mobile ***67"),
            ("tel:+4915112345678", "tel:***78"),
            ("Authorization: Bearer abcdefghijklmnop123", "Authorization: ***"),
            ("sent bearer abcdefghijklmnop123 upstream", "sent bearer *** upstream"),
            ("password=hunter2 user=bob", "password=*** user=bob"),
            ("?access_token=abc123&page=2", "?access_token=***&page=2"),
            ('{"password": "hunter2", "name": "x"}', '{"password": ***, "name": "x"}'),
            ("X-Api-Key: k-123 next", "X-Api-Key: *** next"),
            ("client_secret='a b c'", "client_secret=***"),
            ("postgresql://app:s3cr3t@db:5432/app", "postgresql://app:***@db:5432/app"),
            ("id 4bf92f3577b34da6a3ce929d0e0e4736 end", "id *** end"),
            ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature", "jwt ***"),
        ],
    )
    def test_masks(self, text: str, expected: str) -> None:
        assert mask_value(text) == expected

    def test_masks_random_tokens_without_digits(self) -> None:
        # One such token made this module's random test fail once.
        seen = "sEdloyJlUGzIhOJPpDBckImLShHqxXh_vQwHvFRkZtQ"
        assert mask_value(f"token {seen} used") == "token *** used"
        rng = random.Random(20261130)
        alphabet = string.ascii_letters + "-_"
        tokens = ["".join(rng.choice(alphabet) for _ in range(43)) for _ in range(2000)]
        slipped = [
            t for t in tokens if mask_value(f"token {t} used") != "token *** used"
        ]
        # A heuristic: about 0.04 % slip through (measured on 200,000).
        assert len(slipped) <= 2, slipped

    @pytest.mark.parametrize(
        "name",
        [
            "ThisIsAVeryLongCamelCaseIdentifierName",
            "ballast_http_request_duration_seconds_bucket",
            "SomeModule_with_LongerNames_andMoreWords",
        ],
    )
    def test_long_names_are_not_tokens(self, name: str) -> None:
        assert mask_value(f"in {name} now") == f"in {name} now"

    def test_masks_random_url_safe_tokens(self) -> None:
        for _ in range(50):
            token = secrets.token_urlsafe(32)
            assert mask_value(f"token {token} used") == "token *** used"
            assert token not in mask_value(f"got {token}")

    @pytest.mark.parametrize(
        "text",
        [
            "2024-01-15T10:30:00Z",
            "2024-01-15T10:30:00.123456+00:00",
            "at 2024-01-15 10:30:00,123 done",
            "2024-01-15",
            "123e4567-e89b-12d3-a456-426614174000",
            "job 550E8400-E29B-41D4-A716-446655440000 started",
            "processed 12345678 rows in 1700000000 ns",
            "ratio 0.0012345678",
            "10.0.0.1:5432 and 192.168.100.200",
            "ballast_http_request_duration_seconds_bucket",
            "test_pii_masking_does_not_touch_identifiers",
            '  File "/app/ballast_common/telemetry/pii.py", line 123, in mask_value',
            "bearer of bad news",
            "no secrets here: author=alice, token_count is a metric name",
            "",
        ],
    )
    def test_no_false_positives(self, text: str) -> None:
        assert mask_value(text) == text

    @pytest.mark.parametrize(
        "text",
        [
            "a 555-123-4567 b",
            "jane@example.com",
            "password=x",
            "Bearer abcdefghijk1",
            "+49 30 1234567",
            "postgresql://app:pw@db.example.com/app",
        ],
    )
    def test_idempotent(self, text: str) -> None:
        once = mask_value(text)
        assert once != text
        assert mask_value(once) == once


class TestSensitiveKeys:
    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "PASSWORD",
            "passwd",
            "new_password",
            "client_secret",
            "access_token",
            "refreshToken",
            "api_key",
            "apiKey",
            "APIKEY",
            "X-Api-Key",
            "Authorization",
            "Set-Cookie",
            "session",
            "sessionId",
            "credentials",
            "private_key",
            "privateKey",
        ],
    )
    def test_sensitive(self, key: str) -> None:
        assert is_sensitive_key(key)

    @pytest.mark.parametrize(
        "key", ["id", "user_id", "author", "name", "email", "keyboard", "monkey"]
    )
    def test_not_sensitive(self, key: str) -> None:
        assert not is_sensitive_key(key)


class TestMaskData:
    def test_rules_by_key(self) -> None:
        data = {
            "password": "hunter2",
            "access_token": {"nested": "whole value goes"},
            "X-Api-Key": 12345,
            "Cookie": None,
            "email": "jane@example.com",
            "contact_email": "not-an-address",
            "phone": "+49 30 1234567",
            "fax_phone": "n/a",
            "mobile": 4915112345678,
            "note": "mail bob@example.org or call 555-123-4567",
            "count": 3,
            "ok": True,
        }
        assert mask_data(data) == {
            "password": MASK,
            "access_token": MASK,
            "X-Api-Key": MASK,
            "Cookie": MASK,
            "email": "j***@example.com",
            "contact_email": "n***",
            "phone": "***67",
            "fax_phone": MASK,
            "mobile": "***78",
            "note": "mail b***@example.org or call ***67",
            "count": 3,
            "ok": True,
        }

    def test_recurses_and_keeps_container_types(self) -> None:
        data: dict[Any, Any] = {
            "users": [{"email": "a@example.com", "tags": ("x", "b@example.com")}],
            "set": {"c@example.com"},
            "frozen": frozenset({"d@example.com"}),
            7: "e@example.com",
        }
        masked = mask_data(data)
        assert masked == {
            "users": [{"email": "a***@example.com", "tags": ("x", "b***@example.com")}],
            "set": {"c***@example.com"},
            "frozen": frozenset({"d***@example.com"}),
            7: "e***@example.com",
        }
        assert isinstance(masked["users"][0]["tags"], tuple)
        assert data["users"][0]["email"] == "a@example.com"  # input untouched

    def test_string_keys_are_masked_too(self) -> None:
        assert mask_data({"jane@example.com": 1}) == {"j***@example.com": 1}

    def test_no_false_positives_for_ids_timestamps_and_uuids(self) -> None:
        data = {
            "id": 123456789012345,
            "user_id": "01711234567",
            "order_id": 4915112345678,
            "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "job_ids": ["0301234567", 5551234567],
            "userId": "5551234567",
            "uuid": "123e4567-e89b-12d3-a456-426614174000",
            "created_at": "2024-01-15T10:30:00.123456+00:00",
            "when": "2024-01-15 10:30:00",
            "count": 12345678901,
            "ratio": 0.123456789,
        }
        assert mask_data(data) == data

    def test_email_used_as_an_id_is_still_masked(self) -> None:
        assert mask_data({"user_id": "jane@example.com"}) == {
            "user_id": "j***@example.com"
        }

    def test_scalars_and_other_objects_pass_through(self) -> None:
        marker = object()
        assert mask_data(marker) is marker
        assert mask_data(None) is None
        assert mask_data(5) == 5
        assert mask_data("jane@example.com") == "j***@example.com"

    def test_self_referential_structures_terminate(self) -> None:
        data: dict[str, Any] = {"name": "x"}
        data["self"] = data
        masked = mask_data(data)
        depth = 0
        node: Any = masked
        while isinstance(node, dict):
            node = node["self"]
            depth += 1
        assert node == MASK
        assert depth > 10

    def test_idempotent(self) -> None:
        data = {"email": "jane@example.com", "phone": "555-123-4567", "note": "x@y.org"}
        once = mask_data(data)
        assert mask_data(once) == once


# --- property: no generated e-mail survives anywhere -------------------------------

_AROUND = st.text(alphabet=list(" ,;:()<>[]\"'=abcXYZ019-_.\n\t"), max_size=8)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [s for item in value for s in _strings(item)]
    return []


# Masked output always ends the local part with "*" (j***@x.org); an address whose
# local part already ends that way is indistinguishable from masked output, so the
# property excludes it.
_EMAILS = st.emails().filter(lambda email: not email.split("@")[0].endswith("*"))


@st.composite
def _structure_with_emails(draw: st.DrawFn) -> tuple[Any, list[str]]:
    emails = draw(st.lists(_EMAILS, min_size=1, max_size=4))
    embedded = st.builds(
        lambda before, email, after: before + email + after,
        _AROUND,
        st.sampled_from(emails),
        _AROUND,
    )
    leaves = st.one_of(embedded, st.integers(), st.none(), st.booleans(), _AROUND)
    keys = st.one_of(
        st.sampled_from(
            ["note", "email", "user_id", "id", "Phone", "access_token", "msg"]
        ),
        embedded,
    )
    tree = st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=20,
    )
    return draw(tree), emails


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_structure_with_emails())
def test_no_email_survives_mask_data(case: tuple[Any, list[str]]) -> None:
    structure, emails = case
    masked = mask_data(structure)
    for text in _strings(masked):
        for email in emails:
            assert email not in text


@settings(deadline=None, max_examples=300)
@given(_AROUND, _EMAILS, _AROUND)
def test_no_email_survives_mask_value(before: str, email: str, after: str) -> None:
    assert email not in mask_value(before + email + after)


# --- payment cards, IBANs, URL-encoded text ------------------------------------------


class TestPaymentCards:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("4111 1111 1111 1111", "***1111"),
            ("4111-1111-1111-1111", "***1111"),
            ("4111111111111111", "***1111"),
            ("card 4111 1111 1111 1111, exp 12/30", "card ***1111, exp 12/30"),
            ("pay with 5555-5555-5555-4444.", "pay with ***4444."),
            ("amex 3782 822463 10005 ok", "amex ***0005 ok"),
            ("discover 6011111111111117", "discover ***1117"),
            ("visa13 4222222222222 end", "visa13 ***2222 end"),
            ('{"card": "4000123412341234"}', '{"card": "***1234"}'),
            ("card=4111111111111111&x=1", "card=***1111&x=1"),
        ],
    )
    def test_luhn_valid_numbers_are_masked(self, text: str, expected: str) -> None:
        assert mask_value(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            # Order and invoice numbers fail the Luhn check.
            "order 4111111111111112 shipped",
            "order 4111 1111 1111 1112 shipped",
            "invoice 4000-1234-1234-1235",
            "ref 1234567890123456",
            # Too long, or not grouped like a card.
            "41111111111111111111111",
            "digits 12 34 56 78 90 12 34 56 78",
            "job 12345678-1234-1234-1234-123456789012 started",
            "edit01-by-tab1",
        ],
    )
    def test_other_digit_strings_are_kept(self, text: str) -> None:
        assert mask_value(text) == text

    def test_idempotent(self) -> None:
        once = mask_value("card 4111 1111 1111 1111")
        assert mask_value(once) == once

    def test_integers_under_plain_keys(self) -> None:
        assert mask_data({"card": 4111111111111111, "count": 4111111111111112}) == {
            "card": "***1111",
            "count": 4111111111111112,
        }


class TestIban:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("DE89 3704 0044 0532 0130 00", "DE***3000"),
            ("DE89370400440532013000", "DE***3000"),
            ("to GB82 WEST 1234 5698 7654 32 today", "to GB***5432 today"),
            ("iban=GB82WEST12345698765432&x=1", "iban=GB***5432&x=1"),
            ("de89 3704 0044 0532 0130 00", "de***3000"),
            ("FR14 2004 1010 0505 0001 3M02 606", "FR***2606"),
        ],
    )
    def test_valid_ibans_are_masked(self, text: str, expected: str) -> None:
        assert mask_value(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "DE00 3704 0044 0532 0130 00",  # wrong check digits
            "DE89370400440532013001",
            "AB12 CDEF GHIJ KLMN",
            "SKU XY12 ABCD EFGH 1234",
        ],
    )
    def test_failing_checksums_are_kept(self, text: str) -> None:
        assert mask_value(text) == text

    def test_idempotent(self) -> None:
        once = mask_value("iban DE89 3704 0044 0532 0130 00")
        assert mask_value(once) == once


class TestUrlEncoded:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("alice%40example.com", "a***%40example.com"),
            ("/v1/users?email=alice%40example.com&page=2", None),
            ("q=alice.smith%2Btag%40mail.example.org", None),
        ],
    )
    def test_encoded_emails(self, text: str, expected: str | None) -> None:
        masked = mask_value(text)
        if expected is not None:
            assert masked == expected
        assert "alice" not in masked.lower().replace("a***", "")
        assert "%40" in masked  # the rest of the line stays as it was

    @pytest.mark.parametrize(
        ("text", "raw"),
        [
            ("GET /?card=4111%201111%201111%201111 HTTP/1.1", "1111%201111%201111"),
            ("q=4111+1111+1111+1111&x=1", "1111+1111+1111"),
            ("q=DE89%203704%200044%200532%200130%2000", "3704%200044"),
            ("tel=%2B49%2030%201234567", "1234567"),
        ],
    )
    def test_encoded_cards_ibans_and_phones(self, text: str, raw: str) -> None:
        masked = mask_value(text)
        assert raw not in masked
        assert "4111 1111" not in masked
        assert mask_value(masked) == masked

    @pytest.mark.parametrize(
        "text", ["100%25 done", "a+b=c", "50% of 4111111111111112", "%zz bad escape"]
    )
    def test_plain_text_with_percent_or_plus_is_kept(self, text: str) -> None:
        assert mask_value(text) == text


class TestRedactSecrets:
    def test_only_secret_keys_are_replaced(self) -> None:
        data = {
            "description": "edit01-by-tab1",
            "email": "alice@example.com",
            "phone": "+49 30 1234567",
            "note": "card 4111 1111 1111 1111",
            "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$abc$def",
            "nested": [{"token_hash": "a" * 64, "name": "Q3 plan"}],
            "count": 3,
        }
        assert redact_secrets(data) == {
            "description": "edit01-by-tab1",
            "email": "alice@example.com",
            "phone": "+49 30 1234567",
            "note": "card 4111 1111 1111 1111",
            "password_hash": MASK,
            "nested": [{"token_hash": MASK, "name": "Q3 plan"}],
            "count": 3,
        }
        assert data["password_hash"].startswith("$argon2id")  # input untouched

    def test_non_mappings_pass_through(self) -> None:
        assert redact_secrets(None) is None
        assert redact_secrets("password=x") == "password=x"
        assert redact_secrets([1, "a"]) == [1, "a"]


class TestCorrelationIds:
    @pytest.mark.parametrize(
        "value",
        [
            "4111-1111-1111-1111",
            "4111111111111111",
            "DE89370400440532013000",
            "alice@example.com",
            "sk_live_Tr0ub4dor3CanaryX9yZ",
            "+49-30-1234567",
        ],
    )
    def test_personal_data_is_not_bound(self, value: str) -> None:
        with bind_request_context(correlation_id=value) as ids:
            assert ids["correlation_id"] not in (None, value)
            assert correlation_id_var.get() == ids["correlation_id"]

    @pytest.mark.parametrize(
        "value", ["corr-log-1", "123e4567-e89b-12d3-a456-426614174000", "ui:42"]
    )
    def test_ordinary_ids_are_kept(self, value: str) -> None:
        with bind_request_context(correlation_id=value) as ids:
            assert ids["correlation_id"] == value


class TestDatabaseText:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "(sqlite3.IntegrityError) UNIQUE constraint failed: users.username\n"
                "[SQL: INSERT INTO users (username) VALUES (?)]\n"
                "[parameters: ('alice', 'x]y')]\n"
                "(Background on this error at: https://sqlalche.me/e/20/gkpj)",
                "(sqlite3.IntegrityError) UNIQUE constraint failed: users.username\n"
                "[SQL: INSERT INTO users (username) VALUES (?)]\n"
                "[parameters: ***]\n"
                "(Background on this error at: https://sqlalche.me/e/20/gkpj)",
            ),
            ("[generated in 0.00012s] ('alice', 3)", "[generated in 0.00012s] ***"),
            ("[cached since 4.2s ago] {'a': 'bob'}", "[cached since 4.2s ago] ***"),
            (
                "DETAIL:  Key (username)=(alice) already exists.",
                "DETAIL:  Key (username)=(***) already exists.",
            ),
            (
                'DETAIL:  Key (owner_id)=(42) is not present in table "users".',
                'DETAIL:  Key (owner_id)=(***) is not present in table "users".',
            ),
            (
                "DETAIL:  Failing row contains (1, alice, null).",
                "DETAIL:  Failing row contains (***).",
            ),
            (
                'invalid input syntax for type integer: "alice"',
                'invalid input syntax for type integer: "***"',
            ),
            (
                'invalid input value for enum project_status: "x y"',
                'invalid input value for enum project_status: "***"',
            ),
        ],
    )
    def test_values_in_database_text_are_masked(self, text: str, expected: str) -> None:
        assert mask_value(text) == expected
        assert mask_value(expected) == expected

    def test_statements_are_kept(self) -> None:
        text = "[SQL: SELECT users.id FROM users WHERE users.username = ?]"
        assert mask_value(text) == text
