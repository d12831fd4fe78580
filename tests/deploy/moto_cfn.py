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
- AWS::SecretsManager::Secret: moto has Secrets Manager but no CloudFormation type for it. This
  creates the secret in moto's Secrets Manager, generating GenerateSecretString's value as AWS
  does (the template's JSON plus one random key), so a test can read it back.
- AWS::ElastiCache::SubnetGroup and ::ReplicationGroup: no CloudFormation type in moto. These
  only answer Ref and the PrimaryEndPoint attributes (an address in AWS's form, port 6379);
  nothing runs behind them.

Run as `python moto_cfn.py -H 127.0.0.1 -p PORT` (moto_server's arguments).
"""

from __future__ import annotations

import json
import secrets
import string
import sys
from typing import Any

from moto.cloudformation import models, responses
from moto.cloudformation.exceptions import ValidationError
from moto.core.common_models import CloudFormationModel
from moto.secretsmanager.models import secretsmanager_backends
from moto.server import main

_apply = models.ChangeSet.apply


def _apply_with_outputs(self: models.ChangeSet) -> None:
    stack = self.stack
    backend = models.cloudformation_backends[stack.account_id][stack.region_name]
    # A stack made by a change set is given no view of the other stacks' exports.
    stack.resource_map.cross_stack_resources = backend.exports
    _apply(self)
    stack.output_map = models.OutputMap(stack.resource_map, self.template_dict, stack.stack_id)
    for export in stack.exports:
        backend.exports[export.name] = export


_create_change_set = responses.CloudFormationResponse.create_change_set
_validate_different_update = responses.CloudFormationResponse._validate_different_update
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to "
    "create a change set."
)


def _create_change_set_even_if_empty(self: responses.CloudFormationResponse) -> Any:
    unchanged = False

    def detect(*args: Any) -> None:
        nonlocal unchanged
        try:
            _validate_different_update(self, *args)
        except ValidationError:
            unchanged = True

    self._validate_different_update = detect  # type: ignore[method-assign]
    result = _create_change_set(self)
    if unchanged:
        change_set = self.cloudformation_backend.describe_change_set(
            change_set_name=self._get_param("ChangeSetName")
        )
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
    def create_from_cloudformation_json(  # type: ignore[override]
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
    def create_from_cloudformation_json(  # type: ignore[override]
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


class ReplicationGroup(CloudFormationModel):
    __module__ = "moto.elasticache.clave_cfn"  # moto files models by service

    def __init__(self, name: str, region: str) -> None:
        self.name = name
        self.address = f"master.{name}.abc123.{region[:3]}1.cache.amazonaws.com"

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
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ReplicationGroup:
        return cls(resource_name.lower()[:40], region_name)

    @property
    def physical_resource_id(self) -> str:
        return self.name

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.address if attribute_name == "PrimaryEndPoint.Address" else "6379"


models.ChangeSet.apply = _apply_with_outputs  # type: ignore[method-assign]
responses.CloudFormationResponse.create_change_set = _create_change_set_even_if_empty  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
