"""deploy.sh against moto_server on loopback, standing in for AWS.

What is real: deploy.sh, the AWS CLI it calls, CloudFormation's change sets as moto runs them,
and the ECR repositories, stacks, target groups, listener rules, task definitions, IAM roles and
secrets those produce, read back over moto's API. What is not (and why):
- moto_cfn.py adds what moto leaves out of change sets (outputs, exports, imports) and the
  CloudFormation types it lacks (Secrets Manager secrets, ElastiCache); see its docstring.
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
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from clave.platform.routing import RoutingTable, alb_rules
from clave.verify.settings import parse_hmac_keys
from tests.deploy.conftest import ROOT, tool
from tests.services import wait_until
from tests.support import free_port

REGION = "us-east-1"
ROLES = ("monolith", "verify", "users", "threads", "posts")
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
    def __init__(self, moto: str, tmp: Path) -> None:
        self.moto = moto
        self.tmp = tmp
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
            "AWS_DEFAULT_REGION": REGION,
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
            region_name=REGION,
            endpoint_url=self.moto,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="module")
def deployed(moto: str, tmp_path_factory: pytest.TempPathFactory) -> Deployer:
    deployer = Deployer(moto, tmp_path_factory.mktemp("deploy"))
    result = deployer("us-east-1", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    deployer.first = result  # type: ignore[attr-defined]
    return deployer


def _rules(d: Deployer) -> dict[int, dict[str, Any]]:
    elb = d.client("elbv2")
    (lb,) = elb.describe_load_balancers()["LoadBalancers"]
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    return {int(r["Priority"]): r for r in rules if r["Priority"] != "default"}


def _stack_outputs(d: Deployer, name: str) -> dict[str, str]:
    (stack,) = d.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def test_creates_a_repository_per_role_and_every_stack(deployed: Deployer) -> None:
    repos = deployed.client("ecr").describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in repos) == sorted(f"demo/{r}" for r in ROLES)
    stacks = deployed.client("cloudformation").describe_stacks()["Stacks"]
    states = {s["StackName"]: s["StackStatus"] for s in stacks}
    assert states == {"demo": "CREATE_COMPLETE", **{f"demo-{r}": "CREATE_COMPLETE" for r in ROLES}}


def test_prints_the_load_balancer_url(deployed: Deployer) -> None:
    url = _stack_outputs(deployed, "demo")["LoadBalancerUrl"]
    assert url.startswith("http://")
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
    assert sorted(rules) == [r.priority for r in table.routes]
    for expected in alb_rules(table):
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


def test_each_role_runs_its_command_with_only_its_secrets(deployed: Deployer) -> None:
    ecs = deployed.client("ecs")
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
        # (moto keeps an Fn::If's AWS::NoValue in a list as null; CloudFormation drops it.)
        secrets = {s["name"] for s in container.get("secrets", []) if s}
        env = {e["name"]: e["value"] for e in container["environment"] if e}
        if role in ("monolith", "verify"):
            assert env["CLAVE_VERIFY_STORE"] == _stack_outputs(deployed, "demo")["RedisUrl"]
            assert env["CLAVE_VERIFY_STORE"].startswith("rediss://master.")
        else:
            assert "CLAVE_VERIFY_STORE" not in env
        assert ("CLAVE_HMAC_KEYS" in secrets) == (role in ("monolith", "verify"))
        assert ("PGPASSWORD" in secrets) == (role != "verify")
        assert ("CLAVE_VERIFY_KEY" in secrets) == (role in ("monolith", "verify", "users"))
        # (moto keeps neither the network mode nor the task role of a CloudFormation task
        # definition: those are checked from the stack's resources below and by cfn-lint.)


def test_task_roles_are_least_privilege(deployed: Deployer) -> None:
    iam = deployed.client("iam")
    cfn = deployed.client("cloudformation")
    for role in ROLES:
        name = cfn.describe_stack_resource(StackName=f"demo-{role}", LogicalResourceId="TaskRole")[
            "StackResourceDetail"
        ]["PhysicalResourceId"]
        policies = iam.list_role_policies(RoleName=name)["PolicyNames"]
        actions: set[str] = set()
        for policy in policies:
            doc = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            if isinstance(doc, str):  # moto returns a CloudFormation policy as a Python repr
                doc = ast.literal_eval(doc) if doc.startswith("{'") else json.loads(doc)
            for statement in doc["Statement"]:
                acts = statement["Action"]
                actions |= set([acts] if isinstance(acts, str) else acts)
        if role in ("monolith", "verify"):
            assert actions == {"sns:Publish", "ses:SendEmail", "ses:SendRawEmail"}
        else:
            assert actions == set()


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
