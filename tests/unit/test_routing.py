from __future__ import annotations

import re
from pathlib import Path

import pytest

from clave.bootstrap import DOMAINS
from clave.platform.settings import SettingsError
from clave.topology.alb import alb_rules
from clave.topology.haproxy import haproxy_config
from clave.topology.table import RoutingTable, Topology

REPO_TABLE = Path(__file__).resolve().parents[2] / "routes.toml"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(body)
    return path


def test_the_checked_in_table_is_valid_and_covers_every_service() -> None:
    table = RoutingTable.load(REPO_TABLE, DOMAINS)
    assert {r.component for r in table.routes} == set(DOMAINS)
    assert [r.priority for r in table.routes] == sorted(r.priority for r in table.routes)
    assert table.route("users").paths == ("/api/users*",)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (
            '[services.users]\npaths = ["/api/users*"]\npriority = 2\n[services.posts]\npaths = ["/api/posts*"]\npriority = 2\n',
            "priority 2 is also",
        ),
        (
            '[services.users]\npaths = ["/api/users*"]\npriority = 2\nweight = 101\n',
            "weight must be 0-100",
        ),
        ('[services.users]\npaths = ["/api/users*"]\npriority = 1\n', "priority must be 2-50000"),
        ('[services.users]\npaths = ["api/users"]\npriority = 2\n', "bad path pattern"),
        (
            '[services.users]\npaths = ["/a*", "/b*", "/c*", "/d*", "/e*", "/f*"]\npriority = 2\n',
            "1 to 5 path patterns",
        ),
        (
            '[services.users]\npaths = ["/api/users*"]\npriority = 2\nretired = true\n',
            "retired needs weight 100",
        ),
        ('[services.billing]\npaths = ["/api/bills*"]\npriority = 2\n', "not a service"),
        (
            '[services.users]\npaths = ["/api/users*"]\npriority = 2\ncolour = "red"\n',
            "unknown keys",
        ),
        ("[services]\n", "no [services.NAME]"),
        ("not toml ===", "routing table"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(tmp_path: Path, body: str, complaint: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(complaint)):
        RoutingTable.load(write(tmp_path, body), DOMAINS)


def test_shift_retire_and_round_trip(tmp_path: Path) -> None:
    table = RoutingTable.load(REPO_TABLE, DOMAINS).shift("users", 10)
    assert table.route("users").weight == 10
    with pytest.raises(SettingsError, match="shift users to 100"):
        table.retire("users")
    with pytest.raises(SettingsError, match="weight must be 0-100"):
        table.shift("users", 150)
    retired = table.shift("users", 100).retire("users")
    with pytest.raises(SettingsError, match="retired"):
        retired.shift("users", 50)
    path = tmp_path / "copy.toml"
    retired.save(path)
    assert RoutingTable.load(path, DOMAINS) == retired
    assert "# The routing table" in path.read_text()
    assert retired.monolith_domains(DOMAINS) == ("verify", "threads", "posts")


def test_topologies_pin_the_weights() -> None:
    table = RoutingTable.load(REPO_TABLE, DOMAINS).shift("users", 30)
    assert {r.weight for r in table.effective(Topology.MONOLITH).routes} == {0}
    assert {r.weight for r in table.effective(Topology.SPLIT).routes} == {100}
    assert table.effective(Topology.MIXED).route("users").weight == 30


def test_haproxy_config_routes_by_path_and_splits_by_weight() -> None:
    table = RoutingTable.load(REPO_TABLE, DOMAINS).shift("users", 25)
    config = haproxy_config(
        table,
        bind="127.0.0.1:8080",
        monolith="127.0.0.1:9000",
        components={"users": "127.0.0.1:9001"},
        stats_socket=Path("/run/h.sock"),
    )
    assert "bind 127.0.0.1:8080" in config
    assert "http-request return status 404" in config  # /metrics, before any backend
    assert "if { path /metrics } || { path_beg /metrics/ }" in config
    assert "acl is_verify path_beg /api/" in config
    # verify takes every /api path the forum's rules, before it, do not.
    assert config.index("use_backend be_users") < config.index("use_backend be_verify")
    users = config.split("\nbackend be_users")[1].split("\nbackend ")[0]
    assert "server monolith 127.0.0.1:9000 weight 75 check" in users
    assert "server users 127.0.0.1:9001 weight 25 check" in users
    threads = config.split("\nbackend be_threads")[1].split("\nbackend ")[0]
    assert "server monolith" in threads
    assert "server threads" not in threads  # not running: only the monolith serves it
    assert "expose-fd listeners" in config
    # Nothing about the topology reaches clients unless asked for (clave up --show-server).
    assert "X-Clave-Server" not in config
    shown = haproxy_config(
        table,
        bind="127.0.0.1:8080",
        monolith="127.0.0.1:9000",
        components={},
        stats_socket=Path("/run/h.sock"),
        show_server=True,
    )
    assert "http-response set-header X-Clave-Server %[srv_name]" in shown


def test_haproxy_config_when_split_or_retired() -> None:
    table = RoutingTable.load(REPO_TABLE, DOMAINS)
    components = {s: f"127.0.0.1:{9001 + i}" for i, s in enumerate(DOMAINS)}
    split = haproxy_config(
        table.effective(Topology.SPLIT),
        bind="127.0.0.1:1",
        monolith=None,
        components=components,
        stats_socket=Path("/s"),
    )
    assert "server monolith" not in split
    assert "server users 127.0.0.1:9002 weight 100 check" in split
    default = split.split("\nbackend be_default")[1]
    assert all(f"server {s} " in default for s in DOMAINS)

    retired = table.shift("users", 100).retire("users")
    mixed = haproxy_config(
        retired,
        bind="127.0.0.1:1",
        monolith="127.0.0.1:9000",
        components=components,
        stats_socket=Path("/s"),
    )
    users = mixed.split("\nbackend be_users")[1].split("\nbackend ")[0]
    assert "server monolith" not in users


def test_alb_rules_carry_priority_paths_and_weighted_forward() -> None:
    table = RoutingTable.load(REPO_TABLE, DOMAINS).shift("posts", 40)
    rules = {r["Service"]: r["Properties"] for r in alb_rules(table)}
    assert set(rules) == {*DOMAINS, "metrics"}
    # /metrics first, answered 404 by the load balancer itself.
    metrics = rules["metrics"]
    assert metrics["Priority"] < min(r.priority for r in table.routes)
    assert metrics["Conditions"][0]["PathPatternConfig"]["Values"] == ["/metrics", "/metrics/*"]
    assert metrics["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    posts = rules["posts"]
    assert posts["Priority"] == table.route("posts").priority
    assert posts["Conditions"] == [
        {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/posts*"]}}
    ]
    groups = posts["Actions"][0]["ForwardConfig"]["TargetGroups"]
    assert groups == [
        {"TargetGroupArn": {"Ref": "MonolithTargetGroup"}, "Weight": 60},
        {"TargetGroupArn": {"Ref": "PostsTargetGroup"}, "Weight": 40},
    ]
    assert len({r["Priority"] for r in rules.values()}) == len(rules)
    retired = {
        r["Service"]: r["Properties"] for r in alb_rules(table.shift("users", 100).retire("users"))
    }
    assert retired["users"]["Actions"][0]["ForwardConfig"]["TargetGroups"] == [
        {"TargetGroupArn": {"Ref": "UsersTargetGroup"}, "Weight": 100}
    ]
