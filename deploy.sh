#!/usr/bin/env bash
# Deploy and operate clave on AWS: ECS on Fargate behind an ALB, from infrastructure/*.yml.
#
#   ./deploy.sh <region> <stack> [deploy]                  build, push, deploy everything
#   ./deploy.sh <region> <stack> shift <service> <percent> move a share of a path's traffic
#   ./deploy.sh <region> <stack> retire <service>          the monolith stops serving it
#   ./deploy.sh <region> <stack> status                    stacks, services, routes, URL
#   ./deploy.sh <region> <stack> logs <role> [--since 1h] [--follow]
#   ./deploy.sh <region> <stack> redeploy <role|all>       new tasks (after a secret changed)
#   ./deploy.sh <region> <stack> rollback <role> <tag>     run an earlier image of a role
#   ./deploy.sh <region> <stack> exec <role> -- <command>  a command in a running task
#   ./deploy.sh <region> <stack> destroy                   delete it all (asks first)
#
# Flags, anywhere: --dry-run (print every AWS and Docker command that would change something,
# run none of them), --yes (answer yes: delete a stack left in ROLLBACK_COMPLETE, destroy).
#
# Needs the AWS CLI (v2), Docker (deploy), the Session Manager plugin (exec), and Python 3.11+
# (the clave CLI reads routes.toml; `make install` provides it). Re-running is safe.
#
# Environment (README, "Deploy to AWS"): CERTIFICATE_ARN, ALLOW_PLAIN_HTTP, DOMAIN_NAME and
# HOSTED_ZONE_ID, PUBLIC_URL, ALARM_TOPIC_ARN, REDIS_FAILOVER, SES_FROM, SNS, SNS_SENDER_ID,
# TWILIO_MESSAGING_SERVICE_SID, DB_POOL_SIZE, TASKS_MIN, TASKS_MAX, SHARED_PARAMETERS and
# ROLE_PARAMETERS (extra Key=Value overrides), IMAGE_TAG, ROUTES, CLAVE, AWS, DOCKER,
# DOCKER_BUILD_ARGS, PROGRESS_EVERY (seconds between progress lines), SCALE_TIMEOUT.
set -Eeuo pipefail

cd "$(dirname "$0")"

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

fail() { # message...: the failure and the step it ended, and exit 1
    echo "deploy.sh: $*" >&2
    echo "deploy.sh: FAILED at step: $STEP" >&2
    exit 1
}

# --- arguments: flags anywhere, "--" ends them (what follows is exec's command) ------------
STEP="arguments"
DRY_RUN=false
YES=false
FOLLOW=false
SINCE=1h
POSITIONAL=()
COMMAND=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=true ;;
        --yes | -y) YES=true ;;
        --follow | -f) FOLLOW=true ;;
        --since)
            [[ $# -ge 2 ]] || usage
            SINCE=$2
            shift
            ;;
        --)
            shift
            COMMAND=("$@")
            break
            ;;
        -*)
            echo "deploy.sh: unknown flag $1" >&2
            usage
            ;;
        *) POSITIONAL+=("$1") ;;
    esac
    shift
done
[[ ${#POSITIONAL[@]} -ge 2 ]] || usage
REGION=${POSITIONAL[0]}
STACK=${POSITIONAL[1]}
ACTION=${POSITIONAL[2]:-deploy}
ARGS=("${POSITIONAL[@]:3}")

if [[ ! "$REGION" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then
    echo "deploy.sh: '$REGION' is not an AWS region (like eu-west-1)" >&2
    exit 2
fi
# The stack name prefixes ECR repositories, which must be lower case.
if [[ ! "$STACK" =~ ^[a-z][a-z0-9-]{0,27}$ ]]; then
    echo "deploy.sh: stack name must be lower case letters, digits and -, at most 28, got '$STACK'" >&2
    exit 2
fi
[[ ${PROGRESS_EVERY:-20} =~ ^[1-9][0-9]*$ && ${SCALE_TIMEOUT:-900} =~ ^[1-9][0-9]*$ ]] || {
    echo "deploy.sh: PROGRESS_EVERY and SCALE_TIMEOUT are whole seconds above 0" >&2
    exit 2
}
[[ $SINCE =~ ^[0-9]+[smhdw]$ ]] || {
    echo "deploy.sh: --since takes a duration like 30m, 1h or 2d, got '$SINCE'" >&2
    exit 2
}

CERTIFICATE_ARN=${CERTIFICATE_ARN:-}
ALLOW_PLAIN_HTTP=${ALLOW_PLAIN_HTTP:-false}
DOMAIN_NAME=${DOMAIN_NAME:-}
HOSTED_ZONE_ID=${HOSTED_ZONE_ID:-}
ALARM_TOPIC_ARN=${ALARM_TOPIC_ARN:-}
SES_FROM=${SES_FROM:-}
SNS=${SNS:-false}
SNS_SENDER_ID=${SNS_SENDER_ID:-}
TWILIO_MESSAGING_SERVICE_SID=${TWILIO_MESSAGING_SERVICE_SID:-}
PUBLIC_URL=${PUBLIC_URL:-}
REDIS_FAILOVER=${REDIS_FAILOVER:-true}
DB_POOL_SIZE=${DB_POOL_SIZE:-3}
TASKS_MIN=${TASKS_MIN:-2}
TASKS_MAX=${TASKS_MAX:-6}
PROGRESS_EVERY=${PROGRESS_EVERY:-20}
SCALE_TIMEOUT=${SCALE_TIMEOUT:-900}
read -r -a SHARED_EXTRA <<<"${SHARED_PARAMETERS:-}"
read -r -a ROLE_EXTRA <<<"${ROLE_PARAMETERS:-}"

# What the shared stack's rules and the parameters' patterns would refuse, refused here
# first, before anything is built or pushed.
check_deploy_settings() {
    if [[ "$ALLOW_PLAIN_HTTP" != true && "$ALLOW_PLAIN_HTTP" != false ]]; then
        echo "deploy.sh: ALLOW_PLAIN_HTTP must be true or false, got '$ALLOW_PLAIN_HTTP'" >&2
        exit 2
    fi
    if [[ "$REDIS_FAILOVER" != true && "$REDIS_FAILOVER" != false ]]; then
        echo "deploy.sh: REDIS_FAILOVER must be true or false, got '$REDIS_FAILOVER'" >&2
        exit 2
    fi
    if [[ "$SNS" != true && "$SNS" != false ]]; then
        echo "deploy.sh: SNS must be true or false, got '$SNS'" >&2
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
    if [[ -n "$DOMAIN_NAME" || -n "$HOSTED_ZONE_ID" ]] && [[ -z "$DOMAIN_NAME" || -z "$HOSTED_ZONE_ID" ]]; then
        echo "deploy.sh: DOMAIN_NAME and HOSTED_ZONE_ID go together (the alias record is made in that zone)" >&2
        exit 2
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

AWS=${AWS:-aws}
DOCKER=${DOCKER:-docker}
CLAVE=${CLAVE:-.venv/bin/clave}
ROUTES=${ROUTES:-routes.toml}
ROLES=(monolith verify users threads posts)
STARTED=$SECONDS

is_role() { # role [more allowed...]
    local want=$1 role
    shift
    for role in "${ROLES[@]}" "$@"; do [[ "$role" == "$want" ]] && return 0; done
    return 1
}

# --- steps: each names itself; a failure names the step it failed in ---------------------
step() {
    STEP=$1
    echo "deploy.sh: [$(elapsed)] $STEP" >&2
}
elapsed() {
    local s=$((SECONDS - STARTED))
    printf '%dm%02ds' $((s / 60)) $((s % 60))
}
on_error() {
    local code=$?
    # (A command substitution's subshell fails its caller, which says it once.)
    [[ $BASHPID == "$$" ]] && echo "deploy.sh: FAILED at step: $STEP (exit $code, after $(elapsed))" >&2
    exit "$code"
}
trap on_error ERR

# Run a command that changes something, or under --dry-run print it (shell-quoted) instead.
run() {
    if $DRY_RUN; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Ask a yes/no question: --yes answers yes; without a terminal to ask on, no.
confirm() { # question
    $YES && return 0
    [[ -t 0 ]] || return 1
    local answer
    read -r -p "$1 [y/N] " answer
    [[ "$answer" == y || "$answer" == yes ]]
}

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "deploy.sh: '$1' not found: $2" >&2
        exit 1
    fi
}

aws_() { "$AWS" --region "$REGION" "$@"; }

# The routing table as lines of: service priority weight retired paths,comma,separated. Read
# into a variable first: a table clave refuses fails the step here (a `< <(...)` would not).
routes() {
    "$CLAVE" routes show --format tsv --routes "$ROUTES"
}

stack_status() { # stack: its status, or NONE
    aws_ cloudformation describe-stacks --stack-name "$1" \
        --query 'Stacks[0].StackStatus' --output text 2>/dev/null || echo NONE
}

stack_output() { # stack key
    aws_ cloudformation describe-stacks --stack-name "$1" \
        --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text
}

failed_events() { # stack: the latest failures, newest first
    echo "deploy.sh: the latest failed events of stack $1:" >&2
    aws_ cloudformation describe-stack-events --stack-name "$1" \
        --query "StackEvents[?contains(ResourceStatus, 'FAILED')] | [0:10].[Timestamp,LogicalResourceId,ResourceType,ResourceStatusReason]" \
        --output text 2>/dev/null | sed 's/^/  /' >&2 || true
}

# RDS refuses to delete a protected instance, and CloudFormation then fails the stack's
# deletion (or its rollback): lift the protection on the instance itself, if there is one.
lift_database_protection() { # stack
    local instance
    instance=$(aws_ cloudformation describe-stack-resource --stack-name "$1" \
        --logical-resource-id Database --query StackResourceDetail.PhysicalResourceId \
        --output text 2>/dev/null) || return 0
    [[ -n "$instance" && "$instance" != None ]] || return 0
    aws_ rds describe-db-instances --db-instance-identifier "$instance" >/dev/null 2>&1 || return 0
    echo "deploy.sh: turning off the deletion protection of database $instance" >&2
    run "$AWS" --region "$REGION" rds modify-db-instance --db-instance-identifier "$instance" \
        --no-deletion-protection --apply-immediately --query DBInstance.DBInstanceIdentifier \
        --output text >&2
}

# A stack whose creation failed is left in ROLLBACK_COMPLETE, which CloudFormation cannot
# update: say why it failed, and delete it (asked, or --yes) so the deploy can create it anew.
# (ROLLBACK_FAILED: the rollback could not delete something, such as a protected database.)
clear_failed_creation() { # stack
    local status
    status=$(stack_status "$1")
    [[ "$status" == ROLLBACK_COMPLETE || "$status" == ROLLBACK_FAILED ]] || return 0
    echo "deploy.sh: stack $1 is in $status: its creation failed, and CloudFormation cannot update it." >&2
    failed_events "$1"
    if ! confirm "Delete stack $1 (nothing of it is left running) and create it again?"; then
        fail "stack $1 is in $status: fix the cause above, then delete it" \
            "(aws cloudformation delete-stack --region $REGION --stack-name $1) or re-run with --yes"
    fi
    lift_database_protection "$1"
    run "$AWS" --region "$REGION" cloudformation delete-stack --stack-name "$1"
    run "$AWS" --region "$REGION" cloudformation wait stack-delete-complete --stack-name "$1"
}

# `aws cloudformation deploy`, with a progress line every PROGRESS_EVERY seconds while the
# stack changes, and the stack's failed events when it fails.
deploy_stack() { # name template [parameter overrides...]
    local name=$1 template=$2
    shift 2
    clear_failed_creation "$name"
    local command=("$AWS" --region "$REGION" cloudformation deploy --stack-name "$name"
        --template-file "$template" --capabilities CAPABILITY_IAM
        --no-fail-on-empty-changeset --tags app=clave "clave:stack=$STACK"
        --parameter-overrides "$@")
    if $DRY_RUN; then
        run "${command[@]}"
        return
    fi
    local started=$SECONDS
    "${command[@]}" >&2 &
    local pid=$! code=0 progress
    # A line every PROGRESS_EVERY seconds while it runs, from a loop beside it.
    while sleep "$PROGRESS_EVERY" >/dev/null 2>&1; do
        echo "deploy.sh: [$(elapsed)] $name: $(stack_status "$name") ($((SECONDS - started)) s)" >&2
    done &
    progress=$!
    wait "$pid" || code=$?
    kill "$progress" 2>/dev/null || true
    wait "$progress" 2>/dev/null || true
    if [[ $code -ne 0 ]]; then
        failed_events "$name"
        return "$code"
    fi
    echo "deploy.sh: [$(elapsed)] $name: $(stack_status "$name")" >&2
}

# ECS's service-linked role: services behind a load balancer need it, and a new account does
# not have it until something creates it. Creating it is idempotent here: "has been taken"
# means it exists.
ensure_service_linked_role() {
    if $DRY_RUN; then
        run "$AWS" iam create-service-linked-role --aws-service-name ecs.amazonaws.com
        return
    fi
    local out
    if ! out=$("$AWS" iam create-service-linked-role --aws-service-name ecs.amazonaws.com 2>&1); then
        grep -q "has been taken in this account" <<<"$out" || {
            echo "$out" >&2
            return 1
        }
    else
        sleep "${SLR_SETTLE:-10}" # IAM's new role reaches ECS within seconds
    fi
}

SHARED_OUTPUTS=()
# The shared stack's outputs the role stacks take as parameters.
read_shared_outputs() {
    local public internal url public_url
    if $DRY_RUN && [[ "$(stack_status "$STACK")" == NONE ]]; then
        public="(PublicListenerArn)" internal="(InternalListenerArn)" url="http://(internal)"
        public_url=""
    else
        public=$(stack_output "$STACK" PublicListenerArn)
        internal=$(stack_output "$STACK" InternalListenerArn)
        url=$(stack_output "$STACK" InternalUrl)
        public_url=$(stack_output "$STACK" PublicUrl)
    fi
    SHARED_OUTPUTS=(PublicListenerArn="$public" InternalListenerArn="$internal" InternalUrl="$url")
    # With a name of yours, clave writes it into URLs (unless PUBLIC_URL says otherwise).
    if [[ -z "$PUBLIC_URL" && -n "$DOMAIN_NAME" ]]; then
        PUBLIC_URL=$public_url
    fi
}

# Tasks by weight: a component no traffic reaches runs none.
counts() { # weight
    if [[ "$1" -eq 0 ]]; then
        echo "DesiredCount=0 MinCount=0 MaxCount=0"
    else
        echo "DesiredCount=$TASKS_MIN MinCount=$TASKS_MIN MaxCount=$TASKS_MAX"
    fi
}

role_settings() { # the settings every role stack gets from the environment
    echo "SesFrom=$SES_FROM" "PublicUrl=$PUBLIC_URL" "Sns=$SNS" "SnsSenderId=$SNS_SENDER_ID" \
        "TwilioMessagingServiceSid=$TWILIO_MESSAGING_SERVICE_SID" "DbPoolSize=$DB_POOL_SIZE" \
        "AlarmTopicArn=$ALARM_TOPIC_ARN"
}

# A service's stack from its line of the routing table; image "" keeps the deployed one, as
# does every parameter not given (aws cloudformation deploy passes UsePreviousValue).
deploy_service() { # service priority weight retired paths image tasks-weight
    local service=$1 priority=$2 weight=$3 retired=$4 paths=$5 image=$6 tasks_weight=$7
    local params settings tasks
    read -r -a settings <<<"$(role_settings)"
    read -r -a tasks <<<"$(counts "$tasks_weight")"
    params=(SharedStack="$STACK" Role="$service" Priority="$priority"
        PathPatterns="$paths" ServiceWeight="$weight" MonolithWeight="$((100 - weight))"
        Retired="$retired" "${SHARED_OUTPUTS[@]}" "${settings[@]}" "${tasks[@]}" "${ROLE_EXTRA[@]}")
    [[ -n "$image" ]] && params+=(ImageUri="$image")
    step "$service: $weight% of ${paths} to the service (rule priority $priority)"
    deploy_stack "$STACK-$service" infrastructure/service.yml "${params[@]}"
}

# Wait until a service runs the tasks it wants (before traffic is sent to it).
wait_running() { # service
    $DRY_RUN && return 0
    local started=$SECONDS running desired
    while :; do
        read -r running desired < <(aws_ ecs describe-services --cluster "$STACK" --services "$1" \
            --query 'services[0].[runningCount,desiredCount]' --output text)
        [[ "$running" =~ ^[0-9]+$ && "$desired" =~ ^[0-9]+$ ]] || fail "no service $1 in cluster $STACK"
        [[ "$running" -ge "$desired" ]] && return 0
        ((SECONDS - started < SCALE_TIMEOUT)) ||
            fail "$1 runs $running of $desired tasks after ${SCALE_TIMEOUT}s: see ./deploy.sh $REGION $STACK logs $1"
        echo "deploy.sh: [$(elapsed)] $1: $running of $desired tasks running" >&2
        sleep 10
    done
}

registry_of() { # account
    echo "$1.dkr.ecr.$REGION.amazonaws.com"
}

account_id() {
    if $DRY_RUN; then
        echo 123456789012
    else
        aws_ sts get-caller-identity --query Account --output text
    fi
}

# An image tag names one build for good (the repositories refuse to move a tag): the commit,
# or for a tree with uncommitted changes the commit and the time.
image_tag() {
    if [[ -n "${IMAGE_TAG:-}" ]]; then
        echo "$IMAGE_TAG"
        return
    fi
    local commit
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null) || {
        date -u +%Y%m%d%H%M%S
        return
    }
    # Any change the build would see, new files included, makes it another build.
    if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
        echo "$commit-dirty-$(date -u +%Y%m%d%H%M%S)"
    else
        echo "$commit"
    fi
}

image_exists() { # repository tag
    aws_ ecr describe-images --repository-name "$1" --image-ids imageTag="$2" >/dev/null 2>&1
}

# The one-off `clave db init` task: a user and a database per forum domain.
init_databases() { # image
    step "database users: stack $STACK-dbinit"
    deploy_stack "$STACK-dbinit" infrastructure/dbinit.yml SharedStack="$STACK" ImageUri="$1"
    step "database users: clave db init (a one-off task)"
    local subnets group network task
    if $DRY_RUN; then
        subnets="(PrivateSubnets)" group="(DatabaseInitSecurityGroup)"
    else
        subnets=$(stack_output "$STACK" PrivateSubnets)
        group=$(stack_output "$STACK" DatabaseInitSecurityGroup)
    fi
    network="awsvpcConfiguration={subnets=[$subnets],securityGroups=[$group],assignPublicIp=DISABLED}"
    if $DRY_RUN; then
        run "$AWS" --region "$REGION" ecs run-task --cluster "$STACK" --launch-type FARGATE \
            --task-definition "$STACK-dbinit" --network-configuration "$network"
        return
    fi
    task=$(aws_ ecs run-task --cluster "$STACK" --launch-type FARGATE \
        --task-definition "$STACK-dbinit" --network-configuration "$network" \
        --started-by deploy.sh --query 'tasks[0].taskArn' --output text)
    [[ -n "$task" && "$task" != None ]] || fail "ECS started no task for $STACK-dbinit"
    local started=$SECONDS status code reason
    while :; do
        read -r status code reason < <(aws_ ecs describe-tasks --cluster "$STACK" --tasks "$task" \
            --query 'tasks[0].[lastStatus,containers[0].exitCode,stoppedReason]' --output text)
        [[ "$status" == STOPPED ]] && break
        if ((SECONDS - started >= SCALE_TIMEOUT)); then
            aws_ ecs stop-task --cluster "$STACK" --task "$task" --reason "deploy.sh: timed out" >/dev/null
            fail "clave db init did not finish in ${SCALE_TIMEOUT}s (stopped it):" \
                "aws logs tail --region $REGION /clave/$STACK/dbinit"
        fi
        echo "deploy.sh: [$(elapsed)] clave db init: $status" >&2
        sleep 6
    done
    if [[ "$code" != 0 ]]; then
        fail "clave db init exited ${code} (${reason}): aws logs tail --region $REGION /clave/$STACK/dbinit"
    fi
}

# An earlier release's shared stack made Redis with one node. ElastiCache refuses to add the
# replica and turn failover on in one change: the replica goes first, failover after.
redis_upgrade_params() {
    case "$(stack_status "$STACK")" in
        CREATE_COMPLETE | UPDATE_COMPLETE | UPDATE_ROLLBACK_COMPLETE | IMPORT_COMPLETE) ;;
        *) return 0 ;; # none yet, or one that is made anew
    esac
    local keys
    keys=$(aws_ cloudformation describe-stacks --stack-name "$STACK" \
        --query 'Stacks[0].Parameters[].ParameterKey' --output text)
    grep -qw RedisFailover <<<"$keys" || echo "RedisFailover=false"
}

database_version() { # the shared stack's database's running version, or nothing
    local instance
    instance=$(aws_ cloudformation describe-stack-resource --stack-name "$STACK" \
        --logical-resource-id Database --query StackResourceDetail.PhysicalResourceId \
        --output text 2>/dev/null) || return 0
    aws_ rds describe-db-instances --db-instance-identifier "$instance" \
        --query 'DBInstances[0].EngineVersion' --output text 2>/dev/null || true
}

deploy_all() {
    need "$DOCKER" "install Docker to build the image"
    check_deploy_settings
    # The access-log bucket's policy names ELB's account by region: a region the table does
    # not know stops here, not after the build.
    grep -q "^    $REGION: {Id: " infrastructure/shared.yml ||
        fail "region $REGION is not in shared.yml's ElbAccount mapping: add it (Id: none for" \
            "a region opened after August 2022, ELB's account id for an older one)"
    local table tag account registry
    step "routing table $ROUTES"
    table=$(routes)
    tag=$(image_tag)

    step "image clave:$tag (built before any stack changes)"
    # shellcheck disable=SC2086 # DOCKER_BUILD_ARGS is a list of arguments
    run "$DOCKER" build --platform linux/amd64 ${DOCKER_BUILD_ARGS:-} -t "clave:$tag" .

    step "ECS service-linked role"
    ensure_service_linked_role

    local shared=(CertificateArn="$CERTIFICATE_ARN" AllowPlainHttp="$ALLOW_PLAIN_HTTP"
        DomainName="$DOMAIN_NAME" HostedZoneId="$HOSTED_ZONE_ID" AlarmTopicArn="$ALARM_TOPIC_ARN"
        RedisFailover="$REDIS_FAILOVER" "${SHARED_EXTRA[@]}")
    local first="" running=""
    $DRY_RUN || first=$(redis_upgrade_params)
    # The version a database runs (RDS upgrades minors itself): the stack asks for no change.
    $DRY_RUN || running=$(database_version)
    if [[ -n "$running" && "$running" != None ]]; then
        shared+=(DatabaseEngineVersion="$running")
    fi
    if [[ -n "$first" ]]; then
        step "shared stack $STACK, Redis replica first (failover is turned on next)"
        deploy_stack "$STACK" infrastructure/shared.yml "${shared[@]}" "$first" "${SHARED_EXTRA[@]}"
    fi
    step "shared stack $STACK (network, load balancers, cluster, repositories, data)"
    deploy_stack "$STACK" infrastructure/shared.yml "${shared[@]}"
    read_shared_outputs

    account=$(account_id)
    registry=$(registry_of "$account")
    step "image clave:$tag pushed to $registry/$STACK/<role>"
    if $DRY_RUN; then
        run "$AWS" --region "$REGION" ecr get-login-password
        run "$DOCKER" login --username AWS --password-stdin "$registry"
    else
        aws_ ecr get-login-password | "$DOCKER" login --username AWS --password-stdin "$registry"
    fi
    local role
    for role in "${ROLES[@]}"; do
        if ! $DRY_RUN && image_exists "$STACK/$role" "$tag"; then
            echo "deploy.sh: $STACK/$role:$tag is already there" >&2
            continue
        fi
        run "$DOCKER" tag "clave:$tag" "$registry/$STACK/$role:$tag"
        run "$DOCKER" push "$registry/$STACK/$role:$tag"
    done

    init_databases "$registry/$STACK/monolith:$tag"

    local settings tasks
    read -r -a settings <<<"$(role_settings)"
    read -r -a tasks <<<"$(counts 100)"
    step "monolith"
    deploy_stack "$STACK-monolith" infrastructure/service.yml SharedStack="$STACK" Role=monolith \
        ImageUri="$registry/$STACK/monolith:$tag" "${SHARED_OUTPUTS[@]}" "${settings[@]}" \
        "${tasks[@]}" "${ROLE_EXTRA[@]}"
    local line service priority weight retired paths
    local -a lines
    mapfile -t lines <<<"$table" # (a loop reading the table would take confirm's terminal)
    for line in "${lines[@]}"; do
        IFS=$'\t' read -r service priority weight retired paths <<<"$line"
        deploy_service "$service" "$priority" "$weight" "$retired" "$paths" \
            "$registry/$STACK/$service:$tag" "$weight"
    done

    local url
    if $DRY_RUN; then
        url="(the PublicUrl output of stack $STACK)"
    else
        url=$(stack_output "$STACK" PublicUrl)
    fi
    echo "clave is deployed: ${url:-(see the PublicUrl output of stack $STACK)} (in $(elapsed))"
}

# Change one service's line of the table (clave validates it), then its stack's rules only.
change_route() { # shift|retire service [percent]
    local change=$1 target=$2
    shift 2
    is_role "$target" && [[ "$target" != monolith ]] || fail "no service '$target' (one of verify users threads posts)"
    if $DRY_RUN; then # change a copy: a dry run leaves the table as it is
        DRY_COPY=$(mktemp)
        trap 'rm -f "$DRY_COPY"' EXIT
        cp "$ROUTES" "$DRY_COPY"
        ROUTES=$DRY_COPY
    fi
    step "routing table $ROUTES"
    local before after
    before=$(routes)
    "$CLAVE" routes "$change" "$target" "$@" --routes "$ROUTES" >&2
    after=$(routes)
    read_shared_outputs
    local service priority weight retired paths old=0 found=false
    while IFS=$'\t' read -r service priority weight retired paths; do
        [[ "$service" == "$target" ]] && old=$weight
    done <<<"$before"
    local line
    local -a lines
    mapfile -t lines <<<"$after" # (a loop reading the table would take confirm's terminal)
    for line in "${lines[@]}"; do
        IFS=$'\t' read -r service priority weight retired paths <<<"$line"
        [[ "$service" == "$target" ]] || continue
        found=true
        if [[ "$old" -eq 0 && "$weight" -gt 0 ]]; then
            # Its tasks first, while no traffic reaches it; the traffic once they run.
            deploy_service "$service" "$priority" 0 false "$paths" "" "$weight"
            step "$service: waiting for its tasks"
            wait_running "$service"
        fi
        deploy_service "$service" "$priority" "$weight" "$retired" "$paths" "" "$weight"
    done
    $found || fail "no service $target in $ROUTES"
    $DRY_RUN || echo "deploy.sh: $ROUTES changed; commit it, so the next full deploy keeps it" >&2
}

show_status() {
    step "status of $STACK in $REGION"
    echo "Stacks:"
    local name
    for name in "$STACK" "$STACK-dbinit" "${ROLES[@]/#/$STACK-}"; do
        printf '  %-24s %s\n' "$name" "$(stack_status "$name")"
    done
    echo "Services (running/desired, task definition):"
    aws_ ecs describe-services --cluster "$STACK" --services "${ROLES[@]}" \
        --query 'services[].[serviceName,runningCount,desiredCount,taskDefinition]' \
        --output text 2>/dev/null | while read -r service running desired definition; do
        printf '  %-10s %s/%s  %s\n' "$service" "$running" "$desired" "${definition##*/}"
    done || echo "  (no cluster $STACK)"
    echo "Routes ($ROUTES):"
    routes | while IFS=$'\t' read -r service priority weight retired paths; do
        printf '  %-8s %3s%% to the service%s  %s\n' "$service" "$weight" \
            "$([[ $retired == true ]] && echo ', retired')" "$paths"
    done
    echo "URL: $(stack_output "$STACK" PublicUrl 2>/dev/null || echo '(no shared stack)')"
}

# The role's log lines since --since (with --follow, then new ones as they come), through
# FilterLogEvents: the same with AWS CLI v1 and v2.
show_logs() { # role
    is_role "$1" dbinit || fail "no role '$1' (one of ${ROLES[*]} dbinit)"
    local group="/clave/$STACK/$1" unit=${SINCE: -1} count=${SINCE%?} seconds start
    case "$unit" in
        s) seconds=$count ;; m) seconds=$((count * 60)) ;; h) seconds=$((count * 3600)) ;;
        d) seconds=$((count * 86400)) ;; w) seconds=$((count * 604800)) ;;
    esac
    start=$((($(date +%s) - seconds) * 1000))
    while :; do
        local lines last
        lines=$(aws_ logs filter-log-events --log-group-name "$group" --start-time "$start" \
            --query 'events[].[timestamp,logStreamName,message]' --output text)
        if [[ -n "$lines" && "$lines" != None ]]; then
            printf '%s\n' "$lines"
            last=$(tail -n 1 <<<"$lines" | cut -f1)
            [[ "$last" =~ ^[0-9]+$ ]] && start=$((last + 1))
        fi
        $FOLLOW || return 0
        sleep 5
    done
}

redeploy() { # role|all
    local roles=("$1")
    [[ "$1" == all ]] && roles=("${ROLES[@]}")
    local role
    for role in "${roles[@]}"; do
        is_role "$role" || fail "no role '$role' (one of ${ROLES[*]} or all)"
        step "$role: new tasks (they read the secrets again)"
        run "$AWS" --region "$REGION" ecs update-service --cluster "$STACK" --service "$role" \
            --force-new-deployment --query 'service.deployments[0].id' --output text
    done
}

rollback() { # role tag
    local role=$1 tag=$2
    is_role "$role" || fail "no role '$role' (one of ${ROLES[*]})"
    [[ "$tag" =~ ^[A-Za-z0-9_.-]{1,128}$ ]] || fail "'$tag' is not an image tag"
    step "$role: image $tag"
    image_exists "$STACK/$role" "$tag" ||
        fail "no image $STACK/$role:$tag in ECR (aws ecr describe-images --region $REGION --repository-name $STACK/$role)"
    local registry
    registry=$(registry_of "$(account_id)")
    # Only the image changes: every other parameter keeps its value.
    deploy_stack "$STACK-$role" infrastructure/service.yml ImageUri="$registry/$STACK/$role:$tag"
    echo "deploy.sh: $role runs $tag; the next full deploy puts the current commit back" >&2
}

exec_in() { # role, command in COMMAND
    local role=$1
    is_role "$role" || fail "no role '$role' (one of ${ROLES[*]})"
    [[ ${#COMMAND[@]} -gt 0 ]] || fail "exec needs a command after --, e.g. exec verify -- clave apikey create --service shop"
    step "$role: a running task"
    local task
    task=$(aws_ ecs list-tasks --cluster "$STACK" --service-name "$role" --desired-status RUNNING \
        --query 'taskArns[0]' --output text)
    [[ -n "$task" && "$task" != None ]] || fail "no running task of $role (./deploy.sh $REGION $STACK status)"
    $DRY_RUN || need session-manager-plugin "install AWS's Session Manager plugin for the AWS CLI (ECS Exec)"
    local line
    line=$(printf '%q ' "${COMMAND[@]}")
    step "$role: ${line% } in task ${task##*/}"
    run "$AWS" --region "$REGION" ecs execute-command --cluster "$STACK" --task "$task" \
        --container clave --interactive --command "${line% }"
}

destroy() {
    local name existing=()
    for name in "${ROLES[@]/#/$STACK-}" "$STACK-dbinit" "$STACK"; do
        [[ "$(stack_status "$name")" == NONE ]] || existing+=("$name")
    done
    [[ ${#existing[@]} -gt 0 ]] || fail "no stack of $STACK in $REGION"
    {
        echo "deploy.sh destroy deletes, in $REGION: the stacks ${existing[*]}:"
        echo "  every task and service, both load balancers, the VPC and its NAT gateways,"
        echo "  the ECR repositories with their images, Redis (every pending code, API key and"
        echo "  queued send in it), the secrets (HMAC keys, provider credentials, passwords),"
        echo "  the log groups, the alarms. Kept: a final snapshot of the PostgreSQL instance"
        echo "  (RDS), and the access-log bucket ($(stack_output "$STACK" AccessLogsBucket 2>/dev/null || echo '?'))."
    } >&2
    if ! $YES; then
        [[ -t 0 ]] || fail "destroy asks before it deletes: run it in a terminal, or add --yes"
        local answer
        read -r -p "Type the stack name ($STACK) to delete it all: " answer
        [[ "$answer" == "$STACK" ]] || fail "not confirmed: nothing deleted"
    fi
    for name in "${existing[@]}"; do
        step "deleting stack $name"
        # RDS refuses to delete a protected instance: lift the protection first, on the
        # instance (an update of the stack would also apply whatever else its template changed).
        if [[ "$name" == "$STACK" ]]; then
            lift_database_protection "$STACK"
        fi
        run "$AWS" --region "$REGION" cloudformation delete-stack --stack-name "$name"
        if ! run "$AWS" --region "$REGION" cloudformation wait stack-delete-complete --stack-name "$name"; then
            failed_events "$name"
            fail "stack $name was not deleted"
        fi
    done
    echo "deploy.sh: $STACK is deleted (in $(elapsed))" >&2
}

need "$AWS" "install the AWS CLI v2"
if [[ ! -x "$CLAVE" ]]; then
    echo "deploy.sh: installing the clave CLI (make install) to read $ROUTES" >&2
    make install >&2
fi

case "$ACTION" in
    deploy)
        [[ ${#ARGS[@]} -eq 0 ]] || usage
        deploy_all
        ;;
    shift)
        [[ ${#ARGS[@]} -eq 2 && "${ARGS[1]}" =~ ^[0-9]+$ ]] || usage
        change_route shift "${ARGS[0]}" "${ARGS[1]}"
        ;;
    retire)
        [[ ${#ARGS[@]} -eq 1 ]] || usage
        change_route retire "${ARGS[0]}"
        ;;
    status)
        [[ ${#ARGS[@]} -eq 0 ]] || usage
        show_status
        ;;
    logs)
        [[ ${#ARGS[@]} -eq 1 ]] || usage
        show_logs "${ARGS[0]}"
        ;;
    redeploy)
        [[ ${#ARGS[@]} -eq 1 ]] || usage
        redeploy "${ARGS[0]}"
        ;;
    rollback)
        [[ ${#ARGS[@]} -eq 2 ]] || usage
        rollback "${ARGS[0]}" "${ARGS[1]}"
        ;;
    exec)
        [[ ${#ARGS[@]} -eq 1 ]] || usage
        exec_in "${ARGS[0]}"
        ;;
    destroy)
        [[ ${#ARGS[@]} -eq 0 ]] || usage
        destroy
        ;;
    *)
        usage
        ;;
esac
