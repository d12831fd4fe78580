#!/usr/bin/env bash
# Deploy clave to AWS: ECS on Fargate behind an ALB, from infrastructure/*.yml.
#
#   ./deploy.sh [--dry-run] <region> <stack>                           build, push, deploy all
#   ./deploy.sh [--dry-run] <region> <stack> shift <service> <percent>  move a path's traffic
#   ./deploy.sh [--dry-run] <region> <stack> retire <service>           monolith stops serving it
#
# Needs the AWS CLI (v2), Docker, and Python 3.11+ (the clave CLI reads routes.toml; `make
# install` provides it). Re-running is safe: unchanged stacks are left as they are.
# --dry-run prints every AWS and Docker command instead of running it.
#
# Environment: CERTIFICATE_ARN (ACM certificate in <region>: HTTPS on 443, HTTP redirected;
# required for a deploy unless ALLOW_PLAIN_HTTP=true, which serves plain HTTP on 80 instead),
# SES_FROM (the address verify emails from through SES; unset: no SES), PUBLIC_URL (the origin
# clients reach clave at, e.g. https://verify.example.com, when a name of yours points at the
# load balancer; unset: the protocol and host the load balancer passes on), IMAGE_TAG (default:
# the git commit), ROUTES (routing table, default routes.toml), CLAVE (the clave CLI, default
# .venv/bin/clave), AWS and DOCKER (the commands), DOCKER_BUILD_ARGS (extra build arguments,
# e.g. "--build-arg PYTHON_IMAGE=...").
set -euo pipefail

cd "$(dirname "$0")"

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

DRY_RUN=false
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=true
    shift
fi
[[ $# -ge 2 ]] || usage
REGION=$1
STACK=$2
shift 2
ACTION=${1:-deploy}
[[ $# -gt 0 ]] && shift

if [[ ! "$REGION" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then
    echo "deploy.sh: '$REGION' is not an AWS region (like eu-west-1)" >&2
    exit 2
fi
# The stack name prefixes ECR repositories, which must be lower case.
if [[ ! "$STACK" =~ ^[a-z][a-z0-9-]{0,27}$ ]]; then
    echo "deploy.sh: stack name must be lower case letters, digits and -, at most 28, got '$STACK'" >&2
    exit 2
fi

CERTIFICATE_ARN=${CERTIFICATE_ARN:-}
ALLOW_PLAIN_HTTP=${ALLOW_PLAIN_HTTP:-false}
SES_FROM=${SES_FROM:-}
PUBLIC_URL=${PUBLIC_URL:-}

# What the shared stack's rule (HttpsNeedsACertificate) and parameter patterns would refuse,
# refused here first, before anything is built or pushed.
check_deploy_settings() {
    if [[ "$ALLOW_PLAIN_HTTP" != true && "$ALLOW_PLAIN_HTTP" != false ]]; then
        echo "deploy.sh: ALLOW_PLAIN_HTTP must be true or false, got '$ALLOW_PLAIN_HTTP'" >&2
        exit 2
    fi
    if [[ -z "$CERTIFICATE_ARN" && "$ALLOW_PLAIN_HTTP" != true ]]; then
        {
            echo "deploy.sh: the load balancer serves HTTPS only, and CERTIFICATE_ARN is not set."
            echo "  Set CERTIFICATE_ARN to an ACM certificate in $REGION for your domain, or"
            echo "  ALLOW_PLAIN_HTTP=true to serve plain HTTP on port 80 (the shared stack's"
            echo "  AllowPlainHttp parameter): codes and API keys then cross the internet unencrypted."
        } >&2
        exit 2
    fi
    if [[ -n "$CERTIFICATE_ARN" ]]; then
        if [[ ! "$CERTIFICATE_ARN" =~ ^arn:aws[a-z-]*:(acm|iam):([a-z0-9-]*):[0-9]{12}:[a-z-]+/.+$ ]]; then
            echo "deploy.sh: CERTIFICATE_ARN is not a certificate ARN: '$CERTIFICATE_ARN'" >&2
            exit 2
        fi
        if [[ "${BASH_REMATCH[1]}" == acm && "${BASH_REMATCH[2]}" != "$REGION" ]]; then
            echo "deploy.sh: CERTIFICATE_ARN is in ${BASH_REMATCH[2]}, the load balancer in $REGION:" \
                "request or import the certificate in ACM in $REGION" >&2
            exit 2
        fi
    fi
    local origin='^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$'
    if [[ -n "$PUBLIC_URL" && ! "$PUBLIC_URL" =~ $origin ]]; then
        echo "deploy.sh: PUBLIC_URL must be an origin such as https://verify.example.com, got" \
            "'$PUBLIC_URL'" >&2
        exit 2
    fi
    local address='^[^@[:space:]<>"]+@[^@[:space:]<>"]+$'
    if [[ -n "$SES_FROM" && ! "$SES_FROM" =~ $address ]]; then
        echo "deploy.sh: SES_FROM must be a bare email address (no display name), got '$SES_FROM'" >&2
        exit 2
    fi
}

if [[ "$ACTION" == deploy ]]; then
    check_deploy_settings
fi

AWS=${AWS:-aws}
DOCKER=${DOCKER:-docker}
CLAVE=${CLAVE:-.venv/bin/clave}
ROUTES=${ROUTES:-routes.toml}
ROLES=(monolith verify users threads posts)

# Run a command, or under --dry-run print it (shell-quoted) instead.
run() {
    if $DRY_RUN; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "deploy.sh: '$1' not found: $2" >&2
        exit 1
    fi
}

need "$AWS" "install the AWS CLI v2"
if [[ ! -x "$CLAVE" ]]; then
    echo "deploy.sh: installing the clave CLI (make install) to read $ROUTES" >&2
    make install >&2
fi

# The routing table as lines of: service priority weight retired paths,comma,separated
routes() {
    "$CLAVE" routes show --format tsv --routes "$ROUTES"
}

deploy_stack() { # name template [parameter overrides...]
    local name=$1 template=$2
    shift 2
    run "$AWS" cloudformation deploy --region "$REGION" --stack-name "$name" \
        --template-file "$template" --capabilities CAPABILITY_IAM \
        --no-fail-on-empty-changeset --tags app=clave "clave:stack=$STACK" \
        --parameter-overrides "$@"
}

# A service's stack from its line of the routing table; image "" keeps the deployed one, as
# does every parameter not given (aws cloudformation deploy passes UsePreviousValue).
deploy_service() { # service priority weight retired paths image [Key=Value...]
    local service=$1 priority=$2 weight=$3 retired=$4 paths=$5 image=$6
    shift 6
    local params=(SharedStack="$STACK" Role="$service" Priority="$priority"
        PathPatterns="$paths" ServiceWeight="$weight" MonolithWeight="$((100 - weight))"
        Retired="$retired" "$@")
    [[ -n "$image" ]] && params+=(ImageUri="$image")
    echo "deploy.sh: $service: $weight% of ${paths} to the service (rule priority $priority)" >&2
    deploy_stack "$STACK-$service" infrastructure/service.yml "${params[@]}"
}

stack_output() { # stack key
    run "$AWS" cloudformation describe-stacks --region "$REGION" --stack-name "$1" \
        --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text
}

deploy_all() {
    need "$DOCKER" "install Docker to build the image"
    local account registry tag
    if $DRY_RUN; then
        run "$AWS" sts get-caller-identity --query Account --output text
        account=123456789012
    else
        account=$("$AWS" sts get-caller-identity --query Account --output text)
    fi
    registry="$account.dkr.ecr.$REGION.amazonaws.com"
    tag=${IMAGE_TAG:-$(git describe --always --dirty --abbrev=12 2>/dev/null || date +%Y%m%d%H%M%S)}

    echo "deploy.sh: shared stack $STACK (network, load balancer, cluster, repositories, data)" >&2
    deploy_stack "$STACK" infrastructure/shared.yml CertificateArn="$CERTIFICATE_ARN" \
        AllowPlainHttp="$ALLOW_PLAIN_HTTP"

    echo "deploy.sh: image clave:$tag, pushed to $registry/$STACK/<role>" >&2
    if $DRY_RUN; then
        run "$AWS" ecr get-login-password --region "$REGION"
        run "$DOCKER" login --username AWS --password-stdin "$registry"
    else
        "$AWS" ecr get-login-password --region "$REGION" |
            "$DOCKER" login --username AWS --password-stdin "$registry"
    fi
    # shellcheck disable=SC2086 # DOCKER_BUILD_ARGS is a list of arguments
    run "$DOCKER" build --platform linux/amd64 ${DOCKER_BUILD_ARGS:-} -t "clave:$tag" .
    for role in "${ROLES[@]}"; do
        run "$DOCKER" tag "clave:$tag" "$registry/$STACK/$role:$tag"
        run "$DOCKER" push "$registry/$STACK/$role:$tag"
    done

    echo "deploy.sh: monolith" >&2
    deploy_stack "$STACK-monolith" infrastructure/service.yml SharedStack="$STACK" \
        Role=monolith ImageUri="$registry/$STACK/monolith:$tag" SesFrom="$SES_FROM" \
        PublicUrl="$PUBLIC_URL"
    local service priority weight retired paths
    while IFS=$'\t' read -r service priority weight retired paths; do
        deploy_service "$service" "$priority" "$weight" "$retired" "$paths" \
            "$registry/$STACK/$service:$tag" SesFrom="$SES_FROM" PublicUrl="$PUBLIC_URL"
    done < <(routes)

    local url
    if $DRY_RUN; then
        stack_output "$STACK" LoadBalancerUrl
        url="(the LoadBalancerUrl output of stack $STACK)"
    else
        url=$(stack_output "$STACK" LoadBalancerUrl)
    fi
    echo "clave is deployed: ${url:-(see the LoadBalancerUrl output of stack $STACK)}"
}

# Change one service's line of the table (clave validates it), then its stack's rule only.
change_route() { # shift|retire service [percent]
    local change=$1 target=$2
    shift 2
    if $DRY_RUN; then # change a copy: a dry run leaves the table as it is
        DRY_COPY=$(mktemp)
        trap 'rm -f "$DRY_COPY"' EXIT
        cp "$ROUTES" "$DRY_COPY"
        ROUTES=$DRY_COPY
    fi
    "$CLAVE" routes "$change" "$target" "$@" --routes "$ROUTES" >&2
    local service priority weight retired paths found=false
    while IFS=$'\t' read -r service priority weight retired paths; do
        if [[ "$service" == "$target" ]]; then
            found=true
            deploy_service "$service" "$priority" "$weight" "$retired" "$paths" ""
        fi
    done < <(routes)
    $found || { echo "deploy.sh: no service $target in $ROUTES" >&2; exit 1; }
    $DRY_RUN || echo "deploy.sh: $ROUTES changed; commit it, so the next full deploy keeps it" >&2
}

case "$ACTION" in
    deploy)
        [[ $# -eq 0 ]] || usage
        deploy_all
        ;;
    shift)
        [[ $# -eq 2 && "$2" =~ ^[0-9]+$ ]] || usage
        change_route shift "$1" "$2"
        ;;
    retire)
        [[ $# -eq 1 ]] || usage
        change_route retire "$1"
        ;;
    *)
        usage
        ;;
esac
