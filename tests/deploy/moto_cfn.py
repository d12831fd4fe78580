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
  !&#$^<>-). Nothing runs behind it.

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
from moto.core.common_models import CloudFormationModel
from moto.elasticache.exceptions import (
    InvalidParameterCombinationException,
    InvalidParameterValueException,
)
from moto.elasticache.models import elasticache_backends
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
        name = props.get("ReplicationGroupId") or resource_name.lower()[:40]
        # moto's backend takes every CreateReplicationGroup field by name: those the template
        # leaves out are None, the rest come from its properties.
        unset = (
            "global_replication_group_id",
            "primary_cluster_id",
            "cache_parameter_group_name",
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
            num_cache_clusters=int(props.get("NumCacheClusters", 1)),
            preferred_cache_cluster_azs=[],
            num_node_groups=1,
            replicas_per_node_group=0,
            node_group_configuration=[],
            cache_node_type=props.get("CacheNodeType"),
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

    @property
    def physical_resource_id(self) -> str:
        return self.name

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.address if attribute_name == "PrimaryEndPoint.Address" else str(self.port)


parsing.clean_json = _clean_json_dropping_no_value
models.ChangeSet.apply = _apply_with_outputs  # type: ignore[method-assign]
responses.CloudFormationResponse.create_change_set = _create_change_set_even_if_empty  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
