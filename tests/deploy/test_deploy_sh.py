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
    arn = listener or _stack_outputs(d, "demo")["ListenerArn"]
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


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_creates_a_repository_per_role_and_every_stack(deployed: Deployer) -> None:
    repos = deployed.client("ecr").describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in repos) == sorted(f"demo/{r}" for r in ROLES)
    stacks = deployed.client("cloudformation").describe_stacks()["Stacks"]
    states = {s["StackName"]: s["StackStatus"] for s in stacks}
    assert states == {"demo": "CREATE_COMPLETE", **{f"demo-{r}": "CREATE_COMPLETE" for r in ROLES}}


def test_prints_the_load_balancer_url(deployed: Deployer) -> None:
    url = _stack_outputs(deployed, "demo")["LoadBalancerUrl"]
    assert url.startswith("https://")
    assert url.endswith(".elb.amazonaws.com")
    assert deployed.first.stdout.strip().splitlines()[-1] == f"clave is deployed: {url}"  # type: ignore[attr-defined]


def test_logs_in_with_get_login_password_and_pushes_one_image_per_role(deployed: Deployer) -> None:
    calls = deployed.calls.read_text().splitlines()
    registry = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
    assert calls[0] == f"login --username AWS --password-stdin {registry}"
    token = deployed.client("ecr").get_authorization_token()["authorizationData"][0]
    import base64

    password = base64.b64decode(token["authorizationToken"]).decode().partition(":")[2]
    assert Path(f"{deployed.calls}.password").read_text().strip() == password
    assert calls[1] == "build --platform linux/amd64 -t clave:t1 ."
    pushed = [c.split()[1] for c in calls if c.startswith("push ")]
    assert pushed == [f"{registry}/demo/{role}:t1" for role in ROLES]
    tasks = deployed.client("ecs").list_task_definitions()["taskDefinitionArns"]
    assert len(tasks) == len(ROLES)


def test_target_groups_check_healthz(deployed: Deployer) -> None:
    groups = deployed.client("elbv2").describe_target_groups()["TargetGroups"]
    assert len(groups) == 1 + 4  # the monolith's (shared) and one per service
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
    assert _stack_outputs(deployed, "demo")["ListenerArn"] == https["ListenerArn"]
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
    redis_secret = _stack_outputs(deployed, "demo")["RedisAuthSecretArn"]
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
        else:
            assert "CLAVE_VERIFY_STORE" not in env
            assert "CLAVE_REDIS_PASSWORD" not in secrets
            assert "CLAVE_SES_FROM" not in env
        assert ("CLAVE_HMAC_KEYS" in secrets) == (role in VERIFY_ROLES)
        assert ("PGPASSWORD" in secrets) == (role != "verify")
        assert ("CLAVE_VERIFY_KEY" in secrets) == (role in ("monolith", "verify", "users"))
        # (moto keeps neither the network mode nor the task role of a CloudFormation task
        # definition: those are checked from the stack's resources below and by cfn-lint.)


def test_task_roles_send_sms_to_phone_numbers_and_email_as_ses_from_only(
    deployed: Deployer,
) -> None:
    account = deployed.client("sts").get_caller_identity()["Account"]
    identity = f"arn:aws:ses:{REGION}:{account}:identity"
    for role in ROLES:
        statements = _role_statements(deployed, f"demo-{role}", "TaskRole")
        if role not in VERIFY_ROLES:
            assert statements == []
            continue
        by_sid = {st["Sid"]: st for st in statements}
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
    redis, database = outputs["RedisAuthSecretArn"], outputs["DatabaseSecretArn"]
    for role in ROLES:
        statements = _role_statements(deployed, f"demo-{role}", "ExecutionRole")
        (read,) = [
            st for st in statements if "secretsmanager:GetSecretValue" in _as_list(st["Action"])
        ]
        readable = set(_as_list(read["Resource"]))
        assert "*" not in readable
        assert (redis in readable) == (role in VERIFY_ROLES)
        assert (outputs["HmacKeysSecretArn"] in readable) == (role in VERIFY_ROLES)
        assert (database in readable) == (role != "verify")


def test_redis_requires_tls_and_the_generated_auth_token(deployed: Deployer) -> None:
    redis_id = _stack_resource(deployed, "demo", "Redis")
    (group,) = deployed.client("elasticache").describe_replication_groups(
        ReplicationGroupId=redis_id
    )["ReplicationGroups"]
    assert group["TransitEncryptionEnabled"] is True
    assert group["AtRestEncryptionEnabled"] is True
    assert group["AuthTokenEnabled"] is True
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
    assert sum("cloudformation deploy" in line for line in printed) == 1 + len(ROLES)
    assert any("ecr get-login-password" in line for line in printed)
    assert sum(" push " in line for line in printed) == len(ROLES)
    shifted = deployed("--dry-run", "us-east-1", "demo", "shift", "threads", "50")
    assert shifted.returncode == 0, shifted.stderr
    assert "ServiceWeight=50 MonolithWeight=50" in shifted.stdout
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
    result = trial("eu-west-1", "trial")
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = _stack_outputs(trial, "trial")
    assert outputs["LoadBalancerUrl"].startswith("http://")
    listeners = _listeners(trial, "trial")
    assert sorted(listeners) == [80]
    (forward,) = listeners[80]["DefaultActions"]
    assert listeners[80]["Protocol"] == "HTTP"
    assert forward["Type"] == "forward"
    assert outputs["ListenerArn"] == listeners[80]["ListenerArn"]
    group = _stack_resource(trial, "trial", "LoadBalancerSecurityGroup")
    (sg,) = trial.client("ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert [p["FromPort"] for p in sg["IpPermissions"]] == [80]
    # No SES_FROM: no email permission at all, SMS as in production.
    sids = {st["Sid"] for st in _role_statements(trial, "trial-verify", "TaskRole")}
    assert sids == {"SmsToPhoneNumbers", "NoTopicsNorEndpoints"}


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("us-east-1",),
        ("nowhere", "demo"),
        ("us-east-1", "Demo_Stack"),
        ("us-east-1", "demo", "shift", "users"),
        ("us-east-1", "demo", "launch"),
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
