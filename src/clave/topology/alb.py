"""The AWS Application Load Balancer's listener rules, rendered from the routing table."""

from __future__ import annotations

from typing import Any

from clave.topology.table import RoutingTable

# Before every component's rule (their priorities start at 10).
METRICS_RULE_PRIORITY = 1
NOT_FOUND_BODY = '{"error":{"code":"not_found","message":"not found"}}'


def alb_rules(table: RoutingTable) -> list[dict[str, Any]]:
    """The ALB listener rules (CloudFormation `AWS::ElasticLoadBalancingV2::ListenerRule`
    properties), one per component: its path patterns, its priority, and a weighted forward
    between the monolith's target group and the component's. Target groups are `Ref`s to
    `MonolithTargetGroup` and `<Component>TargetGroup`, and the listener to `Listener`.

    Each rule names its component under the key "Service", the output's first name, which
    `clave routes show --format alb` keeps for whoever reads it."""
    rules: list[dict[str, Any]] = [
        {
            # Prometheus scrapes each component directly: /metrics is never served publicly.
            "Service": "metrics",
            "Properties": {
                "ListenerArn": {"Ref": "Listener"},
                "Priority": METRICS_RULE_PRIORITY,
                "Conditions": [
                    {
                        "Field": "path-pattern",
                        "PathPatternConfig": {"Values": ["/metrics", "/metrics/*"]},
                    }
                ],
                "Actions": [
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {
                            "StatusCode": "404",
                            "ContentType": "application/json",
                            "MessageBody": NOT_FOUND_BODY,
                        },
                    }
                ],
            },
        }
    ]
    for r in table.routes:
        groups = [
            {
                "TargetGroupArn": {"Ref": f"{r.component.capitalize()}TargetGroup"},
                "Weight": r.weight,
            }
        ]
        if not r.retired:
            groups.insert(
                0, {"TargetGroupArn": {"Ref": "MonolithTargetGroup"}, "Weight": 100 - r.weight}
            )
        rules.append(
            {
                "Service": r.component,
                "Properties": {
                    "ListenerArn": {"Ref": "Listener"},
                    "Priority": r.priority,
                    "Conditions": [
                        {"Field": "path-pattern", "PathPatternConfig": {"Values": list(r.paths)}}
                    ],
                    "Actions": [{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
                },
            }
        )
    return rules
