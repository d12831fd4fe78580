"""The pipelined script connection (platform/redis_scripts) against real redis-servers: replies
reach their own callers, scripts survive a flush, a lost or silent server fails the calls in
flight and the next call reconnects; passwords, databases and TLS as the URL says."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clave.platform.errors import StoreError
from clave.platform.redis_scripts import ScriptConnection, ScriptError, encode
from tests.services import wait_until
from tests.support import free_port

# Every test here talks to a redis-server or a TCP server of its own.
pytestmark = pytest.mark.e2e

SCRIPTS = {
    "echo": "return ARGV[1]",
    "set": "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])",
    "fail": "return redis.error_reply('refused: ' .. ARGV[1])",
    "numbers": "return {1, tonumber(ARGV[1]), false}",
}


async def echo_many(url: str, count: int) -> list[bytes]:
    scripts = ScriptConnection(url, SCRIPTS)
    try:
        replies = await asyncio.gather(
            *(scripts.call("echo", (), (f"caller {i}",)) for i in range(count))
        )
        return list(replies)
    finally:
        await scripts.close()


async def test_each_caller_gets_its_own_reply(redis_url: str) -> None:
    replies = await echo_many(redis_url, 3000)
    assert replies == [f"caller {i}".encode() for i in range(3000)]


def test_under_uvloop_as_in_a_worker(redis_url: str) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(echo_many(redis_url, 500)) == [f"caller {i}".encode() for i in range(500)]


async def test_replies_keep_redis_types_and_errors_stay_with_their_caller(
    redis_url: str,
) -> None:
    scripts = ScriptConnection(redis_url, SCRIPTS)
    try:
        outcomes = await asyncio.gather(
            scripts.call("numbers", (), (7,)),
            scripts.call("fail", (), ("x",)),
            scripts.call("set", ("clave-test:scripts:k",), (2.5,)),
            return_exceptions=True,
        )
        assert outcomes[0] == [1, 7, None]
        assert isinstance(outcomes[1], ScriptError)
        assert str(outcomes[1]) == "refused: x"
        assert outcomes[2] == b"2.5"
    finally:
        await scripts.close()


async def test_a_flushed_script_cache_is_filled_again(redis_url: str) -> None:
    scripts = ScriptConnection(redis_url, SCRIPTS)
    try:
        assert await scripts.call("echo", (), ("before",)) == b"before"
        with redis.Redis.from_url(redis_url) as admin:
            admin.script_flush()
        assert await scripts.call("echo", (), ("after",)) == b"after"
        assert await scripts.call("echo", (), ("again",)) == b"again"
    finally:
        await scripts.close()


async def test_a_killed_connection_is_opened_again(redis_url: str) -> None:
    scripts = ScriptConnection(redis_url, SCRIPTS)
    admin = redis.Redis.from_url(redis_url)
    try:
        await scripts.call("echo", (), ("first",))
        ours = [c for c in admin.client_list() if c["cmd"] in ("evalsha", "eval")]
        for client in ours:
            admin.client_kill_filter(_id=client["id"])
        # The call made before the loop heard of it meets the closed socket and fails (it may
        # have run: nobody can tell); the next one reconnects.
        with pytest.raises(StoreError, match="connection was lost"):
            await scripts.call("echo", (), ("probe",))
        assert await scripts.call("echo", (), ("back",)) == b"back"
    finally:
        await scripts.close()
        admin.close()


class Silent:
    """A TCP server that accepts and reads, answering nothing (or hanging up on `hang_up`)."""

    def __init__(self, *, hang_up: bool = False) -> None:
        self.hang_up = hang_up
        self.accepted = 0
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await reader.read(100)
        if not self.hang_up:
            await self.done.wait()
        writer.close()
        await writer.wait_closed()

    async def serve(self) -> tuple[asyncio.Server, int]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return server, server.sockets[0].getsockname()[1]

    async def stop(self, server: asyncio.Server) -> None:
        self.done.set()
        server.close()
        await server.wait_closed()


async def test_a_silent_server_fails_the_waiting_calls_after_the_timeout() -> None:
    silent = Silent()
    server, port = await silent.serve()
    scripts = ScriptConnection(f"redis://127.0.0.1:{port}", SCRIPTS, timeout=0.3)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcomes = await asyncio.gather(
            *(scripts.call("echo", (), (str(i),)) for i in range(5)), return_exceptions=True
        )
        waited = loop.time() - started
        assert all(isinstance(o, StoreError) for o in outcomes), outcomes
        assert "did not answer for 0.3 s" in str(outcomes[0])
        assert 0.3 <= waited < 2.0
    finally:
        await scripts.close()
        await silent.stop(server)


async def test_a_server_that_hangs_up_fails_the_calls_and_the_next_reconnects() -> None:
    hanging = Silent(hang_up=True)
    server, port = await hanging.serve()
    scripts = ScriptConnection(f"redis://127.0.0.1:{port}", SCRIPTS)
    try:
        with pytest.raises(StoreError, match="connection was lost"):
            await scripts.call("echo", (), ("one",))
        with pytest.raises(StoreError, match="connection was lost"):
            await scripts.call("echo", (), ("two",))
        assert hanging.accepted == 2
    finally:
        await scripts.close()
        await hanging.stop(server)


async def test_closing_fails_the_waiting_calls_at_once() -> None:
    silent = Silent()
    server, port = await silent.serve()
    scripts = ScriptConnection(f"redis://127.0.0.1:{port}", SCRIPTS, timeout=30)
    try:
        waiting = asyncio.ensure_future(scripts.call("echo", (), ("x",)))
        await asyncio.sleep(0.1)
        await scripts.close()
        with pytest.raises(StoreError, match="closed"):
            await asyncio.wait_for(waiting, timeout=2)
        with pytest.raises(StoreError, match="not open"):
            await scripts.call("echo", (), ("after",))
    finally:
        await silent.stop(server)


async def test_closed_while_connecting_stays_closed(redis_url: str) -> None:
    scripts = ScriptConnection(redis_url, SCRIPTS)
    first = asyncio.ensure_future(scripts.call("echo", (), ("x",)))
    await asyncio.sleep(0)  # it is opening the connection
    await scripts.close()
    with pytest.raises(StoreError, match="not open"):
        await first
    with pytest.raises(StoreError, match="not open"):
        await scripts.call("echo", (), ("y",))


async def test_nothing_listening_is_a_store_error_naming_the_redacted_url() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    scripts = ScriptConnection(url, SCRIPTS, connect_timeout=2)
    with pytest.raises(StoreError, match=r"cannot reach Redis at redis://:\*\*\*@127") as caught:
        await scripts.call("echo", (), ("x",))
    assert "secret" not in str(caught.value)


def test_options_it_cannot_honour_are_refused() -> None:
    with pytest.raises(StoreError, match="health_check_interval"):
        ScriptConnection("redis://127.0.0.1/0?health_check_interval=3", SCRIPTS)


def test_arguments_are_written_as_redis_py_writes_them() -> None:
    assert encode(b"EVAL", "é", 1, 2.5, -3) == (
        b"*5\r\n$4\r\nEVAL\r\n$2\r\n\xc3\xa9\r\n$1\r\n1\r\n$3\r\n2.5\r\n$2\r\n-3\r\n"
    )
    for wrong in (True, None, [1]):
        with pytest.raises(TypeError):
            encode(wrong)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def redis_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail("redis-server is needed to start servers with passwords and TLS")
    return binary


def start_redis(binary: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def locked_redis(redis_binary: str) -> Iterator[int]:
    """A redis-server with a password for the default user and an ACL user of its own."""
    port = free_port()
    proc = start_redis(
        redis_binary,
        "--port",
        str(port),
        "--requirepass",
        "pa55",
        *("--user", "clave", "on", ">s3cret", "~*", "+@all"),
        *("--user", "fenced", "on", "nopass", "~fenced:*", "+@all"),
    )
    try:
        wait_until(lambda: _answers(f"redis://:pa55@127.0.0.1:{port}/0"), timeout=15)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str, **options: object) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, **options) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


@pytest.mark.parametrize("credentials", [":pa55", "clave:s3cret"])
async def test_password_user_and_database_from_the_url(locked_redis: int, credentials: str) -> None:
    url = f"redis://{credentials}@127.0.0.1:{locked_redis}/3"
    scripts = ScriptConnection(url, SCRIPTS)
    try:
        assert await scripts.call("set", ("clave-test:db",), (credentials,)) == credentials.encode()
    finally:
        await scripts.close()
    # Written into database 3, as redis-py reads the same URL.
    with redis.Redis.from_url(url) as three, redis.Redis.from_url(url[:-2] + "/0") as zero:
        assert three.get("clave-test:db") == credentials.encode()
        assert zero.get("clave-test:db") is None


async def test_a_user_without_a_password_is_that_user(locked_redis: int) -> None:
    """An ACL user with `nopass` logs in as itself (as redis-py does), so its key patterns
    hold: not as the default user."""
    scripts = ScriptConnection(f"redis://fenced@127.0.0.1:{locked_redis}/0", SCRIPTS)
    try:
        assert await scripts.call("set", ("fenced:k",), ("mine",)) == b"mine"
        with pytest.raises(ScriptError, match="NOPERM"):
            await scripts.call("set", ("elsewhere:k",), ("not mine",))
    finally:
        await scripts.close()


async def test_a_wrong_password_is_a_store_error(locked_redis: int) -> None:
    scripts = ScriptConnection(f"redis://:wrong@127.0.0.1:{locked_redis}/0", SCRIPTS)
    with pytest.raises(StoreError, match="cannot reach Redis"):
        await scripts.call("echo", (), ("x",))


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: object, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clave test CA")])
    ca = issue("clave test CA", ca_key, ca_name, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue("127.0.0.1", key, ca_name, ca_key, False)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_redis(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking TLS only, with a certificate for 127.0.0.1 from a test CA."""
    ca, cert, key = _certificates(tmp_path_factory.mktemp("tls"))
    port = free_port()
    proc = start_redis(
        redis_binary,
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(ca),
        "--tls-auth-clients",
        "no",
    )
    try:
        wait_until(
            lambda: _answers(f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=str(ca)), timeout=15
        )
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_tls_with_the_servers_ca(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    scripts = ScriptConnection(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", SCRIPTS)
    try:
        assert await scripts.call("echo", (), ("over TLS",)) == b"over TLS"
    finally:
        await scripts.close()


async def test_tls_refuses_a_certificate_it_cannot_verify(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    scripts = ScriptConnection(f"rediss://127.0.0.1:{port}/0", SCRIPTS)
    with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
        await scripts.call("echo", (), ("x",))
    # Told not to verify (as redis-py's ssl_cert_reqs=none), it connects.
    unchecked = ScriptConnection(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none", SCRIPTS)
    try:
        assert await unchecked.call("echo", (), ("unchecked",)) == b"unchecked"
    finally:
        await unchecked.close()


async def test_a_demoted_primary_is_left_for_a_new_connection(redis_binary: str) -> None:
    """After a failover the old primary answers writes with READONLY: the call fails, and the
    next one comes on a new connection (to whatever the name then resolves to)."""
    primary_port, port = free_port(), free_port()
    primary = start_redis(redis_binary, "--port", str(primary_port))
    replica = start_redis(
        redis_binary, "--port", str(port), "--replicaof", "127.0.0.1", str(primary_port)
    )
    url = f"redis://127.0.0.1:{port}/0"

    def ours(admin: redis.Redis) -> set[str]:
        return {c["id"] for c in admin.client_list() if c["cmd"] in ("evalsha", "eval")}

    try:
        wait_until(lambda: _answers(url), timeout=15)
        scripts = ScriptConnection(url, SCRIPTS)
        with redis.Redis.from_url(url) as admin:
            try:
                assert await scripts.call("echo", (), ("reads work",)) == b"reads work"
                before = ours(admin)
                with pytest.raises(ScriptError, match="READONLY"):
                    await scripts.call("set", ("clave-test:replica",), ("x",))
                assert await scripts.call("echo", (), ("again",)) == b"again"
                after = ours(admin)
                assert before
                assert after
                assert not before & after
            finally:
                await scripts.close()
    finally:
        for proc in (replica, primary):
            proc.terminate()
            proc.wait(timeout=10)
