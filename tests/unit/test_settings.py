import base64
import json
from urllib.parse import unquote, urlsplit

import pytest

from clave.bootstrap import Settings
from clave.platform.settings import SettingsError
from clave.platform.urls import redacted
from clave.verify.delivery.smtp import SmtpConfig
from clave.verify.settings import parse_hmac_keys


def key(byte: bytes = b"x", n: int = 32) -> str:
    return base64.urlsafe_b64encode(byte * n).decode()


def test_defaults_load() -> None:
    settings = Settings.load({})
    assert settings.platform.port == 8000
    assert settings.platform.workers >= 1
    assert settings.verify.default_policy.code_length == 6
    assert settings.verify.providers.dev_inbox is False
    assert settings.domains == ("verify", "users", "threads", "posts")
    assert settings.databases == {"users": "sqlite", "threads": "sqlite", "posts": "sqlite"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CLAVE_PORT": "eighty"}, "CLAVE_PORT"),
        ({"CLAVE_PORT": "70000"}, "CLAVE_PORT"),
        ({"CLAVE_WORKERS": "0"}, "CLAVE_WORKERS"),
        ({"CLAVE_DEV_INBOX": "maybe"}, "CLAVE_DEV_INBOX"),
        ({"CLAVE_CODE_LENGTH": "3"}, "CLAVE_CODE_LENGTH"),
        ({"CLAVE_CHANNELS": "sms,fax"}, "CLAVE_CHANNELS"),
        ({"CLAVE_VERIFY_STORE": "mysql://x"}, "CLAVE_VERIFY_STORE"),
        ({"CLAVE_SMTP_URL": "http://x"}, "CLAVE_SMTP_URL"),
        ({"CLAVE_SMTP_URL": "smtp://localhost:25"}, "CLAVE_EMAIL_FROM"),
        ({"CLAVE_HMAC_KEYS": "nocolon"}, "CLAVE_HMAC_KEYS"),
        ({"CLAVE_SERVICES": "verify,billing"}, "CLAVE_SERVICES"),
        ({"CLAVE_LOG_LEVEL": "loud"}, "CLAVE_LOG_LEVEL"),
        ({"CLAVE_LIMIT_SENDS_PER_IP": "20"}, "CLAVE_LIMIT_SENDS_PER_IP"),
        ({"CLAVE_LIMIT_SENDS_PER_DAY": "many/86400"}, "CLAVE_LIMIT_SENDS_PER_DAY"),
        ({"CLAVE_LIMIT_FAILED_CHECKS_PER_IP": "3/0"}, "CLAVE_LIMIT_FAILED_CHECKS_PER_IP"),
        ({"CLAVE_PROXY_HOPS": "-1"}, "CLAVE_PROXY_HOPS"),
        ({"CLAVE_BLOCKED_PREFIXES": "882"}, "CLAVE_BLOCKED_PREFIXES"),
        ({"CLAVE_BLOCKED_PREFIXES": "+882:tomorrow"}, "CLAVE_BLOCKED_PREFIXES"),
        ({"CLAVE_FRAUD_MODE": "lenient"}, "CLAVE_FRAUD_MODE"),
        ({"CLAVE_COUNTRIES": "USA"}, "default service policy"),
        ({"CLAVE_FRIENDLY_NAME": "Bank\r\nCall us"}, "default service policy"),
        ({"CLAVE_LIMIT_SENDS_PER_SERVICE_DAY": "2000"}, "CLAVE_LIMIT_SENDS_PER_SERVICE_DAY"),
        (
            {"CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION": "x/1"},
            "CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION",
        ),
        # The guess bound: 15 a day on 4-digit codes, or 101 a day on 6-digit ones, is too many.
        ({"CLAVE_CODE_LENGTH": "4"}, r"CLAVE_CODE_LENGTH .* 15 failed checks"),
        (
            {"CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION": "101/86400"},
            r"CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION: 101 failed checks .* 100 a day",
        ),
        ({"CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION": "0/86400"}, "unbounded"),
        ({"CLAVE_COMPAT_ANONYMOUS": "true"}, "CLAVE_LIMIT_PEER_IP"),
        # What goes to a webhook (a message with its code) never crosses a network in clear.
        (
            {"CLAVE_WEBHOOK_URL": "http://sender.example/send", "CLAVE_WEBHOOK_SECRET": "whsec_x"},
            "CLAVE_WEBHOOK_URL must be an https:// URL",
        ),
        (
            {"CLAVE_EVENTS_URL": "http://10.0.0.8/hook", "CLAVE_EVENTS_SECRET": "whsec_x"},
            "CLAVE_EVENTS_URL must be an https:// URL",
        ),
        ({"CLAVE_EVENTS_URL": "ftp://x", "CLAVE_EVENTS_SECRET": "whsec_x"}, "CLAVE_EVENTS_URL"),
    ],
)
def test_bad_values_stop_startup_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.load(env)


def test_limits_and_their_defaults() -> None:
    limits = Settings.load({}).verify.limits
    assert (limits.sends_per_day.count, limits.sends_per_day.window) == (2000, 86400)
    budget = limits.failed_checks_per_destination
    assert (budget.count, budget.window, budget.code) == (15, 86400, "too_many_failed_checks")
    assert limits.spend_cap.code == "daily_send_cap_reached"
    # Within the bound, the operator may choose: 8 digits allow up to 10,000 guesses a day.
    custom = Settings.load(
        {"CLAVE_CODE_LENGTH": "8", "CLAVE_LIMIT_FAILED_CHECKS_PER_DESTINATION": "10000/86400"}
    )
    assert custom.verify.limits.failed_checks_per_destination.count == 10000
    anonymous = Settings.load({"CLAVE_COMPAT_ANONYMOUS": "true", "CLAVE_LIMIT_PEER_IP": "true"})
    assert anonymous.verify.compat_anonymous


def test_hmac_keys_newest_first_and_validated() -> None:
    keys = parse_hmac_keys(f"new:{key(b'n')}, old:{key(b'o')}", source="X")
    assert [k for k, _ in keys] == ["new", "old"]
    assert keys[0][1] == b"n" * 32
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        parse_hmac_keys(f"a:{key(n=8)}", source="X")
    with pytest.raises(SettingsError, match="twice"):
        parse_hmac_keys(f"a:{key()},a:{key()}", source="X")
    with pytest.raises(SettingsError, match="base64"):
        parse_hmac_keys("a:!!!notbase64!!!", source="X")


def test_hmac_keys_as_a_json_object() -> None:
    # What Secrets Manager's GenerateSecretString makes: {"k1": "<64 letters and digits>"}.
    generated = "aB3" * 21 + "z"
    newest = key(b"n")
    keys = parse_hmac_keys(f'{{"k2": "{newest}", "k1": "{generated}"}}', source="X")
    assert [k for k, _ in keys] == ["k2", "k1"]
    assert keys[0][1] == b"n" * 32
    assert keys[1][1] == base64.b64decode(generated)
    for bad, message in (("{nope", "valid JSON"), ('{"a": 1}', "JSON object"), ("{}", "no keys")):
        with pytest.raises(SettingsError, match=message):
            parse_hmac_keys(bad, source="X")


def test_secret_never_echoed_in_errors() -> None:
    secret = base64.urlsafe_b64encode(b"s" * 8).decode()
    with pytest.raises(SettingsError) as info:
        parse_hmac_keys(f"a:{secret}", source="X")
    assert secret not in str(info.value)


def test_smtp_url_forms() -> None:
    plain = SmtpConfig.from_url("smtp://user:p%40ss@mail.example.com?starttls=true")
    assert (plain.host, plain.port, plain.username, plain.password) == (
        "mail.example.com",
        587,
        "user",
        "p@ss",
    )
    assert plain.start_tls is True
    assert plain.use_tls is False
    implicit = SmtpConfig.from_url("smtps://mail.example.com")
    assert (implicit.port, implicit.use_tls, implicit.start_tls) == (465, True, False)


def test_a_redis_password_of_its_own() -> None:
    store = Settings.load(
        {
            "CLAVE_VERIFY_STORE": "rediss://cache.example:6379/0",
            "CLAVE_REDIS_PASSWORD": "p@ss/w:rd",
            "CLAVE_HMAC_KEYS": f"k1:{key()}",
        }
    ).verify.store.url
    assert store is not None
    assert store == "rediss://:p%40ss%2Fw%3Ard@cache.example:6379/0"
    assert "p%40ss" not in redacted(store)
    assert redacted(store) == "rediss://:***@cache.example:6379/0"
    for env in (
        {"CLAVE_REDIS_PASSWORD": "x"},  # the store is SQLite
        {"CLAVE_VERIFY_STORE": "redis://:a@h:6379/0", "CLAVE_REDIS_PASSWORD": "b"},
    ):
        with pytest.raises(SettingsError, match="CLAVE_REDIS_PASSWORD"):
            Settings.load(env)


def test_a_database_password_per_domain() -> None:
    """The monolith connects as three users: one PGPASSWORD cannot serve them all."""
    password = "p@ss/w:rd %?#"
    settings = Settings.load(
        {
            "CLAVE_USERS_DB": "postgresql://clave_users@db.example:5432/users?sslmode=require",
            "CLAVE_USERS_DB_PASSWORD": password,
            "CLAVE_THREADS_DB": "postgres://clave_threads@db.example/threads",
            "CLAVE_THREADS_DB_PASSWORD": "other",
            "CLAVE_POSTS_DB": "postgresql://clave_posts@db.example/posts",
        }
    )
    users = settings.databases["users"]
    assert users == (
        "postgresql://clave_users:p%40ss%2Fw%3Ard%20%25%3F%23@db.example:5432/users?sslmode=require"
    )
    assert unquote(urlsplit(users).password or "") == password  # as asyncpg reads it
    assert settings.databases["threads"] == "postgres://clave_threads:other@db.example/threads"
    assert settings.databases["posts"] == "postgresql://clave_posts@db.example/posts"  # PGPASSWORD
    assert "p%40ss" not in repr(settings)
    assert redacted(users) == "postgresql://clave_users:***@db.example:5432/users?sslmode=require"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLAVE_USERS_DB_PASSWORD": "s3cret"}, "only for a postgresql:// CLAVE_USERS_DB"),
        (
            {"CLAVE_POSTS_DB": "sqlite:///p.db", "CLAVE_POSTS_DB_PASSWORD": "s3cret"},
            "CLAVE_POSTS_DB_PASSWORD is only for a postgresql:// CLAVE_POSTS_DB",
        ),
        (
            {"CLAVE_USERS_DB": "postgresql://u:old@h/users", "CLAVE_USERS_DB_PASSWORD": "s3cret"},
            "CLAVE_USERS_DB_PASSWORD is set and CLAVE_USERS_DB has one too",
        ),
        ({"CLAVE_USERS_DB": "mysql://u:s3cret@h/users"}, r"got 'mysql://u:\*\*\*@h/users'"),
    ],
)
def test_a_database_password_that_cannot_be_used(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        Settings.load(env)
    assert "s3cret" not in str(info.value)


def test_the_database_pool_size() -> None:
    assert Settings.load({}).db_pool_size == 10
    assert Settings.load({"CLAVE_DB_POOL_SIZE": "25"}).db_pool_size == 25
    for bad in ("0", "101", "many"):
        with pytest.raises(SettingsError, match="CLAVE_DB_POOL_SIZE"):
            Settings.load({"CLAVE_DB_POOL_SIZE": bad})


TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "token-from-the-secret",
    "TWILIO_FROM": "+15005550006",
    "TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32,
}


def test_provider_settings_from_one_json_secret() -> None:
    """ECS injects a whole Secrets Manager secret as CLAVE_PROVIDERS: a key it lacks is unset,
    where keys injected one by one would stop the task."""
    providers = Settings.load(
        {
            "CLAVE_PROVIDERS": json.dumps(
                TWILIO
                | {"TWILIO_WHATSAPP_FROM": "", "SMTP_URL": "smtp://u:p@mail.example"}
                | {"EMAIL_FROM": "codes@example.com", "SNS_SENDER_ID": "clave"}
            ),
            "CLAVE_SNS": "true",
            "CLAVE_AWS_REGION": "eu-west-1",
        }
    ).verify.providers
    assert providers.twilio is not None
    assert (providers.twilio.account_sid, providers.twilio.auth_token) == (
        TWILIO["TWILIO_ACCOUNT_SID"],
        "token-from-the-secret",
    )
    assert providers.twilio.sms_from == "+15005550006"
    assert providers.twilio.messaging_service_sid == TWILIO["TWILIO_MESSAGING_SERVICE_SID"]
    assert providers.twilio.whatsapp_from is None  # "" is unset
    assert providers.twilio.call_from is None  # missing is unset
    assert providers.smtp is not None
    assert (providers.smtp.username, providers.smtp.password) == ("u", "p")
    assert (providers.email_from, providers.sns_sender_id) == ("codes@example.com", "clave")


def test_a_provider_variable_wins_over_the_json_secret() -> None:
    twilio = Settings.load(
        {
            "CLAVE_PROVIDERS": json.dumps(TWILIO),
            "CLAVE_TWILIO_FROM": "+15005550009",
            "CLAVE_TWILIO_CALL_FROM": "",  # empty: unset, as everywhere
        }
    ).verify.providers.twilio
    assert twilio is not None
    assert (twilio.sms_from, twilio.auth_token) == ("+15005550009", "token-from-the-secret")
    # Without CLAVE_PROVIDERS nothing changes; the pair rule holds across both sources.
    assert Settings.load({}).verify.providers.twilio is None
    with pytest.raises(SettingsError, match="go together"):
        Settings.load({"CLAVE_PROVIDERS": json.dumps({"TWILIO_AUTH_TOKEN": "t"})})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"TWILIO_AUTH_TOKEN": "s3cret"', "CLAVE_PROVIDERS is not valid JSON"),
        ('["s3cret"]', "CLAVE_PROVIDERS must be a JSON object"),
        ('{"TWILIO_AUTH_TOKEN": ["s3cret"]}', "the value of TWILIO_AUTH_TOKEN must be a string"),
        ('{"TWILIO_FROM": 15005550006}', "the value of TWILIO_FROM must be a string"),
        # Only providers' credentials and senders: not how clave reaches them.
        ('{"TWILIO_BASE_URL": "https://s3cret"}', r"unknown key\(s\) TWILIO_BASE_URL"),
        ('{"HMAC_KEYS": "s3cret"}', r"unknown key\(s\) HMAC_KEYS"),
        ('{"CLAVE_TWILIO_FROM": "s3cret"}', r"unknown key\(s\) CLAVE_TWILIO_FROM"),
        ('{"s3cret": ""}', "a key that is no setting name"),
    ],
)
def test_a_bad_provider_secret_is_named_never_shown(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        Settings.load({"CLAVE_PROVIDERS": value})
    assert "s3cret" not in str(info.value)
    if "unknown" in message:
        assert "TWILIO_AUTH_TOKEN, TWILIO_CALL_FROM" in str(info.value)  # what it may hold


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"CLAVE_VERIFY_STORE": "redis://127.0.0.1:6379/0"}, "the verify store is shared"),
        ({"CLAVE_HOST": "0.0.0.0"}, r"clave listens beyond this machine \(CLAVE_HOST=0.0.0.0\)"),
        ({"CLAVE_HOST": "10.0.0.5"}, "clave listens beyond this machine"),
        ({"CLAVE_HOST": "clave.internal"}, "clave listens beyond this machine"),
    ],
)
def test_generated_hmac_keys_only_for_a_lone_local_instance(env: dict[str, str], why: str) -> None:
    with pytest.raises(SettingsError, match=f"CLAVE_HMAC_KEYS is required: {why}"):
        Settings.load(env)
    assert Settings.load(env | {"CLAVE_HMAC_KEYS": f"k1:{key()}"}).verify.hmac_keys
    # A component without verify does not seal codes: it needs no key.
    assert Settings.load(env | {"CLAVE_SERVICES": "threads"}).verify.hmac_keys is None
    for local in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        Settings.load({"CLAVE_HOST": local})


def test_webhooks_over_https_or_to_this_machine() -> None:
    for url in ("https://sender.example/send", "http://127.0.0.1:9000/send", "http://localhost/x"):
        env = {"CLAVE_WEBHOOK_URL": url, "CLAVE_WEBHOOK_SECRET": "whsec_" + "a" * 44}
        webhook = Settings.load(env).verify.providers.webhook
        assert webhook is not None
        assert webhook.url == url
