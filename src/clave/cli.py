"""The `clave` command: serve, manage services and API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import replace

from clave import __version__
from clave.bootstrap import SERVICES, Settings, prepare
from clave.platform.errors import ClaveError
from clave.platform.logs import configure_logging
from clave.platform.server import run_server
from clave.platform.settings import SettingsError, export
from clave.verify.bootstrap import VerifyDomain
from clave.verify.models import Channel, Policy
from clave.verify.tenants import DEFAULT_SERVICE


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--friendly-name", help="name shown in messages")
    parser.add_argument("--code-length", type=int, help="digits per code (4-10)")
    parser.add_argument("--code-ttl", type=int, help="seconds a code lives, from the first send")
    parser.add_argument("--max-checks", type=int, help="check attempts per verification")
    parser.add_argument("--max-sends", type=int, help="sends per destination per window")
    parser.add_argument("--send-window", type=int, help="the send window in seconds")
    parser.add_argument("--channels", help="comma-separated: sms,whatsapp,call,email")


def _apply_policy(base: Policy, args: argparse.Namespace) -> Policy:
    changes: dict[str, object] = {}
    for field in (
        "friendly_name",
        "code_length",
        "code_ttl",
        "max_checks",
        "max_sends",
        "send_window",
    ):
        value = getattr(args, field)
        if value is not None:
            changes[field] = value
    if args.channels:
        try:
            changes["channels"] = frozenset(Channel(c.strip()) for c in args.channels.split(","))
        except ValueError:
            raise ClaveError("--channels must list sms, whatsapp, call or email") from None
    return replace(base, **changes)  # type: ignore[arg-type]


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="clave", description="Send and check one-time codes.")
    top.add_argument("--version", action="version", version=f"clave {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API (all domains: the monolith)")
    serve.add_argument("--host", help="address to bind (CLAVE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (CLAVE_PORT, default 8000)")
    serve.add_argument(
        "--workers", type=int, help="worker processes (CLAVE_WORKERS, default: cores)"
    )
    serve.add_argument("--service", choices=SERVICES, help="serve one service alone")
    serve.add_argument(
        "--seed", action="store_true", help="seed the sample forum data (CLAVE_SEED)"
    )

    apikey = commands.add_parser("apikey", help="API keys")
    apikey_cmds = apikey.add_subparsers(dest="action", required=True)
    create_key = apikey_cmds.add_parser("create", help="print one new API key on stdout")
    create_key.add_argument("--service", default=DEFAULT_SERVICE, help="the service (tenant)")

    service = commands.add_parser("service", help="services (tenants) and their policies")
    service_cmds = service.add_subparsers(dest="action", required=True)
    create = service_cmds.add_parser("create", help="create a service")
    create.add_argument("name")
    _policy_options(create)
    update = service_cmds.add_parser("update", help="change a service's policy")
    update.add_argument("name")
    _policy_options(update)
    service_cmds.add_parser("list", help="list services")
    return top


async def _with_verify(settings: Settings, action: str, args: argparse.Namespace) -> str:
    domain = VerifyDomain(settings.verify, settings.platform)
    domain.prepare()
    await domain.open()
    try:
        tenants = domain.tenants
        if action == "apikey-create":
            return await tenants.create_api_key(args.service)
        if action == "service-create":
            service = await tenants.create_service(args.name, _apply_policy(Policy(), args))
        elif action == "service-update":
            current = await tenants.get_service(args.name)
            service = await tenants.update_policy(args.name, _apply_policy(current.policy, args))
        else:
            lines = []
            for s in await tenants.list_services():
                p = s.policy
                channels = ",".join(sorted(c.value for c in p.channels))
                lines.append(
                    f"{s.name}\t{s.id}\tlength={p.code_length} ttl={p.code_ttl}s "
                    f"checks={p.max_checks} sends={p.max_sends}/{p.send_window}s "
                    f"channels={channels}"
                )
            return "\n".join(lines)
        return f"{service.name}\t{service.id}"
    finally:
        await domain.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clave` console script."""
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            export(
                {
                    "HOST": args.host,
                    "PORT": args.port,
                    "WORKERS": args.workers,
                    "SERVICES": args.service,
                    "SEED": "true" if args.seed else None,
                }
            )
            settings = Settings.load()
            configure_logging(settings.platform.log_level)
            prepare(settings)
            run_server(
                "clave.bootstrap:create_app", settings.platform, workers=settings.platform.workers
            )
            return 0
        settings = Settings.load()
        configure_logging(settings.platform.log_level)
        action = f"{args.command}-{args.action}"
        print(asyncio.run(_with_verify(settings, action, args)))
        return 0
    except SettingsError as exc:
        print(f"clave: configuration error: {exc}", file=sys.stderr)
        return 2
    except ClaveError as exc:
        print(f"clave: {exc.message}", file=sys.stderr)
        return 1
