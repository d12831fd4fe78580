"""The `clave` command: serve, manage services and API keys, set up the forum databases."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from clave import __version__
from clave.bootstrap import DOMAINS, FORUM, Settings, prepare
from clave.platform.errors import ClaveError
from clave.platform.logs import configure_logging
from clave.platform.server import run_server
from clave.platform.settings import Env, SettingsError, export
from clave.topology.routes import FORMATS, fixed_haproxy, render, save_and_apply, table_in_use
from clave.topology.state import run_dir_in
from clave.topology.table import MONOLITH, RoutingTable, Topology
from clave.topology.up import Stack
from clave.users.bootstrap import issue_user_token
from clave.verify.bootstrap import open_admin
from clave.verify.errors import InvalidParameter
from clave.verify.models import EVERY_ACCOUNT, Channel, Policy
from clave.verify.safe_list import SafeNumbers
from clave.verify.tenants import ACCOUNT_PREFIX, DEFAULT_ACCOUNT, DEFAULT_TENANT


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--friendly-name", help="name shown in messages")
    parser.add_argument("--code-length", type=int, help="digits per code (4-10)")
    parser.add_argument("--code-ttl", type=int, help="seconds a code lives, from the first send")
    parser.add_argument("--max-checks", type=int, help="check attempts per verification")
    parser.add_argument("--max-sends", type=int, help="sends per destination per window")
    parser.add_argument("--send-window", type=int, help="the send window in seconds")
    parser.add_argument("--channels", help="comma-separated: sms,whatsapp,call,email")
    parser.add_argument(
        "--countries", help="phone sends only to these ISO countries, e.g. US,CA,ES ('' for all)"
    )
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=COUNT/SECONDS",
        help="this service's own rate limit (sends_per_ip, sends_per_service, sends_per_day, "
        "failed_checks_per_ip, failed_checks_per_destination; sends_per_day=N means N/86400); "
        "NAME=default drops it; repeatable",
    )


async def _safelist(safe: SafeNumbers, verb: str, number: str | None) -> str:
    """`clave fraud safelist add|remove|list`: the operator's entries (every tenant's)."""
    if verb == "list":
        listed = await safe.list(EVERY_ACCOUNT)
        return "\n".join(f"{e.number}  {e.sid}  added {_when(e.created_at)}" for e in listed) or (
            "the safe list is empty"
        )
    if number is None:
        raise InvalidParameter(f"clave fraud safelist {verb} needs a phone number")
    if verb == "add":
        entry = await safe.add(EVERY_ACCOUNT, number)
        return f"{entry.number} is on the safe list ({entry.sid})"
    if not await safe.remove(EVERY_ACCOUNT, number):
        raise InvalidParameter(f"{number} is not on the safe list")
    return f"{number} is off the safe list"


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
    if args.limit:
        own = dict(base.limits)
        for item in args.limit:
            name, sep, value = item.partition("=")
            if not sep:
                raise ClaveError(f"--limit takes NAME=COUNT/SECONDS, got {item!r}")
            if value == "default":
                own.pop(name, None)
            elif name == "sends_per_day" and value.isdigit():
                own[name] = f"{value}/86400"
            else:
                own[name] = value
        changes["limits"] = tuple(sorted(own.items()))
    if args.countries is not None:
        changes["countries"] = frozenset(
            c.strip().upper() for c in args.countries.split(",") if c.strip()
        )
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
    serve.add_argument(
        "--component",
        "--service",
        dest="component",
        choices=DOMAINS,
        metavar="NAME",
        help=f"serve one component alone: one domain ({', '.join(DOMAINS)}); --service is its "
        "older name, still accepted",
    )
    serve.add_argument(
        "--seed", action="store_true", help="seed the sample forum data (CLAVE_SEED)"
    )

    apikey = commands.add_parser("apikey", help="API keys")
    apikey_cmds = apikey.add_subparsers(dest="action", required=True)
    create_key = apikey_cmds.add_parser("create", help="print one new API key on stdout")
    create_key.add_argument("--service", default=DEFAULT_TENANT, help="the service (tenant)")
    create_key.add_argument("--name", default="", help="what the key is for (shown by list)")
    create_key.add_argument(
        "--expires", metavar="DURATION", help="the key stops working after 30d, 12h, 90m or 600s"
    )
    create_key.add_argument(
        "--twilio",
        action="store_true",
        help="credentials for the Twilio-compatible API instead: the account sid with an auth "
        "token, and an API key sid with its secret (the account manages the services it "
        "creates and those granted to it)",
    )
    create_key.add_argument(
        "--account",
        default=DEFAULT_ACCOUNT,
        help=f"with --twilio: the account, created on first use ({DEFAULT_ACCOUNT})",
    )
    list_keys = apikey_cmds.add_parser("list", help="API keys (never their secrets)")
    list_keys.add_argument("--service", help="one service's keys")
    list_keys.add_argument("--twilio", action="store_true", help="the /v2 accounts' keys")
    list_keys.add_argument("--account", help="one /v2 account's keys")
    revoke_key = apikey_cmds.add_parser("revoke", help="end an API key at once")
    revoke_key.add_argument("id", help="the key's id, as list shows it")

    user = commands.add_parser("user", help="forum users")
    user_cmds = user.add_subparsers(dest="action", required=True)
    user_token = user_cmds.add_parser(
        "token",
        help="print a new token for a user on stdout (shown once; the user's old one stops "
        "working)",
    )
    user_token.add_argument("id", type=int, help="the user's id")

    tenant = commands.add_parser("service", help="services (tenants) and their policies")
    tenant_cmds = tenant.add_subparsers(dest="action", required=True)
    create = tenant_cmds.add_parser("create", help="create a service")
    create.add_argument("name")
    _policy_options(create)
    update = tenant_cmds.add_parser("update", help="change a service's policy")
    update.add_argument("name")
    _policy_options(update)
    tenant_cmds.add_parser("list", help="list services")
    for verb, what in (("grant", "let"), ("ungrant", "stop letting")):
        grant = tenant_cmds.add_parser(verb, help=f"{what} a /v2 account see and manage a service")
        grant.add_argument("name")
        grant.add_argument("--account", required=True, help="the account's name")

    fraud = commands.add_parser("fraud", help="the fraud guard")
    fraud_cmds = fraud.add_subparsers(dest="action", required=True)
    stats = fraud_cmds.add_parser("stats", help="sends the guard refused, per reason and day")
    stats.add_argument("--service", default=DEFAULT_TENANT)
    stats.add_argument("--days", type=int, default=7)
    safelist = fraud_cmds.add_parser(
        "safelist", help="numbers the guard never blocks, for every service (Twilio's Safe List)"
    )
    safelist.add_argument("verb", choices=["add", "remove", "list"])
    safelist.add_argument("number", nargs="?", help="an E.164 phone number (add, remove)")

    factors = commands.add_parser("factors", help="authenticator-app factors")
    factor_cmds = factors.add_subparsers(dest="action", required=True)
    factor_cmds.add_parser(
        "rekey",
        help="seal every factor's secret under the newest CLAVE_ENCRYPTION_KEYS key (after "
        "which an older key may be removed)",
    )

    up = commands.add_parser("up", help="the whole topology on this machine, behind haproxy")
    up.add_argument("--port", type=int, default=8080, help="the load balancer's port (8080)")
    up.add_argument(
        "--topology",
        choices=[t.value for t in Topology],
        default=Topology.MIXED.value,
        help="monolith alone, every domain its own component, or mixed as the routing table "
        "says (default)",
    )
    up.add_argument(
        "--workers",
        action="append",
        default=[],
        metavar="NAME=N",
        help="worker processes of the monolith or one component (repeatable; default 1 each)",
    )
    up.add_argument("--routes", type=Path, help="routing table (CLAVE_ROUTES, ./routes.toml)")
    up.add_argument(
        "--restart-delay", type=float, default=2.0, help="seconds before a dead component restarts"
    )
    up.add_argument("--seed", action="store_true", help="seed the sample forum data (CLAVE_SEED)")
    up.add_argument(
        "--show-server",
        action="store_true",
        help="add an X-Clave-Server header naming the server that answered (to watch a "
        "migration; never in production: it shows clients the topology)",
    )

    db = commands.add_parser("db", help="the forum domains' PostgreSQL databases")
    db_cmds = db.add_subparsers(dest="action", required=True)
    init_help = (
        "as the admin user (CLAVE_DB_ADMIN_URL, CLAVE_DB_ADMIN_PASSWORD or PGPASSWORD), "
        "create each forum domain's user (from CLAVE_<DOMAIN>_DB, its password "
        "CLAVE_<DOMAIN>_DB_PASSWORD) and its database, owned by that user and closed to the "
        "others; again after a password rotation"
    )
    db_init = db_cmds.add_parser("init", help=init_help, description=init_help)
    db_init.add_argument(
        "--domains",
        default=",".join(FORUM),
        help=f"comma-separated, among {','.join(FORUM)} (default: all)",
    )

    routes = commands.add_parser("routes", help="the routing table")
    routes_cmds = routes.add_subparsers(dest="action", required=True)
    show = routes_cmds.add_parser("show", help="print the table, or what is generated from it")
    show.add_argument("--format", choices=FORMATS, default="table")
    show.add_argument("--routes", type=Path)
    fixed = show.add_argument_group(
        "haproxy for fixed addresses (containers), instead of the running clave up's"
    )
    fixed.add_argument("--topology", choices=[t.value for t in Topology], default="mixed")
    fixed.add_argument("--bind", default="*:8080", help="address haproxy listens on (*:8080)")
    fixed.add_argument("--monolith", metavar="HOST:PORT", help="the monolith's address")
    fixed.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="a component's address (repeat)",
    )
    fixed.add_argument(
        "--resolver",
        metavar="HOST:PORT",
        help="DNS server for server names at run time (Docker's: 127.0.0.11:53)",
    )
    fixed.add_argument(
        "--stats-socket",
        type=Path,
        default=Path("/var/lib/haproxy/admin.sock"),
        help="admin socket (/var/lib/haproxy/admin.sock)",
    )
    shift = routes_cmds.add_parser(
        "shift", help="send PERCENT of a component's traffic to it rather than the monolith"
    )
    shift.add_argument("component")
    shift.add_argument("percent", type=int)
    shift.add_argument("--routes", type=Path)
    retire = routes_cmds.add_parser(
        "retire", help="stop serving a component's paths from the monolith"
    )
    retire.add_argument("component")
    retire.add_argument("--routes", type=Path)
    return top


async def _with_verify(settings: Settings, action: str, args: argparse.Namespace) -> str:
    async with open_admin(settings.verify, settings.platform) as admin:
        tenants = admin.tenants
        if action == "apikey-create":
            expires_at = time.time() + _duration(args.expires) if args.expires else None
            if args.twilio:
                sid, token, key_sid, secret = await tenants.create_twilio_credentials(
                    admin.settings.default_policy, account=args.account, expires_at=expires_at
                )
                return (
                    f"# Twilio-compatible API (/v2), account {args.account}: HTTP Basic with "
                    "either pair. Shown once.\n"
                    f"TWILIO_ACCOUNT_SID={sid}\nTWILIO_AUTH_TOKEN={token}\n"
                    f"TWILIO_API_KEY={key_sid}\nTWILIO_API_SECRET={secret}"
                )
            return await tenants.create_api_key(args.service, name=args.name, expires_at=expires_at)
        if action == "apikey-list":
            listed = await tenants.list_api_keys(
                tenant=args.service, account=args.account, twilio=args.twilio
            )
            now = time.time()
            rows = ["id\towner\tname\tcreated\tlast used\texpires\tstatus"]
            rows += [
                "\t".join(
                    (
                        k.key.id,
                        k.owner.name,
                        k.key.name or "-",
                        _when(k.key.created_at),
                        _when(k.key.last_used_at),
                        _when(k.key.expires_at, "never"),
                        k.status(now),
                    )
                )
                for k in listed
            ]
            return "\n".join(rows)
        if action == "apikey-revoke":
            await tenants.revoke_api_key(args.id)
            return f"revoked {args.id}"
        if action == "fraud-stats":
            tenant = await tenants.get_tenant(args.service)
            days = max(1, min(args.days, 14))
            counts = await admin.guard.blocked(tenant, days)
            mode = (
                "record_only: counted, not refused"
                if admin.settings.guard.mode == "record_only"
                else "enforce"
            )
            rows = [f"fraud guard ({mode}), service {tenant.name}, last {days} days, oldest first"]
            rows += [
                f"{reason:28} {' '.join(f'{n:5d}' for n in per_day)}  total {sum(per_day)}"
                for reason, per_day in counts.items()
            ]
            return "\n".join(rows)
        if action == "factors-rekey":
            done, current = await admin.factors.rekey()
            return f"{done} factor secrets sealed under the newest key; {current} were already"
        if action == "fraud-safelist":
            return await _safelist(admin.safe_numbers, args.verb, args.number)
        if action in ("service-grant", "service-ungrant"):
            tenant = await tenants.grant(args.name, args.account, granted=action == "service-grant")
        elif action == "service-create":
            tenant = await tenants.create_tenant(args.name, _apply_policy(Policy(), args))
        elif action == "service-update":
            # On the policy as stored at the change (a /v2 change meanwhile is kept).
            tenant = await tenants.change_policy(args.name, lambda p: _apply_policy(p, args))
        else:
            lines = []
            accounts = {
                a.id: a.name.removeprefix(ACCOUNT_PREFIX) for a in await tenants.list_accounts()
            }
            for s in await tenants.list_tenants():
                p = s.policy
                channels = ",".join(sorted(c.value for c in p.channels))
                countries = ",".join(sorted(p.countries)) or "all"
                own = ",".join(f"{k}={v}" for k, v in p.limits) or "deployment"
                lines.append(
                    f"{s.name}\t{s.id}\tlength={p.code_length} ttl={p.code_ttl}s "
                    f"checks={p.max_checks} sends={p.max_sends}/{p.send_window}s "
                    f"channels={channels} countries={countries} limits={own} "
                    f"accounts={','.join(sorted(accounts.get(a, a) for a in s.accounts)) or '-'}"
                )
            return "\n".join(lines)
        return f"{tenant.name}\t{tenant.id}"


def _duration(text: str) -> float:
    """Seconds in `30d`, `12h`, `90m` or `600s`."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise ClaveError(f"--expires takes a duration such as 30d, 12h, 90m or 600s, got {text!r}")
    return int(number) * units[unit]


def _when(ts: float | None, none: str = "-") -> str:
    """A time for listings (UTC, to the minute)."""
    if ts is None:
        return none
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ts))


def _workers(values: list[str]) -> dict[str, int]:
    counts = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or name not in (*DOMAINS, MONOLITH) or not number.isdigit() or int(number) < 1:
            raise SettingsError(
                f"--workers takes NAME=N with NAME among monolith, {', '.join(DOMAINS)}: {value!r}"
            )
        counts[name] = int(number)
    return counts


def _forum_domains(value: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in value.split(",") if name.strip())
    if not chosen or any(name not in FORUM for name in chosen):
        raise SettingsError(f"--domains takes names among {', '.join(FORUM)}, got {value!r}")
    return tuple(dict.fromkeys(chosen))


def _servers(values: list[str]) -> dict[str, str]:
    servers = {}
    for value in values:
        name, sep, address = value.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or name not in DOMAINS or not colon or not host or not port.isdigit():
            raise SettingsError(
                f"--server takes NAME=HOST:PORT with NAME among {', '.join(DOMAINS)}: {value!r}"
            )
        servers[name] = address
    return servers


def _routes(settings: Settings, args: argparse.Namespace) -> str:
    run_dir = run_dir_in(settings.platform.data_dir)
    path = table_in_use(run_dir, settings.platform.routes, args.routes)
    table = RoutingTable.load(path, DOMAINS)
    if args.action == "show" and args.format == "haproxy" and (args.server or args.monolith):
        return fixed_haproxy(
            table,
            topology=Topology(args.topology),
            bind=args.bind,
            monolith=args.monolith,
            components=_servers(args.server),
            stats_socket=args.stats_socket,
            resolver=args.resolver,
        )
    if args.action == "show":
        return render(table, args.format, run_dir, DOMAINS)
    if args.action == "shift":
        return save_and_apply(table.shift(args.component, args.percent), path, run_dir)
    return save_and_apply(table.retire(args.component), path, run_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clave` console script."""
    args = parser().parse_args(argv)
    # Whatever clave writes (databases, key files, logs of `clave up`) is its own to read.
    umask = os.umask(0o077)
    try:
        return _run(args)
    finally:
        os.umask(umask)


def _run(args: argparse.Namespace) -> int:
    """Carry out a parsed command; the exit code."""
    try:
        if args.command == "serve":
            export(
                {
                    "HOST": args.host,
                    "PORT": args.port,
                    "WORKERS": args.workers,
                    "SERVICES": args.component,
                    "SEED": "true" if args.seed else None,
                }
            )
            settings = Settings.load()
            configure_logging(settings.platform.log_level, settings.platform.log_format)
            prepare(settings)
            run_server(
                "clave.bootstrap:create_app", settings.platform, workers=settings.platform.workers
            )
            return 0
        if args.command == "up":
            export({"SEED": "true" if args.seed else None})
            settings = Settings.load()
            configure_logging(settings.platform.log_level, settings.platform.log_format)
            stack = Stack(
                table_path=args.routes or settings.platform.routes,
                topology=Topology(args.topology),
                port=args.port,
                domains=DOMAINS,
                workers=_workers(args.workers),
                run_dir=run_dir_in(settings.platform.data_dir),
                env=os.environ,
                restart_delay=args.restart_delay,
                prepare=lambda: prepare(settings, DOMAINS),
                show_server=args.show_server,
            )
            return stack.run()
        if args.command == "db":
            # Only what it uses: the one-off task that runs it need not carry every setting.
            # (Imported here: asyncpg has no place in `clave serve`'s workers, forked from this.)
            from clave.platform.db_init import DbInitSettings, init_databases

            env = Env()
            init = DbInitSettings.from_env(env, _forum_domains(args.domains))
            asyncio.run(init_databases(init, lambda line: print(line, flush=True)))
            return 0
        settings = Settings.load()
        configure_logging(settings.platform.log_level, settings.platform.log_format)
        if args.command == "routes":
            print(_routes(settings, args))
            return 0
        if args.command == "user":
            print(
                asyncio.run(
                    issue_user_token(
                        settings.databases["users"], settings.platform.data_dir, args.id
                    )
                )
            )
            return 0
        action = f"{args.command}-{args.action}"
        print(asyncio.run(_with_verify(settings, action, args)))
        return 0
    except SettingsError as exc:
        print(f"clave: configuration error: {exc}", file=sys.stderr)
        return 2
    except ClaveError as exc:
        print(f"clave: {exc.message}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"clave: {exc}", file=sys.stderr)
        return 1
