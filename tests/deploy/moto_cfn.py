"""moto_server, with the CloudFormation parts it leaves out that clave's templates use.

What is added, and why (each is what CloudFormation does, in the smallest form):
- Outputs, Exports and imports of change sets. `aws cloudformation deploy` creates and executes
  a change set; moto applies its resources but never evaluates the Outputs nor registers the
  Exports (it does both for CreateStack/UpdateStack), and gives the stack no view of other
  stacks' exports, so Fn::ImportValue fails and describe-stacks shows no outputs. This gives a
  change set's stack the exports, and evaluates and registers its own after it is applied.
- Change sets with no changes. AWS creates them and marks them FAILED ("didn't contain
  changes"), which `deploy --no-fail-on-empty-changeset` takes as success; moto refuses
  CreateChangeSet instead, so a re-run would fail. This creates them and marks them FAILED.
- AWS::NoValue in a list (an Fn::If's "nothing" among a list's items). CloudFormation drops
  the item; moto keeps it as null, on which moto's own EC2 security group (ingress rules)
  fails. This drops it.
- The template's Rules. AWS evaluates them against the parameters before it creates a change
  set, and refuses it with the failed assertion's AssertDescription as the message; moto
  ignores the section. This evaluates the rule functions clave's templates use (Ref to a
  parameter, Fn::Equals, Fn::Not, Fn::And, Fn::Or) and refuses the same way.
- AWS::SecretsManager::Secret: moto has Secrets Manager but no CloudFormation type for it. This
  creates the secret in moto's Secrets Manager, generating GenerateSecretString's value as AWS
  does (the template's JSON plus one random key), so a test can read it back.
- AWS::ElastiCache::SubnetGroup and ::ReplicationGroup: no CloudFormation type in moto. The
  subnet group only answers Ref. The replication group is made in moto's ElastiCache (so a
  test can describe it) from the template's properties, after two things moto does not do:
  CloudFormation's dynamic reference in AuthToken (`{{resolve:secretsmanager:...}}`) is
  resolved from moto's Secrets Manager, and the token is refused as ElastiCache refuses it
  (AuthToken without TransitEncryptionEnabled; not 16-128 characters; punctuation other than
  !&#$^<>-). Nothing runs behind it. ::ParameterGroup: no such call in moto's ElastiCache;
  it is kept here, answers Ref with its name, and a replication group naming one that does
  not exist is refused (its family and parameters are read from the template by the tests).
- AWS::CloudWatch::Alarm and AWS::S3::BucketPolicy: no CloudFormation type in moto. They are
  made with moto's own PutMetricAlarm and PutBucketPolicy, so a test reads them back.
- A list parameter (CommaDelimitedList) an update keeps (UsePreviousValue): moto passes on the
  list it parsed, then fails splitting it again. This passes it on as the text it was.
- AWS::NoValue in an update: moto resolves it only when it creates a stack; an update that
  meets one fails (KeyError). This resolves it to nothing in both.
- A resource its Conditions leave out (a component's listener rule in the monolith's stack):
  moto updates it all the same, failing on the resource it never made, and lists it as None
  among the stack's resources, failing DescribeStackResource. This leaves it out of both, as
  CloudFormation does. And a resource of a type moto cannot update (a VPC, a subnet) is lost
  from the stack when a parameter it names changes: it keeps the one moto made.
- A stack whose creation fails: AWS rolls it back and leaves it in ROLLBACK_COMPLETE, with a
  CREATE_FAILED event giving the reason; moto leaves it CREATE_IN_PROGRESS (or answers the
  CreateStack call with the error). This does what AWS does.
- Deleting a stack's network: moto deletes no route table, NAT gateway or VPC endpoint of a
  stack (their types have no delete), so the VPC's deletion fails on the route tables left.
  These are deleted as CloudFormation does, the subnets' associations first.
- An update of a task definition: moto registers the new revision with the template's
  PascalCase container definitions as they are, so it reads no image, command or secret.
  This registers them as moto's create does (in camelCase), the old revision deregistered.
- An RDS instance: moto's creation leaves out DeletionProtection, and moto has no update (it
  loses the instance from the stack). This sets the protection at creation and applies the
  properties RDS changes in place (deletion protection, Multi-AZ, storage) with moto's
  ModifyDBInstance; RDS then refuses to delete a protected instance, as moto does.
- Updates of the types added here: a secret, a subnet group and a replication group stay as
  they were made (an update changes nothing a test reads); an alarm, a bucket policy and a
  parameter group are made again from the new properties.
- The load balancers' and target groups' attributes a template reads (LoadBalancerFullName,
  CanonicalHostedZoneID, TargetGroupFullName): moto answers NotImplementedError or nothing.
  These give them as AWS forms them: the ARN's part after "loadbalancer/" (after
  ":" for a target group), and the zone id of ELB in us-east-1 (Z35SXDOTRQ7X7K).
- CreateServiceLinkedRole for a role that exists: AWS answers InvalidInput "Service role name
  ... has been taken in this account"; moto answers EntityAlreadyExists. This answers as AWS,
  and names ECS's role AWSServiceRoleForECS as AWS does (moto: AWSServiceRoleForecs).
- ECS tasks: moto runs no containers, and RunTask fails on a Fargate container definition
  that gives no memory of its own (the task's is enough for ECS): this counts it as 0. A task started with RunTask is reported stopped at once,
  its container exited 0 (what a successful one-off task looks like), and a service reports
  the tasks it wants as running (what ECS reports once they pass their health checks).

Run as `python moto_cfn.py -H 127.0.0.1 -p PORT` (moto_server's arguments).
"""

from __future__ import annotations

import json
import re
import secrets
import string
import sys
from typing import Any

import yaml
from moto.cloudformation import models, parsing, responses
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.utils import yaml_tag_constructor
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.ec2.models import ec2_backends
from moto.ec2.models.nat_gateways import NatGateway
from moto.ec2.models.route_tables import RouteTable
from moto.ec2.models.vpcs import VPCEndPoint
from moto.ecs import models as ecs_models
from moto.elasticache.exceptions import (
    InvalidParameterCombinationException,
    InvalidParameterValueException,
)
from moto.elasticache.models import elasticache_backends
from moto.elbv2 import models as elbv2_models
from moto.iam.exceptions import EntityAlreadyExists, InvalidInput
from moto.iam.models import SERVICE_NAME_CONVERSION, IAMBackend
from moto.rds import models as rds_models
from moto.s3.models import s3_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.server import main

_apply = models.ChangeSet.apply


def _apply_with_outputs(self: models.ChangeSet) -> None:
    stack = self.stack
    backend = models.cloudformation_backends[stack.account_id][stack.region_name]
    # A stack made by a change set is given no view of the other stacks' exports.
    stack.resource_map.cross_stack_resources = backend.exports
    _apply(self)
    stack.output_map = parsing.OutputMap(stack.resource_map, self.template_dict, stack.stack_id)
    for export in stack.exports:
        backend.exports[export.name] = export


_clean_json = parsing.clean_json


def _clean_json_dropping_no_value(resource_json: Any, resources_map: Any) -> Any:
    # moto's clean_json recurses through the module's name, so nested lists come here too.
    if isinstance(resource_json, list):
        items = (_clean_json_dropping_no_value(item, resources_map) for item in resource_json)
        return [item for item in items if item is not None]
    return _clean_json(resource_json, resources_map)


_create_change_set = responses.CloudFormationResponse.create_change_set
_validate_different_update = responses.CloudFormationResponse._validate_different_update
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to "
    "create a change set."
)


def _rule_value(expression: Any, parameters: dict[str, str]) -> Any:
    """A Rules expression's value: the rule functions clave's templates use, no others."""
    if not isinstance(expression, dict):
        return expression
    ((function, argument),) = expression.items()
    if function == "Ref":
        return parameters[argument]
    values = [_rule_value(item, parameters) for item in argument]
    if function == "Fn::Equals":
        return str(values[0]) == str(values[1])
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::And":
        return all(values)
    if function == "Fn::Or":
        return any(values)
    raise NotImplementedError(f"moto_cfn.py evaluates no {function} in Rules")


def _check_rules(self: responses.CloudFormationResponse) -> None:
    """Refuse the change set as AWS does when an assertion of the template's Rules fails."""
    body = self._get_param("TemplateBody")
    stack_name = self._get_param("StackName")
    updating = self._get_param("ChangeSetType", "CREATE") == "UPDATE"
    if body is None and updating:  # UsePreviousTemplate
        body = self.cloudformation_backend.get_stack(stack_name).template
    yaml.add_multi_constructor("", yaml_tag_constructor)  # as moto parses templates
    template = yaml.load(body or "{}", Loader=yaml.Loader)
    previous = (
        self.cloudformation_backend.get_stack(stack_name).stack_parameters if updating else {}
    )
    parameters = {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
    for given in self._get_param("Parameters", []):
        key = given["ParameterKey"]
        parameters[key] = (
            previous[key] if given.get("UsePreviousValue") else given["ParameterValue"]
        )
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not _rule_value(rule["RuleCondition"], parameters):
            continue
        for assertion in rule["Assertions"]:
            if not _rule_value(assertion["Assert"], parameters):
                raise ValidationError(message=assertion.get("AssertDescription", "Rule failed"))


def _create_change_set_even_if_empty(self: responses.CloudFormationResponse) -> Any:
    _check_rules(self)
    unchanged = False

    def detect(
        incoming_params: list[dict[str, Any]] | None, stack_body: str, old_stack: models.Stack
    ) -> None:
        nonlocal unchanged
        try:
            _validate_different_update(self, incoming_params, stack_body, old_stack)
        except ValidationError:
            unchanged = True

    self._validate_different_update = detect  # type: ignore[method-assign]
    result = _create_change_set(self)
    if unchanged:
        change_set = self.cloudformation_backend.describe_change_set(
            change_set_name=self._get_param("ChangeSetName")
        )
        assert change_set is not None  # just created
        change_set.status = "FAILED"
        change_set.execution_status = "UNAVAILABLE"
        change_set.status_reason = NO_CHANGES
    return result


def _generate(spec: dict[str, Any]) -> str:
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" not in spec:
        return value
    document = json.loads(spec["SecretStringTemplate"])
    document[spec["GenerateStringKey"]] = value
    return json.dumps(document)


def _kept(
    cls: Any,
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> Any:
    """An update that changes nothing moto would show: the resource made stays."""
    return original_resource


def _made_again(
    cls: Any,
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> Any:
    """An update made as a creation from the new properties (moto's calls overwrite)."""
    return cls.create_from_cloudformation_json(
        new_resource_name, cloudformation_json, account_id, region_name
    )


class Secret(CloudFormationModel):
    __module__ = "moto.secretsmanager.clave_cfn"  # moto files models by service

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Secret:
        props = cloudformation_json["Properties"]
        value = props.get("SecretString") or _generate(props["GenerateSecretString"])
        created = secretsmanager_backends[account_id][region_name].create_secret(
            name=props.get("Name", resource_name),
            secret_string=value,
            secret_binary=None,
            description=props.get("Description"),
            tags=[],
            kms_key_id=None,
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        return cls(json.loads(created)["ARN"])

    update_from_cloudformation_json = classmethod(_kept)

    @property
    def physical_resource_id(self) -> str:
        return self.arn


class CacheSubnetGroup(CloudFormationModel):
    __module__ = "moto.elasticache.clave_cfn"  # moto files models by service

    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "CacheSubnetGroupName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElastiCache::SubnetGroup"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CacheSubnetGroup:
        return cls(resource_name.lower())

    update_from_cloudformation_json = classmethod(_kept)

    @property
    def physical_resource_id(self) -> str:
        return self.name


_DYNAMIC_SECRET = re.compile(
    r"\{\{resolve:secretsmanager:(?P<id>arn:[^:]+:secretsmanager:[^:]+:\d+:secret:[^:]+|[^:]+)"
    r"(?::SecretString)?(?::(?P<key>[^:]*))?(?::[^:]*)?(?::[^:]*)?\}\}"
)
_AUTH_TOKEN = re.compile(r"[A-Za-z0-9!&#$^<>-]{16,128}")


def _resolve(value: str, account_id: str, region_name: str) -> str:
    """CloudFormation's `{{resolve:secretsmanager:id[:SecretString[:key[:stage[:version]]]]}}`."""

    def secret(match: re.Match[str]) -> str:
        backend = secretsmanager_backends[account_id][region_name]
        # moto annotates the version id and stage as str; None (the current version) is what
        # its own GetSecretValue passes when the request names neither.
        found = backend.get_secret_value(match["id"], None, None)  # type: ignore[arg-type]
        text: str = found["SecretString"]
        return json.loads(text)[match["key"]] if match["key"] else text

    return _DYNAMIC_SECRET.sub(secret, value)


class ReplicationGroup(CloudFormationModel):
    __module__ = "moto.elasticache.clave_cfn"  # moto files models by service

    def __init__(self, name: str, address: str, port: int) -> None:
        self.name = name
        self.address = address
        self.port = port

    @staticmethod
    def cloudformation_name_type() -> str:
        return "ReplicationGroupId"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElastiCache::ReplicationGroup"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("PrimaryEndPoint.Address", "PrimaryEndPoint.Port")

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ReplicationGroup:
        props = cloudformation_json["Properties"]

        def flag(key: str) -> bool:
            return str(props.get(key, False)).lower() == "true"

        token = props.get("AuthToken")
        tls = flag("TransitEncryptionEnabled")
        if token is not None:
            token = _resolve(token, account_id, region_name)
            if not tls:
                raise InvalidParameterCombinationException(
                    "AuthToken can be specified only when TransitEncryptionEnabled is true"
                )
            if not _AUTH_TOKEN.fullmatch(token):
                raise InvalidParameterValueException(
                    "AuthToken must be 16-128 printable characters, of the punctuation only "
                    "!, &, #, $, ^, <, > and -"
                )
        group_name = props.get("CacheParameterGroupName")
        if group_name is not None and (account_id, region_name, group_name) not in PARAMETER_GROUPS:
            raise InvalidParameterValueException(f"CacheParameterGroup {group_name} not found")
        name = props.get("ReplicationGroupId") or resource_name.lower()[:40]
        nodes = int(props.get("NumCacheClusters", 1))
        # moto's backend takes every CreateReplicationGroup field by name: those the template
        # leaves out are None, the rest come from its properties.
        unset = (
            "global_replication_group_id",
            "primary_cluster_id",
            "snapshot_name",
            "preferred_maintenance_window",
            "notification_topic_arn",
            "snapshot_window",
            "kms_key_id",
            "network_type",
            "ip_discovery",
            "transit_encryption_mode",
            "cluster_mode",
            "serverless_cache_snapshot_name",
        )
        options: dict[str, Any] = dict.fromkeys(unset)
        options.update(
            replication_group_id=name,
            replication_group_description=props["ReplicationGroupDescription"],
            automatic_failover_enabled=flag("AutomaticFailoverEnabled"),
            multi_az_enabled=flag("MultiAZEnabled"),
            num_cache_clusters=nodes,
            preferred_cache_cluster_azs=[],
            num_node_groups=1,
            # (moto counts the nodes of a group without cluster mode from this only.)
            replicas_per_node_group=nodes - 1,
            node_group_configuration=[],
            cache_node_type=props.get("CacheNodeType"),
            cache_parameter_group_name=group_name,
            engine=props.get("Engine"),
            engine_version=props.get("EngineVersion"),
            cache_subnet_group_name=props.get("CacheSubnetGroupName"),
            cache_security_group_names=[],
            security_group_ids=props.get("SecurityGroupIds", []),
            tags=[],
            snapshot_arns=[],
            port=6379,
            auto_minor_version_upgrade=True,
            snapshot_retention_limit=int(props.get("SnapshotRetentionLimit", 0)),
            auth_token=token,
            transit_encryption_enabled=tls,
            at_rest_encryption_enabled=flag("AtRestEncryptionEnabled"),
            user_group_ids=[],
            log_delivery_configurations=[],
            data_tiering_enabled=False,
        )
        backend = elasticache_backends[account_id][region_name]
        group = backend.create_replication_group(**options)
        primary = group.node_groups[0]
        return cls(name, primary["primary_endpoint_address"], primary["port"])

    update_from_cloudformation_json = classmethod(_kept)

    @property
    def physical_resource_id(self) -> str:
        return self.name

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.address if attribute_name == "PrimaryEndPoint.Address" else str(self.port)


# Parameter groups by (account, region, name): their family and parameters.
PARAMETER_GROUPS: dict[tuple[str, str, str], dict[str, Any]] = {}


class CacheParameterGroup(CloudFormationModel):
    __module__ = "moto.elasticache.clave_cfn"  # moto files models by service

    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "CacheParameterGroupName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElastiCache::ParameterGroup"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CacheParameterGroup:
        props = cloudformation_json["Properties"]
        name = resource_name.lower()
        PARAMETER_GROUPS[(account_id, region_name, name)] = {
            "family": props["CacheParameterGroupFamily"],
            "parameters": {k: str(v) for k, v in props.get("Properties", {}).items()},
        }
        return cls(name)

    update_from_cloudformation_json = classmethod(_made_again)

    @property
    def physical_resource_id(self) -> str:
        return self.name


class Alarm(CloudFormationModel):
    __module__ = "moto.cloudwatch.clave_cfn"  # moto files models by service

    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Alarm:
        props = cloudformation_json["Properties"]
        name = props.get("AlarmName") or resource_name
        cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name,
            namespace=props["Namespace"],
            metric_name=props["MetricName"],
            comparison_operator=props["ComparisonOperator"],
            evaluation_periods=int(props["EvaluationPeriods"]),
            period=int(props["Period"]),
            threshold=float(props["Threshold"]),
            statistic=props["Statistic"],
            description=props.get("AlarmDescription", ""),
            dimensions=[
                {"Name": d["Name"], "Value": d["Value"]} for d in props.get("Dimensions", [])
            ],
            alarm_actions=props.get("AlarmActions", []),
            ok_actions=props.get("OKActions", []),
            treat_missing_data=props.get("TreatMissingData"),
        )
        return cls(name)

    update_from_cloudformation_json = classmethod(_made_again)

    @property
    def physical_resource_id(self) -> str:
        return self.name


class BucketPolicy(CloudFormationModel):
    __module__ = "moto.s3.clave_cfn"  # moto files models by service

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> BucketPolicy:
        props = cloudformation_json["Properties"]
        policy = json.dumps(props["PolicyDocument"]).encode()
        s3_backends[account_id]["aws"].put_bucket_policy(props["Bucket"], policy)
        return cls(props["Bucket"])

    update_from_cloudformation_json = classmethod(_made_again)

    @property
    def physical_resource_id(self) -> str:
        return self.bucket


_create_service_linked_role = IAMBackend.create_service_linked_role


def _create_service_linked_role_as_aws(self: IAMBackend, service_name: str, *args: Any) -> Any:
    try:
        return _create_service_linked_role(self, service_name, *args)
    except EntityAlreadyExists as exc:
        role = str(exc.message).split()[3]  # "Role with name <name> already exists."
        raise InvalidInput(
            f"Service role name {role} has been taken in this account, please try a different "
            "suffix."
        ) from None


_run_task = ecs_models.EC2ContainerServiceBackend.run_task


def _run_task_to_completion(self: Any, *args: Any, **kwargs: Any) -> Any:
    tasks = _run_task(self, *args, **kwargs)
    for task in tasks:
        task.last_status = task.desired_status = "STOPPED"
        task.stopped_reason = "Essential container in task exited"
        for container in task.containers:
            container.last_status = "STOPPED"
            container.exitCode = 0
    return tasks


_requirements = ecs_models.EC2ContainerServiceBackend._calculate_task_resource_requirements


def _requirements_of_fargate(task_definition: Any) -> Any:
    for container in task_definition.container_definitions:
        if container.get("memory") is None:
            container["memory"] = 0
    return _requirements(task_definition)


_describe_services = ecs_models.EC2ContainerServiceBackend.describe_services


def _describe_services_running(self: Any, *args: Any, **kwargs: Any) -> Any:
    found = _describe_services(self, *args, **kwargs)
    for service in found[0] if isinstance(found, tuple) else found:
        if hasattr(service, "desired_count"):
            service.running_count = service.desired_count
            service.pending_count = 0
    return found


def _delete_route_table(self: Any, account_id: str, region_name: str) -> None:
    backend = ec2_backends[account_id][region_name]
    if self.id in backend.route_tables:  # (moto's DeleteVpc takes the last one with it)
        self._associations.clear()  # the subnets' associations go with it
        backend.delete_route_table(self.id)


def _delete_nat_gateway(self: Any, account_id: str, region_name: str) -> None:
    ec2_backends[account_id][region_name].delete_nat_gateway(self.id)


def _delete_vpc_endpoint(self: Any, account_id: str, region_name: str) -> None:
    backend = ec2_backends[account_id][region_name]
    # (Its routes went with a route table deleted first.)
    self.route_table_ids = [r for r in self.route_table_ids if r in backend.route_tables]
    backend.delete_vpc_endpoints([self.id])


def _update_task_definition(
    cls: Any,
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> Any:
    ecs_models.ecs_backends[account_id][region_name].deregister_task_definition(
        original_resource.arn
    )
    return ecs_models.TaskDefinition.create_from_cloudformation_json(
        new_resource_name, cloudformation_json, account_id, region_name
    )


_create_db_instance = rds_models.DBInstance.create_from_cloudformation_json


def _create_db_instance_protected(
    cls: Any, resource_name: str, cloudformation_json: dict[str, Any], *args: Any, **kwargs: Any
) -> Any:
    instance = _create_db_instance(resource_name, cloudformation_json, *args, **kwargs)
    protected = cloudformation_json["Properties"].get("DeletionProtection", False)
    instance.deletion_protection = str(protected).lower() == "true"
    return instance


def _update_db_instance(
    cls: Any,
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> Any:
    props = cloudformation_json["Properties"]
    changes: dict[str, Any] = {}
    for key, name in (("DeletionProtection", "deletion_protection"), ("MultiAZ", "multi_az")):
        if key in props:
            changes[name] = str(props[key]).lower() == "true"
    for key, name in (
        ("AllocatedStorage", "allocated_storage"),
        ("MaxAllocatedStorage", "max_allocated_storage"),
    ):
        if key in props:
            changes[name] = int(props[key])
    backend = rds_models.rds_backends[account_id][region_name]
    backend.modify_db_instance(original_resource.db_instance_identifier, changes)
    return original_resource


_load_parameters = parsing.ResourceMap.load_parameters


def _load_parameters_kept_as_text(self: Any) -> None:
    self.input_parameters = {
        key: ",".join(value) if isinstance(value, list) else value
        for key, value in self.input_parameters.items()
    }
    _load_parameters(self)


def _stack_resources_made(self: models.Stack) -> Any:
    return [resource for resource in self.resource_map.values() if resource is not None]


_resource = parsing.ResourceMap.__getitem__


def _resource_or_no_value(self: Any, key: str) -> Any:
    if key == "AWS::NoValue":
        return None
    return _resource(self, key)


_update_resource = parsing.parse_and_update_resource


def _update_resource_if_made(
    logical_id: str, resource_json: dict[str, Any], resources_map: Any, **kwargs: Any
) -> Any:
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        return None
    updated = _update_resource(logical_id, resource_json, resources_map, **kwargs)
    # A type moto cannot update (a VPC, a subnet...) keeps the resource it made.
    return resources_map._parsed_resources.get(logical_id) if updated is None else updated


_create_resources = models.Stack.create_resources


def _create_resources_or_roll_back(self: models.Stack) -> None:
    try:
        _create_resources(self)
    except Exception as exc:  # what AWS reports of a failed creation
        reason = getattr(exc, "message", None) or str(exc)
        self._add_stack_event("CREATE_FAILED", resource_status_reason=reason)
        self._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
        self.status = "ROLLBACK_COMPLETE"
        self._add_stack_event("ROLLBACK_COMPLETE")


_lb_attribute = elbv2_models.FakeLoadBalancer.get_cfn_attribute


def _lb_attribute_as_aws(self: Any, attribute_name: str) -> Any:
    if attribute_name == "LoadBalancerFullName":
        return self.arn.split(":loadbalancer/", 1)[1]
    if attribute_name == "CanonicalHostedZoneID":
        return "Z35SXDOTRQ7X7K"
    return _lb_attribute(self, attribute_name)


def _target_group_attribute(self: Any, attribute_name: str) -> Any:
    if attribute_name == "TargetGroupFullName":
        return self.arn.rsplit(":", 1)[1]
    raise NotImplementedError(f"moto_cfn.py gives no {attribute_name} of a target group")


parsing.clean_json = _clean_json_dropping_no_value
models.Stack.create_resources = _create_resources_or_roll_back  # type: ignore[method-assign]
RouteTable.delete = _delete_route_table  # type: ignore[attr-defined]
NatGateway.delete = _delete_nat_gateway  # type: ignore[attr-defined]
VPCEndPoint.delete = _delete_vpc_endpoint  # type: ignore[attr-defined]
ecs_models.TaskDefinition.update_from_cloudformation_json = classmethod(  # type: ignore[method-assign,assignment]
    _update_task_definition
)
rds_models.DBInstance.create_from_cloudformation_json = classmethod(  # type: ignore[method-assign,assignment]
    _create_db_instance_protected
)
rds_models.DBInstance.update_from_cloudformation_json = classmethod(_update_db_instance)  # type: ignore[method-assign,assignment]
parsing.ResourceMap.load_parameters = _load_parameters_kept_as_text  # type: ignore[method-assign]
models.Stack.stack_resources = property(_stack_resources_made)  # type: ignore[method-assign,assignment]
parsing.ResourceMap.__getitem__ = _resource_or_no_value  # type: ignore[method-assign]
parsing.parse_and_update_resource = _update_resource_if_made  # type: ignore[assignment]
elbv2_models.FakeLoadBalancer.get_cfn_attribute = _lb_attribute_as_aws  # type: ignore[method-assign]
elbv2_models.FakeTargetGroup.get_cfn_attribute = _target_group_attribute  # type: ignore[attr-defined]
models.ChangeSet.apply = _apply_with_outputs  # type: ignore[method-assign]
responses.CloudFormationResponse.create_change_set = _create_change_set_even_if_empty  # type: ignore[method-assign]
SERVICE_NAME_CONVERSION["ecs"] = "ECS"
IAMBackend.create_service_linked_role = _create_service_linked_role_as_aws  # type: ignore[method-assign,assignment]
ecs_models.EC2ContainerServiceBackend.run_task = _run_task_to_completion  # type: ignore[method-assign]
ecs_models.EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(  # type: ignore[method-assign]
    _requirements_of_fargate
)
ecs_models.EC2ContainerServiceBackend.describe_services = _describe_services_running  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
