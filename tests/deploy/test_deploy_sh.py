"""deploy.sh against moto_server on loopback, standing in for AWS.

What is real: deploy.sh, the AWS CLI it calls, CloudFormation's change sets as moto runs them,
and the ECR repositories, stacks, target groups, listener rules, task definitions, IAM roles and
secrets those produce, read back over moto's API. What is not (and why):
- moto_cfn.py adds what moto leaves out of change sets (outputs, exports, imports, the
  template's Rules) and the CloudFormation types it lacks (Secrets Manager secrets, ElastiCache,
  with the dynamic reference to the AUTH token's secret); see its docstring.
- IAM policies are read back as written, not evaluated: moto does not enforce them.
- moto starts no tasks, so nothing answers behind the load balancer; the image itself is run
  by test_container.py.
- No registry is reachable: `docker` is a stand-in that records its arguments and stdin, to
  check the login, build, tag and push deploy.sh asks for (test_container.py builds the real
  image from the same Dockerfile).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from clave.topology.alb import METRICS_RULE_PRIORITY, alb_rules
from clave.topology.table import RoutingTable
from clave.verify.settings import parse_hmac_keys
from tests.deploy.conftest import ROOT, tool
from tests.services import wait_until
from tests.support import free_port

REGION = "us-east-1"
ROLES = ("monolith", "verify", "users", "threads", "posts")
VERIFY_ROLES = ("monolith", "verify")
SES_FROM = "codes@mail.example.com"
PUBLIC_URL = "https://verify.example.com"
ALARM_TOPIC = "arn:aws:sns:us-east-1:123456789012:clave-alarms"
FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$DOCKER_CALLS"
if [[ "$1" == login ]]; then cat > "$DOCKER_CALLS.password"; fi
"""


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("moto_cfn.py")),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    def up() -> bool:
        try:
            httpx.get(url + "/moto-api/", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        wait_until(up, timeout=30, interval=0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Deployer:
    def __init__(self, moto: str, tmp: Path, region: str = REGION) -> None:
        self.moto = moto
        self.tmp = tmp
        self.region = region
        self.calls = tmp / "docker-calls"
        self.routes = tmp / "routes.toml"
        shutil.copy(ROOT / "routes.toml", self.routes)
        shim = tmp / "bin" / "docker"
        shim.parent.mkdir()
        shim.write_text(FAKE_DOCKER)
        shim.chmod(0o755)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCKER"))},
            "AWS_ENDPOINT_URL": moto,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS": tool("aws"),
            "CLAVE": tool("clave"),
            "DOCKER": str(shim),
            "DOCKER_CALLS": str(self.calls),
            "ROUTES": str(self.routes),
            "IMAGE_TAG": "t1",
            "SLR_SETTLE": "0",  # (IAM needs no time to settle in moto)
        }

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "deploy.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.moto,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="module")
def deployed(moto: str, tmp_path_factory: pytest.TempPathFactory) -> Deployer:
    """The production shape: a certificate (requested in moto's ACM, as in a real account's,
    before the first deploy) and an SES sender."""
    deployer = Deployer(moto, tmp_path_factory.mktemp("deploy"))
    certificate = deployer.client("acm").request_certificate(DomainName="clave.example.com")
    deployer.env["CERTIFICATE_ARN"] = certificate["CertificateArn"]
    deployer.env["SES_FROM"] = SES_FROM
    deployer.env["PUBLIC_URL"] = PUBLIC_URL
    deployer.env["SNS"] = "true"
    deployer.env["ALARM_TOPIC_ARN"] = ALARM_TOPIC
    result = deployer("us-east-1", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    deployer.first = result  # type: ignore[attr-defined]
    return deployer


def _listeners(d: Deployer, stack: str = "demo") -> dict[int, dict[str, Any]]:
    elb = d.client("elbv2")
    lb = _stack_resource(d, stack, "LoadBalancer")
    return {
        listener["Port"]: listener
        for listener in elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]
    }


def _rules(d: Deployer, listener: str | None = None) -> dict[int, dict[str, Any]]:
    """The rules on the listener the role stacks import (or on `listener`), by priority."""
    arn = listener or _stack_outputs(d, "demo")["PublicListenerArn"]
    rules = d.client("elbv2").describe_rules(ListenerArn=arn)["Rules"]
    return {int(r["Priority"]): r for r in rules if r["Priority"] != "default"}


def _stack_outputs(d: Deployer, name: str) -> dict[str, str]:
    (stack,) = d.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _stack_resource(d: Deployer, stack: str, logical_id: str) -> str:
    detail = d.client("cloudformation").describe_stack_resource(
        StackName=stack, LogicalResourceId=logical_id
    )
    return str(detail["StackResourceDetail"]["PhysicalResourceId"])


def _role_statements(d: Deployer, stack: str, logical_id: str) -> list[dict[str, Any]]:
    """Every statement of a role's inline policies, as moto stored them."""
    iam = d.client("iam")
    name = _stack_resource(d, stack, logical_id)
    statements: list[dict[str, Any]] = []
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        if isinstance(doc, str):  # moto returns a CloudFormation policy as a Python repr
            doc = ast.literal_eval(doc) if doc.startswith("{'") else json.loads(doc)
        statements += doc["Statement"]
    return statements


class _Tagless(yaml.SafeLoader):
    """CloudFormation's YAML, its short-form functions (!Ref, !Sub...) read as plain values."""


_Tagless.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
    ),
)


def _template(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((ROOT / "infrastructure" / name).read_text(), _Tagless)
    return loaded


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_creates_a_repository_per_role_and_every_stack(deployed: Deployer) -> None:
    repos = deployed.client("ecr").describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in repos) == sorted(f"demo/{r}" for r in ROLES)
    assert {r["imageTagMutability"] for r in repos} == {"IMMUTABLE"}
    stacks = deployed.client("cloudformation").describe_stacks()["Stacks"]
    states = {s["StackName"]: s["StackStatus"] for s in stacks}
    assert states == {
        "demo": "CREATE_COMPLETE",
        "demo-dbinit": "CREATE_COMPLETE",
        **{f"demo-{r}": "CREATE_COMPLETE" for r in ROLES},
    }
    # ECS's service-linked role exists before the first stack (AWS refuses services behind a
    # load balancer without it); the cluster names no capacity provider.
    role = deployed.client("iam").get_role(RoleName="AWSServiceRoleForECS")["Role"]
    assert role["Path"] == "/aws-service-role/ecs.amazonaws.com/"
    (cluster,) = deployed.client("ecs").describe_clusters(clusters=["demo"])["clusters"]
    assert cluster.get("capacityProviders", []) == []


def test_prints_the_load_balancer_url_and_each_step_with_its_time(deployed: Deployer) -> None:
    url = _stack_outputs(deployed, "demo")["PublicUrl"]
    assert url.startswith("https://")
    assert url.endswith(".elb.amazonaws.com")
    last = deployed.first.stdout.strip().splitlines()[-1]  # type: ignore[attr-defined]
    assert re.fullmatch(rf"clave is deployed: {re.escape(url)} \(in \d+m\d\ds\)", last)
    steps = re.findall(r"deploy\.sh: \[\d+m\d\ds\] (.+)", deployed.first.stderr)  # type: ignore[attr-defined]
    assert steps[:3] == [
        f"routing table {deployed.routes}",
        "image clave:t1 (built before any stack changes)",
        "ECS service-linked role",
    ]
    assert "database users: clave db init (a one-off task)" in steps


def test_logs_in_with_get_login_password_and_pushes_one_image_per_role(deployed: Deployer) -> None:
    calls = deployed.calls.read_text().splitlines()
    registry = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
    # Built before any stack changes (a broken build costs no 20 minutes of RDS), pushed after.
    assert calls[0] == "build --platform linux/amd64 -t clave:t1 ."
    assert calls[1] == f"login --username AWS --password-stdin {registry}"
    token = deployed.client("ecr").get_authorization_token()["authorizationData"][0]
    import base64

    password = base64.b64decode(token["authorizationToken"]).decode().partition(":")[2]
    assert Path(f"{deployed.calls}.password").read_text().strip() == password
    pushed = [c.split()[1] for c in calls if c.startswith("push ")]
    assert pushed == [f"{registry}/demo/{role}:t1" for role in ROLES]
    tasks = deployed.client("ecs").list_task_definitions()["taskDefinitionArns"]
    assert len(tasks) == len(ROLES) + 1  # and the one-off `clave db init`


def test_target_groups_check_healthz(deployed: Deployer) -> None:
    groups = deployed.client("elbv2").describe_target_groups()["TargetGroups"]
    # A target group belongs to one load balancer: the monolith's (shared) and one per service,
    # on the public and on the internal load balancer.
    assert len(groups) == 2 * (1 + 4)
    for group in groups:
        assert group["HealthCheckPath"] == "/healthz"
        assert group["TargetType"] == "ip"
        assert group["Port"] == 8000


def test_listener_rules_are_the_routing_table(deployed: Deployer) -> None:
    table = RoutingTable.load(deployed.routes)
    rules = _rules(deployed)
    monolith_tg = _stack_outputs(deployed, "demo")["MonolithTargetGroupArn"]
    assert sorted(rules) == [METRICS_RULE_PRIORITY, *(r.priority for r in table.routes)]
    # /metrics is answered 404 by the load balancer itself, before any component's rule.
    metrics = rules[METRICS_RULE_PRIORITY]
    assert metrics["Conditions"][0]["PathPatternConfig"]["Values"] == ["/metrics", "/metrics/*"]
    assert metrics["Actions"][0]["Type"] == "fixed-response"
    assert metrics["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    for expected in alb_rules(table):
        if expected["Service"] == "metrics":
            continue
        props = expected["Properties"]
        rule = rules[props["Priority"]]
        assert rule["Conditions"][0]["PathPatternConfig"]["Values"] == list(
            props["Conditions"][0]["PathPatternConfig"]["Values"]
        )
        groups = rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
        wanted = props["Actions"][0]["ForwardConfig"]["TargetGroups"]
        assert [g["Weight"] for g in groups] == [g["Weight"] for g in wanted]
        assert groups[0]["TargetGroupArn"] == monolith_tg
        service_tg = _stack_outputs(deployed, f"demo-{expected['Service']}")["TargetGroupArn"]
        assert groups[1]["TargetGroupArn"] == service_tg


def test_the_internal_load_balancer_has_the_same_rules_and_only_tasks_reach_it(
    deployed: Deployer,
) -> None:
    outputs = _stack_outputs(deployed, "demo")
    elb = deployed.client("elbv2")
    internal = _stack_resource(deployed, "demo", "InternalLoadBalancer")
    (lb,) = elb.describe_load_balancers(LoadBalancerArns=[internal])["LoadBalancers"]
    assert lb["Scheme"] == "internal"
    private = set(outputs["PrivateSubnets"].split(","))
    assert {zone["SubnetId"] for zone in lb["AvailabilityZones"]} == private
    assert outputs["InternalUrl"] == f"http://{lb['DNSName']}"
    public = _rules(deployed)
    inside = _rules(deployed, outputs["InternalListenerArn"])
    assert sorted(inside) == sorted(public)
    for priority, rule in inside.items():
        assert rule["Conditions"] == public[priority]["Conditions"]
        if priority == METRICS_RULE_PRIORITY:
            continue
        groups = rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
        wanted = public[priority]["Actions"][0]["ForwardConfig"]["TargetGroups"]
        assert [g["Weight"] for g in groups] == [g["Weight"] for g in wanted]
        assert groups[0]["TargetGroupArn"] == outputs["MonolithInternalTargetGroupArn"]
    # Port 80 from each role's security group, nothing else.
    (sg,) = deployed.client("ec2").describe_security_groups(GroupIds=lb["SecurityGroups"])[
        "SecurityGroups"
    ]
    sources = {pair["GroupId"] for p in sg["IpPermissions"] for pair in p["UserIdGroupPairs"]}
    assert sources == {outputs[f"{r.capitalize()}SecurityGroup"] for r in ROLES}
    assert all(p["FromPort"] == 80 and not p["IpRanges"] for p in sg["IpPermissions"])


def test_each_role_has_its_security_group_and_reaches_only_its_data(deployed: Deployer) -> None:
    outputs = _stack_outputs(deployed, "demo")
    ec2 = deployed.client("ec2")
    group = {r: outputs[f"{r.capitalize()}SecurityGroup"] for r in ROLES}
    # (moto keeps no network configuration of a CloudFormation service: the template names
    # the export of its role's group, and the export is that group.)
    exports = {
        e["Name"]: e["Value"] for e in deployed.client("cloudformation").list_exports()["Exports"]
    }
    mapping = _template("service.yml")["Mappings"]["RoleSecurityGroup"]
    for role in ROLES:
        assert exports[f"demo-{mapping[role]['Export']}"] == group[role]
    assert len(set(group.values())) == len(ROLES)

    def sources(logical_id: str) -> set[str]:
        sg_id = _stack_resource(deployed, "demo", logical_id)
        (sg,) = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"]
        return {pair["GroupId"] for p in sg["IpPermissions"] for pair in p["UserIdGroupPairs"]}

    legacy = outputs["TaskSecurityGroup"]  # an earlier release's tasks, during the upgrade
    assert sources("RedisSecurityGroup") == {group["monolith"], group["verify"], legacy}
    assert sources("DatabaseSecurityGroup") == {
        group["monolith"],
        group["users"],
        group["threads"],
        group["posts"],
        outputs["DatabaseInitSecurityGroup"],
        legacy,
    }


def test_with_a_certificate_the_load_balancer_serves_https_and_port_80_only_redirects(
    deployed: Deployer,
) -> None:
    listeners = _listeners(deployed)
    assert sorted(listeners) == [80, 443]
    https, http = listeners[443], listeners[80]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [deployed.env["CERTIFICATE_ARN"]]
    (forward,) = https["DefaultActions"]
    assert forward["Type"] == "forward"
    assert forward["TargetGroupArn"] == _stack_outputs(deployed, "demo")["MonolithTargetGroupArn"]
    # The role stacks' rules sit on 443; 80 answers every request with a redirect, nothing else.
    assert _stack_outputs(deployed, "demo")["PublicListenerArn"] == https["ListenerArn"]
    assert http["Protocol"] == "HTTP"
    (redirect,) = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    assert _rules(deployed, http["ListenerArn"]) == {}
    group = _stack_resource(deployed, "demo", "LoadBalancerSecurityGroup")
    (sg,) = deployed.client("ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert sorted(p["FromPort"] for p in sg["IpPermissions"]) == [80, 443]


def test_each_role_runs_its_command_with_only_its_secrets(deployed: Deployer) -> None:
    ecs = deployed.client("ecs")
    outputs = _stack_outputs(deployed, "demo")
    redis_secret = outputs["RedisAuthSecretArn"]
    for role in ROLES:
        task = ecs.describe_task_definition(taskDefinition=f"demo-{role}")["taskDefinition"]
        (container,) = task["containerDefinitions"]
        assert container["command"] == (
            ["serve"] if role == "monolith" else ["serve", "--service", role]
        )
        assert container["image"].endswith(f"/demo/{role}:t1")
        assert container["healthCheck"]["command"][1:] == [
            "python3",
            "-m",
            "clave.platform.healthcheck",
        ]
        assert container["logConfiguration"]["options"]["awslogs-group"] == f"/clave/demo/{role}"
        secrets = {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}
        env = {e["name"]: e["value"] for e in container["environment"]}
        # Every URL a component writes starts with the public origin.
        assert env["CLAVE_PUBLIC_URL"] == PUBLIC_URL
        if role in VERIFY_ROLES:
            assert env["CLAVE_VERIFY_STORE"] == _stack_outputs(deployed, "demo")["RedisUrl"]
            # TLS, and no password in the URL: the AUTH token comes from its own secret.
            assert re.fullmatch(r"rediss://master\.[a-z0-9.-]+:6379/0", env["CLAVE_VERIFY_STORE"])
            assert secrets["CLAVE_REDIS_PASSWORD"] == redis_secret
            assert env["CLAVE_SES_FROM"] == SES_FROM
            assert env["CLAVE_SNS"] == "true"
            # The providers' secret whole: a key missing from it stops no task.
            assert secrets["CLAVE_PROVIDERS"] == outputs["ProvidersSecretArn"]
        else:
            assert "CLAVE_VERIFY_STORE" not in env
            assert "CLAVE_REDIS_PASSWORD" not in secrets
            assert "CLAVE_SES_FROM" not in env
            assert "CLAVE_SNS" not in env
            assert "CLAVE_PROVIDERS" not in secrets
        assert not any(name.startswith("CLAVE_TWILIO") for name in secrets)
        assert ("CLAVE_HMAC_KEYS" in secrets) == (role in VERIFY_ROLES)
        assert ("CLAVE_VERIFY_KEY" in secrets) == (role in ("monolith", "verify", "users"))
        # Each forum domain as its own database user, never the master.
        assert "PGPASSWORD" not in secrets
        for domain in ("users", "threads", "posts"):
            serves = role in ("monolith", domain)
            url = env.get(f"CLAVE_{domain.upper()}_DB")
            password = secrets.get(f"CLAVE_{domain.upper()}_DB_PASSWORD")
            if serves:
                assert url is not None
                assert url.startswith(f"postgresql://clave_{domain}@")
                assert url.endswith(f":5432/{domain}?sslmode=require")
                secret = outputs[f"{domain.capitalize()}DatabaseSecretArn"]
                assert password == f"{secret}:password::"
                assert env["CLAVE_DB_POOL_SIZE"] == "3"
            else:
                assert url is None
                assert password is None
        # Components call each other through the internal load balancer, inside the VPC.
        for name in ("CLAVE_VERIFY_URL", "CLAVE_USERS_URL", "CLAVE_THREADS_URL"):
            assert env.get(name) == (None if role == "monolith" else outputs["InternalUrl"])
        # (moto keeps neither the network mode nor the task role of a CloudFormation task
        # definition: those are checked from the stack's resources below and by cfn-lint.)


def test_task_roles_send_sms_to_phone_numbers_and_email_as_ses_from_only(
    deployed: Deployer,
) -> None:
    account = deployed.client("sts").get_caller_identity()["Account"]
    identity = f"arn:aws:ses:{REGION}:{account}:identity"
    for role in ROLES:
        statements = _role_statements(deployed, f"demo-{role}", "TaskRole")
        by_sid = {st["Sid"]: st for st in statements}
        # Every role: ECS Exec's channels (no resource to name), nothing more for the forum.
        channels = by_sid.pop("ExecChannels")
        assert (channels["Effect"], channels["Resource"]) == ("Allow", "*")
        assert sorted(_as_list(channels["Action"])) == [
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
        ]
        if role not in VERIFY_ROLES:
            assert by_sid == {}
            continue
        assert sorted(by_sid) == ["EmailFromSesFrom", "NoTopicsNorEndpoints", "SmsToPhoneNumbers"]
        # SMS: a Publish to a phone number has no ARN to allow, so "*"; every SNS ARN (topics,
        # mobile endpoints, any region or account) is denied.
        sms, no_topics = by_sid["SmsToPhoneNumbers"], by_sid["NoTopicsNorEndpoints"]
        assert (sms["Effect"], _as_list(sms["Action"]), sms["Resource"]) == (
            "Allow",
            ["sns:Publish"],
            "*",
        )
        assert "Condition" not in sms
        assert (no_topics["Effect"], _as_list(no_topics["Action"])) == ("Deny", ["sns:Publish"])
        assert _as_list(no_topics["Resource"]) == ["arn:aws:sns:*:*:*"]
        # Email: only SES_FROM's identity (the address, or its domain if that is what is
        # verified), and only with SES_FROM as the From address.
        email = by_sid["EmailFromSesFrom"]
        assert email["Effect"] == "Allow"
        assert sorted(_as_list(email["Action"])) == ["ses:SendEmail", "ses:SendRawEmail"]
        assert sorted(_as_list(email["Resource"])) == [
            f"{identity}/{SES_FROM}",
            f"{identity}/mail.example.com",
        ]
        assert email["Condition"] == {"StringEquals": {"ses:FromAddress": SES_FROM}}


def test_execution_roles_read_only_their_roles_secrets(deployed: Deployer) -> None:
    outputs = _stack_outputs(deployed, "demo")
    redis, master = outputs["RedisAuthSecretArn"], outputs["DatabaseSecretArn"]
    for role in ROLES:
        statements = _role_statements(deployed, f"demo-{role}", "ExecutionRole")
        (read,) = [
            st for st in statements if "secretsmanager:GetSecretValue" in _as_list(st["Action"])
        ]
        readable = set(_as_list(read["Resource"]))
        assert "*" not in readable
        assert (redis in readable) == (role in VERIFY_ROLES)
        assert (outputs["HmacKeysSecretArn"] in readable) == (role in VERIFY_ROLES)
        assert master not in readable
        for domain in ("Users", "Threads", "Posts"):
            serves = role in ("monolith", domain.lower())
            assert (outputs[f"{domain}DatabaseSecretArn"] in readable) == serves
    # Only the one-off `clave db init` reads the master's password, with the domain users'.
    statements = _role_statements(deployed, "demo-dbinit", "ExecutionRole")
    (read,) = [st for st in statements if "secretsmanager:GetSecretValue" in _as_list(st["Action"])]
    assert sorted(_as_list(read["Resource"])) == sorted(
        [master] + [outputs[f"{d}DatabaseSecretArn"] for d in ("Users", "Threads", "Posts")]
    )


def test_db_init_runs_once_per_deploy_with_the_master_and_each_domains_user(
    deployed: Deployer,
) -> None:
    ecs = deployed.client("ecs")
    task = ecs.describe_task_definition(taskDefinition="demo-dbinit")["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert container["command"] == ["db", "init"]
    assert container["image"].endswith("/demo/monolith:t1")
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["CLAVE_DB_ADMIN_URL"].startswith("postgresql://clave@")
    for domain in ("users", "threads", "posts"):
        assert env[f"CLAVE_{domain.upper()}_DB"].startswith(f"postgresql://clave_{domain}@")
    secrets = {s["name"] for s in container["secrets"]}
    assert secrets == {
        "CLAVE_DB_ADMIN_PASSWORD",
        "CLAVE_USERS_DB_PASSWORD",
        "CLAVE_THREADS_DB_PASSWORD",
        "CLAVE_POSTS_DB_PASSWORD",
    }
    stopped = ecs.list_tasks(cluster="demo", desiredStatus="STOPPED")["taskArns"]
    runs = ecs.describe_tasks(cluster="demo", tasks=stopped)["tasks"]
    inits = [t for t in runs if t["taskDefinitionArn"].split("/")[-1].startswith("demo-dbinit")]
    assert inits
    assert all(t.get("startedBy") == "deploy.sh" for t in inits)


def test_redis_requires_tls_and_the_generated_auth_token(deployed: Deployer) -> None:
    redis_id = _stack_resource(deployed, "demo", "Redis")
    (group,) = deployed.client("elasticache").describe_replication_groups(
        ReplicationGroupId=redis_id
    )["ReplicationGroups"]
    assert group["TransitEncryptionEnabled"] is True
    assert group["AtRestEncryptionEnabled"] is True
    assert group["AuthTokenEnabled"] is True
    # A primary and a replica, promoted by ElastiCache when the primary fails.
    assert len(group["MemberClusters"]) == 2
    assert group["AutomaticFailover"] == "enabled"
    assert group["MultiAZ"] == "enabled"
    # noeviction: its parameter group exists (moto_cfn.py refuses a replication group naming
    # one that does not); what it sets is read from the template, as CloudFormation sent it.
    _stack_resource(deployed, "demo", "RedisParameters")
    params = _template("shared.yml")["Resources"]["RedisParameters"]["Properties"]
    assert params["CacheParameterGroupFamily"] == "redis7"
    assert params["Properties"] == {"maxmemory-policy": "noeviction"}
    # (moto_cfn.py resolved the template's {{resolve:secretsmanager:...}} into AuthToken and
    # checked it as ElastiCache does; the token is that secret's value, a plain string.)
    arn = _stack_outputs(deployed, "demo")["RedisAuthSecretArn"]
    token = deployed.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", token)
    assert token not in _stack_outputs(deployed, "demo")["RedisUrl"]


def test_generated_hmac_key_is_one_clave_reads(deployed: Deployer) -> None:
    arn = _stack_outputs(deployed, "demo")["HmacKeysSecretArn"]
    value = deployed.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    keys = parse_hmac_keys(value, source="secret")
    assert [k for k, _ in keys] == ["k1"]
    assert len(keys[0][1]) >= 32


def test_rerun_changes_nothing(deployed: Deployer) -> None:
    before = {p: r["RuleArn"] for p, r in _rules(deployed).items()}
    result = deployed("us-east-1", "demo")
    assert result.returncode == 0, result.stderr
    assert {p: r["RuleArn"] for p, r in _rules(deployed).items()} == before
    # A shared stack of this release is updated in one step.
    assert "Redis replica first" not in result.stderr
    assert len(deployed.client("ecr").describe_repositories()["repositories"]) == len(ROLES)


def test_shift_moves_a_share_of_one_service_and_records_it(deployed: Deployer) -> None:
    result = deployed("us-east-1", "demo", "shift", "users", "25")
    assert result.returncode == 0, result.stderr
    rules = _rules(deployed)
    table = RoutingTable.load(deployed.routes)
    assert table.route("users").weight == 25
    users = rules[table.route("users").priority]["Actions"][0]["ForwardConfig"]["TargetGroups"]
    assert [g["Weight"] for g in users] == [75, 25]
    posts = rules[table.route("posts").priority]["Actions"][0]["ForwardConfig"]["TargetGroups"]
    assert [g["Weight"] for g in posts] == [100, 0]
    # Out of range: clave refuses, nothing changes.
    refused = deployed("us-east-1", "demo", "shift", "users", "250")
    assert refused.returncode != 0
    assert "weight must be 0-100" in refused.stderr
    assert RoutingTable.load(deployed.routes).route("users").weight == 25


def test_dry_run_prints_every_call_and_changes_nothing(deployed: Deployer) -> None:
    stacks = len(deployed.client("cloudformation").describe_stacks()["Stacks"])
    table = deployed.routes.read_text()
    result = deployed("--dry-run", "us-east-1", "other")
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    # The shared stack, the db init stack, the roles'.
    assert sum("cloudformation deploy" in line for line in printed) == 2 + len(ROLES)
    assert any("iam create-service-linked-role" in line for line in printed)
    assert any("ecr get-login-password" in line for line in printed)
    assert any("ecs run-task" in line and "other-dbinit" in line for line in printed)
    assert sum(" push " in line for line in printed) == len(ROLES)
    # Flags go anywhere: last, as the README shows them.
    shifted = deployed("us-east-1", "demo", "shift", "threads", "50", "--dry-run")
    assert shifted.returncode == 0, shifted.stderr
    assert "ServiceWeight=50 MonolithWeight=50" in shifted.stdout
    # From weight 0: its tasks first, while no traffic reaches it, then the weight.
    first, second = [line for line in shifted.stdout.splitlines() if "demo-threads" in line]
    assert "ServiceWeight=0" in first
    assert "DesiredCount=2" in first
    assert "ServiceWeight=50" in second
    assert len(deployed.client("cloudformation").describe_stacks()["Stacks"]) == stacks
    assert deployed.routes.read_text() == table


def test_deploy_without_a_certificate_is_refused_before_anything_runs(
    deployed: Deployer,
) -> None:
    env = {k: v for k, v in deployed.env.items() if k != "CERTIFICATE_ARN"}
    calls = deployed.calls.read_text()
    refused = subprocess.run(
        [str(ROOT / "deploy.sh"), "us-east-1", "nocert"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2
    assert "CERTIFICATE_ARN" in refused.stderr
    assert "ALLOW_PLAIN_HTTP=true" in refused.stderr
    assert "AllowPlainHttp" in refused.stderr
    assert refused.stdout == ""
    assert deployed.calls.read_text() == calls  # nothing built, nothing pushed
    stacks = deployed.client("cloudformation").describe_stacks()["Stacks"]
    assert "nocert" not in {s["StackName"] for s in stacks}


def test_a_certificate_from_another_region_is_refused(deployed: Deployer) -> None:
    other = deployed.env["CERTIFICATE_ARN"].replace(f":{REGION}:", ":eu-central-1:")
    refused = subprocess.run(
        [str(ROOT / "deploy.sh"), "us-east-1", "demo"],
        env={**deployed.env, "CERTIFICATE_ARN": other},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2
    assert "eu-central-1" in refused.stderr
    assert "us-east-1" in refused.stderr


def test_the_shared_stack_itself_refuses_no_certificate_without_allow_plain_http(
    deployed: Deployer,
) -> None:
    """Without deploy.sh (the console, another tool): the template's rule refuses it."""
    cfn = deployed.client("cloudformation")
    template = (ROOT / "infrastructure" / "shared.yml").read_text()
    with pytest.raises(ClientError) as refused:
        cfn.create_change_set(
            StackName="bare",
            ChangeSetName="first",
            ChangeSetType="CREATE",
            TemplateBody=template,
            Parameters=[{"ParameterKey": "CertificateArn", "ParameterValue": ""}],
        )
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "HTTPS only" in error["Message"]
    assert "CertificateArn" in error["Message"]
    assert "AllowPlainHttp=true" in error["Message"]
    assert "bare" not in {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}


def test_allow_plain_http_serves_http_on_80_only(
    moto: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The opt-in: no certificate, ALLOW_PLAIN_HTTP=true. (Its own region: a second load
    balancer and VPC stay out of the production-shape stack's tests.)"""
    trial = Deployer(moto, tmp_path_factory.mktemp("trial"), region="eu-west-1")
    trial.env["ALLOW_PLAIN_HTTP"] = "true"
    # A name of the operator's, in a Route 53 zone of theirs.
    zone = (
        trial.client("route53")
        .create_hosted_zone(Name="example.org", CallerReference="trial")["HostedZone"]["Id"]
        .split("/")[-1]
    )
    trial.env["DOMAIN_NAME"] = "trial.example.org"
    trial.env["HOSTED_ZONE_ID"] = zone
    result = trial("eu-west-1", "trial")
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = _stack_outputs(trial, "trial")
    assert outputs["PublicUrl"] == "http://trial.example.org"
    assert result.stdout.startswith("clave is deployed: http://trial.example.org (in ")
    records = trial.client("route53").list_resource_record_sets(HostedZoneId=zone)
    (alias,) = [r for r in records["ResourceRecordSets"] if r["Type"] == "A"]
    assert alias["Name"].rstrip(".") == "trial.example.org"
    lb = _stack_resource(trial, "trial", "LoadBalancer")
    (described,) = trial.client("elbv2").describe_load_balancers(LoadBalancerArns=[lb])[
        "LoadBalancers"
    ]
    assert alias["AliasTarget"]["DNSName"].rstrip(".") == described["DNSName"]
    # ...and clave writes that name into the URLs it gives out.
    task = trial.client("ecs").describe_task_definition(taskDefinition="trial-verify")
    (container,) = task["taskDefinition"]["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["CLAVE_PUBLIC_URL"] == "http://trial.example.org"
    listeners = _listeners(trial, "trial")
    assert sorted(listeners) == [80]
    (forward,) = listeners[80]["DefaultActions"]
    assert listeners[80]["Protocol"] == "HTTP"
    assert forward["Type"] == "forward"
    assert outputs["PublicListenerArn"] == listeners[80]["ListenerArn"]
    group = _stack_resource(trial, "trial", "LoadBalancerSecurityGroup")
    (sg,) = trial.client("ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert [p["FromPort"] for p in sg["IpPermissions"]] == [80]
    # Neither SES_FROM nor SNS: no permission to send anything, ECS Exec only.
    sids = {st["Sid"] for st in _role_statements(trial, "trial-verify", "TaskRole")}
    assert sids == {"ExecChannels"}
    # Destroy asks first; with no terminal to ask on, nothing is deleted.
    cfn = trial.client("cloudformation")
    refused = trial("eu-west-1", "trial", "destroy")
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    assert "final snapshot" in refused.stderr
    names = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
    assert {"trial", "trial-dbinit", *(f"trial-{r}" for r in ROLES)} <= names
    # With --yes: the database's deletion protection is lifted first, on the instance (RDS
    # refuses to delete a protected one), then every stack goes, roles first.
    (instance,) = trial.client("rds").describe_db_instances()["DBInstances"]
    assert instance["DeletionProtection"] is True
    assert instance["EngineVersion"] == "16"
    destroyed = trial("eu-west-1", "trial", "destroy", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "turning off the deletion protection of database" in destroyed.stderr
    assert not {s["StackName"] for s in cfn.describe_stacks()["Stacks"]} & names
    assert trial.client("rds").describe_db_instances()["DBInstances"] == []
    vpcs = trial.client("ec2").describe_vpcs()["Vpcs"]
    assert [v["VpcId"] for v in vpcs if not v.get("IsDefault")] == []


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("us-east-1",),
        ("nowhere", "demo"),
        ("us-east-1", "Demo_Stack"),
        ("us-east-1", "demo", "shift", "users"),
        ("us-east-1", "demo", "launch"),
        ("us-east-1", "demo", "--force"),
        ("us-east-1", "demo", "logs", "verify", "--since", "yesterday"),
        ("us-east-1", "demo", "rollback", "verify"),
    ],
)
def test_bad_arguments_are_refused(deployed: Deployer, args: tuple[str, ...]) -> None:
    result = deployed(*args)
    assert result.returncode == 2
    assert result.stderr


def test_a_public_url_that_is_not_an_origin_is_refused_before_aws(deployed: Deployer) -> None:
    saved = deployed.env["PUBLIC_URL"]
    deployed.env["PUBLIC_URL"] = "https://verify.example.com/api"
    try:
        result = deployed("us-east-1", "demo")
    finally:
        deployed.env["PUBLIC_URL"] = saved
    assert result.returncode == 2
    assert "PUBLIC_URL must be an origin" in result.stderr


def test_a_table_clave_refuses_fails_the_deploy_and_names_the_step(deployed: Deployer) -> None:
    saved = deployed.routes.read_text()
    calls = deployed.calls.read_text()
    deployed.routes.write_text(saved.replace("weight = 0", "weight = 250", 1))
    try:
        result = deployed("us-east-1", "demo")
    finally:
        deployed.routes.write_text(saved)
    assert result.returncode != 0
    assert f"FAILED at step: routing table {deployed.routes}" in result.stderr
    assert "clave is deployed" not in result.stdout
    assert deployed.calls.read_text() == calls  # nothing built, nothing pushed


def test_a_stack_left_in_rollback_complete_is_shown_and_deleted_only_when_asked(
    moto: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A first deploy that failed leaves the shared stack in ROLLBACK_COMPLETE, which
    CloudFormation cannot update. (Its own region, as the trial's.)"""
    again = Deployer(moto, tmp_path_factory.mktemp("again"), region="ap-southeast-2")
    again.env["ALLOW_PLAIN_HTTP"] = "true"
    cfn = again.client("cloudformation")
    broken = """Resources:
  Redis:
    Type: AWS::ElastiCache::ReplicationGroup
    Properties:
      ReplicationGroupDescription: made without TLS
      AuthToken: abcdefghijklmnopqrstuvwxyz
"""
    cfn.create_stack(StackName="again", TemplateBody=broken)
    assert cfn.describe_stacks(StackName="again")["Stacks"][0]["StackStatus"] == (
        "ROLLBACK_COMPLETE"
    )
    refused = again("ap-southeast-2", "again")
    assert refused.returncode == 1
    assert "again is in ROLLBACK_COMPLETE" in refused.stderr
    # Why it failed, from the stack's events.
    assert "AuthToken can be specified only when TransitEncryptionEnabled" in refused.stderr
    assert "--yes" in refused.stderr
    assert "FAILED at step: shared stack again" in refused.stderr
    result = again("--yes", "ap-southeast-2", "again")
    assert result.returncode == 0, result.stderr
    assert cfn.describe_stacks(StackName="again")["Stacks"][0]["StackStatus"] == ("CREATE_COMPLETE")


def test_components_no_traffic_reaches_run_no_tasks(deployed: Deployer) -> None:
    table = RoutingTable.load(deployed.routes)
    ecs = deployed.client("ecs")
    services = ecs.describe_services(cluster="demo", services=list(ROLES))["services"]
    desired = {s["serviceName"]: s["desiredCount"] for s in services}
    assert desired["monolith"] == 2
    for route in table.routes:
        assert desired[route.component] == (0 if route.weight == 0 else 2)


def test_alarms_watch_cpu_5xx_health_and_redis_memory(deployed: Deployer) -> None:
    alarms = deployed.client("cloudwatch").describe_alarms()["MetricAlarms"]
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for alarm in alarms:
        by_metric.setdefault(alarm["MetricName"], []).append(alarm)
        assert alarm["AlarmActions"] == [ALARM_TOPIC]
    # A CPU, a target 5xx and an unhealthy-target alarm per role; Redis memory on each node.
    for metric in ("CPUUtilization", "HTTPCode_Target_5XX_Count", "UnHealthyHostCount"):
        assert len(by_metric[metric]) == len(ROLES), metric
    lb = _stack_outputs(deployed, "demo")["LoadBalancerFullName"]
    for alarm in by_metric["UnHealthyHostCount"]:
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dims["LoadBalancer"] == lb
        assert dims["TargetGroup"].startswith("targetgroup/")
    redis_id = _stack_resource(deployed, "demo", "Redis")
    nodes = sorted(a["Dimensions"][0]["Value"] for a in by_metric["DatabaseMemoryUsagePercentage"])
    assert nodes == [f"{redis_id}-001", f"{redis_id}-002"]
    assert len(by_metric["HTTPCode_ELB_5XX_Count"]) == 1


def test_access_logs_go_to_an_encrypted_bucket_elb_may_write_to(deployed: Deployer) -> None:
    s3 = deployed.client("s3")
    bucket = _stack_outputs(deployed, "demo")["AccessLogsBucket"]
    # (moto keeps no attributes of a CloudFormation load balancer: they are the template's,
    # and the load balancer waits for the bucket's policy, as ELB checks it can write.)
    lb = _template("shared.yml")["Resources"]["LoadBalancer"]
    attributes = {a["Key"]: a["Value"] for a in lb["Properties"]["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == "AccessLogsBucket"  # its Ref
    assert attributes["access_logs.s3.prefix"] == "alb"
    assert lb["DependsOn"] == "AccessLogsBucketPolicy"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    writers = {
        json.dumps(st["Principal"], sort_keys=True): st["Resource"]
        for st in policy["Statement"]
        if st["Effect"] == "Allow"
    }
    account = deployed.client("sts").get_caller_identity()["Account"]
    path = f"arn:aws:s3:::{bucket}/alb/AWSLogs/{account}/*"
    # us-east-1 predates August 2022: its ELB account, and the log delivery service.
    assert writers == {
        json.dumps({"AWS": "arn:aws:iam::127311923021:root"}): path,
        json.dumps({"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}): path,
    }


def test_status_shows_stacks_services_and_routes(deployed: Deployer) -> None:
    result = deployed("us-east-1", "demo", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.match(r"\s+demo-verify\s+(CREATE|UPDATE)_COMPLETE", line) for line in lines)
    assert any(re.match(r"\s+monolith\s+2/2\s+demo-monolith:\d+", line) for line in lines)
    assert any(re.match(r"\s+users\s+\d+% to the service", line) for line in lines)
    assert lines[-1] == f"URL: {_stack_outputs(deployed, 'demo')['PublicUrl']}"


def test_logs_redeploy_and_exec_name_what_they_act_on(deployed: Deployer) -> None:
    logs = deployed("us-east-1", "demo", "logs", "verify", "--since", "10m")
    assert logs.returncode == 0, logs.stderr
    unknown = deployed("us-east-1", "demo", "logs", "nobody")
    assert unknown.returncode == 1
    assert "no role 'nobody'" in unknown.stderr
    redeployed = deployed("us-east-1", "demo", "redeploy", "verify")
    assert redeployed.returncode == 0, redeployed.stderr
    assert "verify: new tasks" in redeployed.stderr
    # moto runs no task behind a service: exec says so, and which step it stopped at.
    ran = deployed("us-east-1", "demo", "exec", "verify", "--", "clave", "apikey", "create")
    assert ran.returncode == 1
    assert "no running task of verify" in ran.stderr
    assert "FAILED at step: verify: a running task" in ran.stderr
    bare = deployed("us-east-1", "demo", "exec", "verify")
    assert bare.returncode == 1
    assert "exec needs a command after --" in bare.stderr


def test_rollback_runs_an_earlier_image_that_exists(deployed: Deployer) -> None:
    ecr = deployed.client("ecr")
    before = _rules(deployed)
    missing = deployed("us-east-1", "demo", "rollback", "posts", "old1")
    assert missing.returncode == 1
    assert "no image demo/posts:old1 in ECR" in missing.stderr
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    )
    ecr.put_image(repositoryName="demo/posts", imageManifest=manifest, imageTag="old1")
    result = deployed("us-east-1", "demo", "rollback", "posts", "old1")
    assert result.returncode == 0, result.stderr
    task = deployed.client("ecs").describe_task_definition(taskDefinition="demo-posts")
    (container,) = task["taskDefinition"]["containerDefinitions"]
    assert container["image"].endswith("/demo/posts:old1")
    # Only the image changed: the rule keeps its weights.
    assert _rules(deployed) == before


def test_redis_of_an_earlier_release_gets_its_replica_before_failover(
    moto: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """ElastiCache refuses to add a replica and turn on failover in one change: a shared stack
    made by an earlier release (no RedisFailover parameter) gets two updates."""
    old = Deployer(moto, tmp_path_factory.mktemp("old"), region="ca-central-1")
    old.env["ALLOW_PLAIN_HTTP"] = "true"
    # This release's shared stack as an earlier one made it: no RedisFailover parameter.
    text = (ROOT / "infrastructure" / "shared.yml").read_text()
    start = text.index("  RedisFailover:\n")
    text = text[:start] + text[text.index("  NatPerAz:\n") :]
    start = text.index("  FailoverNeedsAReplica:\n")
    text = text[:start] + text[text.index("\nConditions:\n") :]
    text = text.replace('!Equals [!Ref RedisFailover, "true"]', '!Equals ["false", "true"]')
    assert "RedisFailover" not in text
    old.client("cloudformation").create_stack(
        StackName="old",
        TemplateBody=text,
        Parameters=[{"ParameterKey": "AllowPlainHttp", "ParameterValue": "true"}],
        Capabilities=["CAPABILITY_IAM"],
    )
    result = old("ca-central-1", "old")
    assert result.returncode == 0, result.stderr
    steps = re.findall(r"deploy\.sh: \[\d+m\d\ds\] (shared stack .+)", result.stderr)
    assert steps == [
        "shared stack old, Redis replica first (failover is turned on next)",
        "shared stack old (network, load balancers, cluster, repositories, data)",
    ]
    (stack,) = old.client("cloudformation").describe_stacks(StackName="old")["Stacks"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["RedisFailover"] == "true"
    # (A stack of this release is updated in one step: test_rerun_changes_nothing.)


def test_an_image_tag_names_one_build(deployed: Deployer) -> None:
    """The commit; with any change to the tree, the commit and the time (a tag never moves)."""
    env = {k: v for k, v in deployed.env.items() if k != "IMAGE_TAG"}
    result = subprocess.run(
        [str(ROOT / "deploy.sh"), "us-east-1", "tags", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (build,) = [line for line in result.stdout.splitlines() if " build " in line]
    tag = build.split("clave:")[1].split()[0]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD")
    if git("status", "--porcelain"):  # new files count: the build would see them
        assert re.fullmatch(re.escape(commit) + r"-dirty-\d{14}", tag), tag
    else:
        assert tag == commit
