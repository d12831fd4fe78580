"""Redis verify store: for several clave tasks sharing one state, one round trip per operation.

Every read-modify-write is one Lua script, so it is atomic and costs one round trip. Keys of a
verification expire with it (plus `retention`, so a read still shows how it ended). The outbox is
a stream read through a consumer group: an entry handed to a dispatcher that died stays pending
in the group and is re-claimed (XCLAIM) by another once its lease, kept on clave's clock, has
passed; a retry waits in a sorted set until it is due. Scripts build key names from the prefix,
so this needs a single Redis (primary/replica, as ElastiCache's non-cluster mode), not Redis
Cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from clave.platform.errors import StoreError
from clave.platform.urls import redacted
from clave.verify.models import (
    REPORTABLE,
    ApiKey,
    Channel,
    CheckGate,
    CheckOutcome,
    Delivery,
    Event,
    Policy,
    SealedCode,
    SendAttempt,
    SendStatus,
    Service,
    StartOutcome,
    Status,
    Verification,
    new_id,
    payment_of,
)

GROUP = "dispatch"

# Shared by the scripts: how a verification is read back (its hash and its attempts).
_PRELUDE = """
local P = ARGV[1]
local function vkey(vid) return P .. 'v:' .. vid end
local function load(vid)
  local v = redis.call('HGETALL', vkey(vid))
  if #v == 0 then return nil end
  local ids = redis.call('LRANGE', vkey(vid) .. ':att', 0, -1)
  local attempts = {}
  for i, aid in ipairs(ids) do
    local a = redis.call('HGETALL', P .. 'a:' .. aid)
    if #a > 0 then table.insert(a, 'id'); table.insert(a, aid); table.insert(attempts, a) end
  end
  return {v, attempts}
end
local function field(vid, name) return redis.call('HGET', vkey(vid), name) end
local EVENTS = {approved = 'verification.approved', canceled = 'verification.canceled',
  expired = 'verification.expired', max_attempts_reached = 'verification.max_attempts_reached',
  failed = 'verification.failed'}
local function close(vid, from, to, now)
  if field(vid, 'status') ~= from then return 0 end
  redis.call('HSET', vkey(vid), 'status', to, 'updated_at', now)
  if from == 'pending' then
    local pk = P .. 'pending:' .. field(vid, 'service_id') .. ':' .. field(vid, 'to')
    if redis.call('GET', pk) == vid then redis.call('DEL', pk) end
    redis.call('ZREM', P .. 'expiring', vid)
  end
  if EVENTS[to] and redis.call('EXISTS', P .. 'events-on') == 1 then
    -- In the same script as the change: an event is never lost, nor raised twice.
    redis.call('XADD', P .. 'events', '*', 'type', EVENTS[to], 'vid', vid,
      'sid', field(vid, 'service_id'), 'at', now)
  end
  return 1
end
"""

# ARGV: prefix, now, window, max_sends, channel, locale, retention, deliver (1/0), options
# (JSON), then the candidate's fields.
_START = (
    _PRELUDE
    + """
local now, window, max_sends = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local channel, locale, retention = ARGV[5], ARGV[6], tonumber(ARGV[7])
local deliver, options = ARGV[8] == '1', ARGV[9]
local c = {}
for i = 10, #ARGV, 2 do c[ARGV[i]] = ARGV[i + 1] end
local pk = P .. 'pending:' .. c.service_id .. ':' .. c.to
local vid = redis.call('GET', pk)
if vid then
  local status, expires = field(vid, 'status'), tonumber(field(vid, 'expires_at') or '0')
  if status ~= 'pending' then
    vid = nil
  elseif now >= expires then
    close(vid, 'pending', 'expired', ARGV[2])
    vid = nil
  end
end
local zk = P .. 'sends:' .. c.service_id .. ':' .. c.to
redis.call('ZREMRANGEBYSCORE', zk, '-inf', '(' .. tostring(now - window))
local count = redis.call('ZCARD', zk)
if count >= max_sends then
  local oldest = redis.call('ZRANGE', zk, 0, 0, 'WITHSCORES')
  return {'limited', tostring(tonumber(oldest[2]) + window), count, vid or ''}
end
if vid and (field(vid, 'binding') or '') ~= (c.binding or '') then
  -- What the code would mean changed: the old code dies, a new one starts.
  close(vid, 'pending', 'canceled', ARGV[2])
  vid = nil
end
local created = 0
local expires_at
if not vid then
  vid = c.id
  created = 1
  expires_at = tonumber(c.expires_at)
  local fields = {}
  for k, v in pairs(c) do table.insert(fields, k); table.insert(fields, v) end
  redis.call('HSET', vkey(vid), unpack(fields))
  redis.call('SET', pk, vid, 'PXAT', math.floor(expires_at * 1000))
  redis.call('ZADD', P .. 'expiring', expires_at, vid)
else
  expires_at = tonumber(field(vid, 'expires_at'))
  redis.call('HSET', vkey(vid), 'channel', channel, 'updated_at', ARGV[2])
end
local keep_until = math.floor(expires_at + retention)
local aid = tostring(redis.call('INCR', P .. 'seq:attempt'))
redis.call('HSET', P .. 'a:' .. aid, 'vid', vid, 'service_id', c.service_id, 'to', c.to,
  'channel', channel, 'locale', locale, 'status', deliver and 'queued' or 'skipped',
  'options', options, 'created_at', ARGV[2],
  'updated_at', ARGV[2], 'tries', 0)
redis.call('EXPIREAT', P .. 'a:' .. aid, keep_until)
redis.call('RPUSH', vkey(vid) .. ':att', aid)
redis.call('EXPIREAT', vkey(vid) .. ':att', keep_until)
redis.call('EXPIREAT', vkey(vid), keep_until)
redis.call('ZADD', zk, now, aid)
redis.call('EXPIRE', zk, math.ceil(window) + 1)
if deliver then redis.call('XADD', P .. 'outbox', '*', 'aid', aid) end
return {'ok', vid, created, count + 1, load(vid)}
"""
)

# ARGV: prefix, service id, verification id or '', destination or '', now, window
_COUNT_CHECK = (
    _PRELUDE
    + """
local sid, vid, to, now, window = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if vid == '' then vid = redis.call('GET', P .. 'pending:' .. sid .. ':' .. to) end
if not vid or field(vid, 'service_id') ~= sid then return {'not_found'} end
local status = field(vid, 'status')
local zk = P .. 'sends:' .. sid .. ':' .. field(vid, 'to')
local sends = redis.call('ZCOUNT', zk, '(' .. tostring(now - window), '+inf')
if status == 'max_attempts_reached' then return {'locked', load(vid), sends} end
if status ~= 'pending' then return {'not_found'} end
if now >= tonumber(field(vid, 'expires_at')) then
  close(vid, 'pending', 'expired', ARGV[5])
  return {'not_found'}
end
if tonumber(field(vid, 'check_attempts')) >= tonumber(field(vid, 'max_checks')) then
  return {'locked', load(vid), sends}
end
redis.call('HINCRBY', vkey(vid), 'check_attempts', 1)
redis.call('HSET', vkey(vid), 'updated_at', ARGV[5])
return {'counted', load(vid), sends}
"""
)

_TRANSITION = (
    _PRELUDE
    + """
return close(ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""
)

# ARGV: prefix, service id, verification id
_GET = (
    _PRELUDE
    + """
if field(ARGV[3], 'service_id') ~= ARGV[2] then return nil end
return load(ARGV[3])
"""
)

# ARGV: prefix, service id, destination
_FIND_PENDING = (
    _PRELUDE
    + """
local vid = redis.call('GET', P .. 'pending:' .. ARGV[2] .. ':' .. ARGV[3])
if not vid or field(vid, 'status') ~= 'pending' then return nil end
return load(vid)
"""
)

# ARGV: prefix, consumer, now, lease_until, limit
# Shared by the outbox and events claims: entries whose lease ran out, taken over, then new ones.
_TAKE = """
local function take(stream, leases, group, consumer, now, limit)
  local entries = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)) do
    local got = redis.call('XCLAIM', stream, group, consumer, 0, id)
    if #got > 0 and got[1] then
      table.insert(entries, got[1])
    else
      redis.call('ZREM', leases, id)  -- acknowledged meanwhile
    end
  end
  if #entries < limit then
    local fresh = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #entries,
      'STREAMS', stream, '>')
    if fresh then for _, e in ipairs(fresh[1][2]) do table.insert(entries, e) end end
  end
  return entries
end
"""

_CLAIM = (
    _PRELUDE
    + _TAKE
    + """
local consumer, now, lease_until, limit = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local stream, later, leases = P .. 'outbox', P .. 'outbox:later', P .. 'outbox:leases'
for _, aid in ipairs(redis.call('ZRANGEBYSCORE', later, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('XADD', stream, '*', 'aid', aid)
  redis.call('ZREM', later, aid)
end
-- Entries whose lease ran out (their dispatcher died or hung): take them over. Leases are kept
-- on clave's clock, like every other time here, not on Redis's idle timers.
local entries = take(stream, leases, 'dispatch', consumer, now, limit)
local out = {}
for _, e in ipairs(entries) do
  local id, aid = e[1], e[2][2]
  local ak = P .. 'a:' .. aid
  local vid = redis.call('HGET', ak, 'vid')
  if not vid or redis.call('EXISTS', vkey(vid)) == 0 then
    -- The verification expired and its keys are gone: nothing left to send.
    redis.call('XACK', stream, 'dispatch', id)
    redis.call('XDEL', stream, id)
    redis.call('ZREM', leases, id)
  else
    redis.call('ZADD', leases, lease_until, id)
    local tries = redis.call('HINCRBY', ak, 'tries', 1)
    local a = redis.call('HMGET', ak, 'channel', 'to', 'locale', 'options')
    local name = redis.call('HGET', P .. 'svc:' .. field(vid, 'service_id'), 'friendly_name') or ''
    table.insert(out, {id, aid, tries, a[1], a[2], a[3], name, load(vid), a[4] or ''})
  end
end
return out
"""
)

_FAIL_IF_ALL_FAILED = """
local function fail_if_all_failed(vid, now)
  for _, aid in ipairs(redis.call('LRANGE', vkey(vid) .. ':att', 0, -1)) do
    local st = redis.call('HGET', P .. 'a:' .. aid, 'status')
    if st ~= 'failed' and st ~= 'undelivered' then return end
  end
  close(vid, 'pending', 'failed', now)
end
"""

# ARGV: prefix, entry id, attempt id, status, provider, error, now, provider message id
_FINISH = (
    _PRELUDE
    + _FAIL_IF_ALL_FAILED
    + """
local stream = P .. 'outbox'
redis.call('XACK', stream, 'dispatch', ARGV[2])
redis.call('XDEL', stream, ARGV[2])
redis.call('ZREM', P .. 'outbox:leases', ARGV[2])
local ak = P .. 'a:' .. ARGV[3]
if redis.call('EXISTS', ak) == 0 then return 0 end
redis.call('HSET', ak, 'status', ARGV[4], 'provider', ARGV[5], 'error', ARGV[6],
  'updated_at', ARGV[7], 'provider_message_id', ARGV[8])
if ARGV[8] ~= '' then
  -- Find the attempt again when the provider reports on it; gone with the attempt.
  local ik = P .. 'pmid:' .. ARGV[5] .. ':' .. ARGV[8]
  redis.call('SET', ik, ARGV[3])
  redis.call('EXPIREAT', ik, redis.call('EXPIRETIME', ak))
end
fail_if_all_failed(redis.call('HGET', ak, 'vid'), ARGV[7])
return 1
"""
)

# ARGV: prefix, provider, provider message id, status, error, now, allowed previous statuses
_REPORT = (
    _PRELUDE
    + _FAIL_IF_ALL_FAILED
    + """
local aid = redis.call('GET', P .. 'pmid:' .. ARGV[2] .. ':' .. ARGV[3])
if not aid then return -1 end
local ak = P .. 'a:' .. aid
local current = redis.call('HGET', ak, 'status')
if not current then return -1 end
local allowed = false
for i = 7, #ARGV do if ARGV[i] == current then allowed = true end end
if not allowed then return 0 end
redis.call('HSET', ak, 'status', ARGV[4], 'error', ARGV[5], 'updated_at', ARGV[6])
fail_if_all_failed(redis.call('HGET', ak, 'vid'), ARGV[6])
return 1
"""
)

# ARGV: prefix, now, limit
_EXPIRE_DUE = (
    _PRELUDE
    + """
local count = 0
for _, vid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'expiring', '-inf', ARGV[2], 'LIMIT', 0,
    tonumber(ARGV[3]))) do
  if redis.call('EXISTS', vkey(vid)) == 0 or field(vid, 'status') ~= 'pending' then
    redis.call('ZREM', P .. 'expiring', vid)
  else
    count = count + close(vid, 'pending', 'expired', ARGV[2])
  end
end
return count
"""
)

# ARGV: prefix, consumer, now, lease_until, limit. A retry is a lease running to the next try.
_CLAIM_EVENTS = (
    _TAKE
    + """
local P, consumer, now, lease_until, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4],
  tonumber(ARGV[5])
local stream, leases, tries = P .. 'events', P .. 'events:leases', P .. 'events:tries'
local entries = take(stream, leases, 'notify', consumer, now, limit)
local out = {}
for _, e in ipairs(entries) do
  local id, f = e[1], {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  redis.call('ZADD', leases, lease_until, id)
  local n = redis.call('HINCRBY', tries, id, 1)
  table.insert(out, {id, f.type, f.vid, f.sid, f.at, n})
end
return out
"""
)

_FINISH_EVENT = """
redis.call('XACK', ARGV[1] .. 'events', 'notify', ARGV[2])
redis.call('XDEL', ARGV[1] .. 'events', ARGV[2])
redis.call('ZREM', ARGV[1] .. 'events:leases', ARGV[2])
redis.call('HDEL', ARGV[1] .. 'events:tries', ARGV[2])
return 1
"""

# ARGV: prefix, entry id, attempt id, next attempt at, error
_RETRY = (
    _PRELUDE
    + """
redis.call('XACK', P .. 'outbox', 'dispatch', ARGV[2])
redis.call('XDEL', P .. 'outbox', ARGV[2])
redis.call('ZREM', P .. 'outbox:leases', ARGV[2])
redis.call('ZADD', P .. 'outbox:later', ARGV[4], ARGV[3])
redis.call('HSET', P .. 'a:' .. ARGV[3], 'error', ARGV[5])
return 1
"""
)

# ARGV: prefix, id, name, then field/value pairs
_PUT_SERVICE = """
local P, id, name = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('HGET', P .. 'svc-names', name)
if owner and owner ~= id then return redis.error_reply('service name taken') end
local old = redis.call('HGET', P .. 'svc:' .. id, 'name')
if old and old ~= name then redis.call('HDEL', P .. 'svc-names', old) end
local fields = {}
for i = 4, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', P .. 'svc:' .. id, 'name', name, unpack(fields))
redis.call('HSET', P .. 'svc-names', name, id)
return 1
"""

# ARGV: prefix, service id. API keys point at their service; a key whose service is gone
# stops resolving (service_for_key finds no hash), so only the service and its name go here.
_DELETE_SERVICE = """
local P, id = ARGV[1], ARGV[2]
local name = redis.call('HGET', P .. 'svc:' .. id, 'name')
if not name then return 0 end
redis.call('DEL', P .. 'svc:' .. id)
redis.call('HDEL', P .. 'svc-names', name)
return 1
"""

# ARGV: prefix, key hash (hex). `key:<hash>` names the key; `apikey:<id>` holds its life cycle.
_KEY_FOR_HASH = """
local P = ARGV[1]
local kid = redis.call('GET', P .. 'key:' .. ARGV[2])
if not kid then return nil end
local k = redis.call('HGETALL', P .. 'apikey:' .. kid)
if #k == 0 then return nil end
local sid = redis.call('HGET', P .. 'apikey:' .. kid, 'service_id')
local s = redis.call('HGETALL', P .. 'svc:' .. sid)
if #s == 0 then return nil end
table.insert(k, 'id'); table.insert(k, kid)
table.insert(s, 'id'); table.insert(s, sid)
return {k, s}
"""

# ARGV: prefix, id, service id, hash (hex), created_at, name, expires_at ('' for none)
_ADD_KEY = """
local P, id = ARGV[1], ARGV[2]
redis.call('HSET', P .. 'apikey:' .. id, 'service_id', ARGV[3], 'hash', ARGV[4],
  'created_at', ARGV[5], 'name', ARGV[6], 'expires_at', ARGV[7])
redis.call('SET', P .. 'key:' .. ARGV[4], id)
redis.call('ZADD', P .. 'apikeys', ARGV[5], id)
return 1
"""

# ARGV: prefix, key id, now
_REVOKE_KEY = """
local k = ARGV[1] .. 'apikey:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then return 0 end
local revoked = redis.call('HGET', k, 'revoked_at')
if revoked and revoked ~= '' then return 0 end
redis.call('HSET', k, 'revoked_at', ARGV[3])
return 1
"""

# ARGV: prefix, key id, now
_TOUCH_KEY = """
local k = ARGV[1] .. 'apikey:' .. ARGV[2]
if redis.call('EXISTS', k) == 1 then redis.call('HSET', k, 'last_used_at', ARGV[3]) end
return 1
"""

# ARGV: prefix, key hash (hex), new key id, now. A key stored before keys had a life cycle
# (`key:<hash>` naming its service): given a record of its own, once, whoever runs it first.
_ADOPT_LEGACY_KEY = """
local P = ARGV[1]
local sid = redis.call('GET', P .. 'key:' .. ARGV[2])
if not sid or redis.call('EXISTS', P .. 'apikey:' .. sid) == 1 then return 0 end
redis.call('HSET', P .. 'apikey:' .. ARGV[3], 'service_id', sid, 'hash', ARGV[2],
  'created_at', ARGV[4], 'name', 'from before key life cycles', 'expires_at', '')
redis.call('SET', P .. 'key:' .. ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'apikeys', ARGV[4], ARGV[3])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _service(fields: dict[str, Any]) -> Service:
    policy = Policy(
        friendly_name=_text(fields["friendly_name"]),
        code_length=int(fields["code_length"]),
        code_ttl=int(fields["code_ttl"]),
        max_checks=int(fields["max_checks"]),
        max_sends=int(fields["max_sends"]),
        send_window=int(fields["send_window"]),
        channels=frozenset(Channel(c) for c in _text(fields["channels"]).split(",") if c),
        countries=frozenset(c for c in _text(fields.get("countries", b"")).split(",") if c),
        flags=frozenset(f for f in _text(fields.get("flags", b"")).split(",") if f),
        limits=tuple(
            sorted(
                (k, v)
                for k, _, v in (
                    item.partition("=")
                    for item in _text(fields.get("limits", b"")).split(",")
                    if "=" in item
                )
            )
        ),
    )
    return Service(
        _text(fields["id"]),
        _text(fields["name"]),
        policy,
        float(fields["created_at"]),
        accounts=frozenset(a for a in _text(fields.get("accounts", b"")).split(",") if a),
    )


def _optional_time(value: Any) -> float | None:
    text = _text(value) if value is not None else ""
    return float(text) if text else None


def _key(id_: str, fields: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=id_,
        service_id=_text(fields["service_id"]),
        key_hash=bytes.fromhex(_text(fields["hash"])),
        created_at=float(fields["created_at"]),
        name=_text(fields.get("name", b"")),
        expires_at=_optional_time(fields.get("expires_at")),
        revoked_at=_optional_time(fields.get("revoked_at")),
        last_used_at=_optional_time(fields.get("last_used_at")),
    )


def _verification(loaded: Sequence[Any]) -> Verification:
    v = _pairs(loaded[0])
    sends = []
    for flat in loaded[1]:
        a = _pairs(flat)
        sends.append(
            SendAttempt(
                id=int(a["id"]),
                channel=Channel(_text(a["channel"])),
                status=SendStatus(_text(a["status"])),
                created_at=float(a["created_at"]),
                updated_at=float(a["updated_at"]),
                provider=_text(a["provider"]) or None if "provider" in a else None,
                error=_text(a["error"]) or None if "error" in a else None,
                provider_message_id=(
                    _text(a["provider_message_id"]) or None if "provider_message_id" in a else None
                ),
                payment=payment_of(json.loads(_text(a["options"])))
                if _text(a.get("options", b""))
                else None,
            )
        )
    locale = _text(v.get("locale", b""))
    return Verification(
        id=_text(v["id"]),
        service_id=_text(v["service_id"]),
        to=_text(v["to"]),
        channel=Channel(_text(v["channel"])),
        locale=locale or None,
        code_length=int(v["code_length"]),
        code=SealedCode(
            key_id=_text(v["key_id"]), seed=bytes(v["seed"]), digest=bytes(v["digest"])
        ),
        status=Status(_text(v["status"])),
        check_attempts=int(v["check_attempts"]),
        max_checks=int(v["max_checks"]),
        created_at=float(v["created_at"]),
        updated_at=float(v["updated_at"]),
        expires_at=float(v["expires_at"]),
        sends=tuple(sorted(sends, key=lambda s: s.id)),
        binding=bytes(v.get("binding", b"")),
    )


class RedisVerificationStore:
    """Verify's state in Redis (`CLAVE_VERIFY_STORE=redis://host:6379/0`)."""

    def __init__(
        self, url: str, *, prefix: str = "clave:", retention: float = 86400.0, events: bool = False
    ) -> None:
        self._events = events
        self._url = url
        self._prefix = prefix
        self._retention = retention
        self._consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    def _r(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("the Redis store is not open")
        return self._redis

    async def open(self) -> None:
        """Connect, load the scripts, and make sure the outbox's consumer group exists."""
        if self._redis is not None:
            return
        self._redis = aioredis.Redis.from_url(
            self._url,
            decode_responses=False,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        for name, body in {
            "start": _START,
            "count_check": _COUNT_CHECK,
            "transition": _TRANSITION,
            "get": _GET,
            "find_pending": _FIND_PENDING,
            "claim": _CLAIM,
            "finish": _FINISH,
            "report": _REPORT,
            "retry": _RETRY,
            "put_service": _PUT_SERVICE,
            "key_for_hash": _KEY_FOR_HASH,
            "add_key": _ADD_KEY,
            "revoke_key": _REVOKE_KEY,
            "touch_key": _TOUCH_KEY,
            "adopt_legacy_key": _ADOPT_LEGACY_KEY,
            "delete_service": _DELETE_SERVICE,
            "expire_due": _EXPIRE_DUE,
            "claim_events": _CLAIM_EVENTS,
            "finish_event": _FINISH_EVENT,
        }.items():
            self._scripts[name] = self._redis.register_script(body)
        try:
            if self._events:
                await self._redis.set(self._prefix + "events-on", "1")
                with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                    await self._redis.xgroup_create(
                        self._prefix + "events", "notify", id="0", mkstream=True
                    )
            else:
                await self._redis.delete(self._prefix + "events-on")
            await self._adopt_legacy_keys()
            await self._redis.xgroup_create(self._prefix + "outbox", GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreError(f"Redis: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot reach Redis at {redacted(self._url)}: {exc}") from exc

    async def close(self) -> None:
        """Disconnect."""
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    async def _run(self, script: str, *args: Any) -> Any:
        try:
            return await self._scripts[script](args=[self._prefix, *args])
        except ResponseError as exc:
            if "service name taken" in str(exc):
                raise ValueError("service name is taken") from exc
            raise StoreError(f"Redis: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        except KeyError:
            raise StoreError("the Redis store is not open") from None

    async def ping(self) -> None:
        """PING."""
        try:
            await self._r().ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def put_service(self, service: Service) -> None:
        """Insert or update by id; names are unique."""
        p = service.policy
        await self._run(
            "put_service",
            service.id,
            service.name,
            "friendly_name",
            p.friendly_name,
            "code_length",
            p.code_length,
            "code_ttl",
            p.code_ttl,
            "max_checks",
            p.max_checks,
            "max_sends",
            p.max_sends,
            "send_window",
            p.send_window,
            "channels",
            ",".join(sorted(c.value for c in p.channels)),
            "created_at",
            repr(service.created_at),
            "countries",
            ",".join(sorted(p.countries)),
            "limits",
            ",".join(f"{k}={v}" for k, v in p.limits),
            "flags",
            ",".join(sorted(p.flags)),
            "accounts",
            ",".join(sorted(service.accounts)),
        )

    async def get_service(self, service_id: str) -> Service | None:
        """A service by id."""
        try:
            fields = await self._r().hgetall(self._prefix + "svc:" + service_id)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        if not fields:
            return None
        return _service({_text(k): v for k, v in fields.items()} | {"id": service_id})

    async def get_service_by_name(self, name: str) -> Service | None:
        """A service by name."""
        try:
            sid = await self._r().hget(self._prefix + "svc-names", name)
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        return await self.get_service(_text(sid)) if sid else None

    async def list_services(self) -> list[Service]:
        """Every service, by name."""
        try:
            names = await self._r().hgetall(self._prefix + "svc-names")
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        found = [await self.get_service(_text(sid)) for _, sid in sorted(names.items())]
        return [s for s in found if s is not None]

    async def delete_service(self, service_id: str) -> bool:
        """Delete a service; its keys stop resolving with it."""
        return bool(await self._run("delete_service", service_id))

    async def add_api_key(self, key: ApiKey) -> None:
        """Store the key; one round trip."""
        await self._run(
            "add_key",
            key.id,
            key.service_id,
            key.key_hash.hex(),
            repr(key.created_at),
            key.name,
            repr(key.expires_at) if key.expires_at is not None else "",
        )

    async def key_for_hash(self, key_hash: bytes) -> tuple[ApiKey, Service] | None:
        """See TenantStore.key_for_hash; one round trip."""
        found = await self._run("key_for_hash", key_hash.hex())
        if not found:
            return None
        key_fields, service_fields = _pairs(found[0]), _pairs(found[1])
        return _key(_text(key_fields["id"]), key_fields), _service(service_fields)

    async def list_api_keys(self, service_id: str | None = None) -> list[ApiKey]:
        """See TenantStore.list_api_keys."""
        try:
            r = self._r()
            ids = [_text(i) for i in await r.zrange(self._prefix + "apikeys", 0, -1)]
            async with r.pipeline(transaction=False) as pipe:
                for key_id in ids:
                    pipe.hgetall(self._prefix + "apikey:" + key_id)
                rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        keys = [
            _key(key_id, {_text(k): v for k, v in row.items()})
            for key_id, row in zip(ids, rows, strict=True)
            if row
        ]
        return [k for k in keys if service_id in (None, k.service_id)]

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        """See TenantStore.revoke_api_key."""
        return bool(int(await self._run("revoke_key", key_id, repr(now))))

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        """See TenantStore.touch_api_key."""
        await self._run("touch_key", key_id, repr(now))

    async def _adopt_legacy_keys(self) -> None:
        """Give keys stored before key life cycles a record: once per store (idempotent, so
        workers starting together do no harm)."""
        r = self._r()
        done = self._prefix + "keys-adopted"
        if await r.exists(done):
            return
        async for name in r.scan_iter(match=self._prefix + "key:*", count=500):
            key_hash = _text(name).removeprefix(self._prefix + "key:")
            await self._run("adopt_legacy_key", key_hash, new_id("SK"), repr(time.time()))
        await r.set(done, "1")

    async def start(
        self,
        candidate: Verification,
        *,
        channel: Channel,
        locale: str | None,
        now: float,
        window: float,
        max_sends: int,
        deliver: bool = True,
        options: Mapping[str, str] | None = None,
    ) -> StartOutcome:
        """See VerificationStore.start; one round trip."""
        c = candidate
        fields: list[Any] = [
            "id",
            c.id,
            "service_id",
            c.service_id,
            "to",
            c.to,
            "channel",
            c.channel.value,
            "locale",
            c.locale or "",
            "code_length",
            c.code_length,
            "key_id",
            c.code.key_id,
            "seed",
            c.code.seed,
            "digest",
            c.code.digest,
            "status",
            c.status.value,
            "check_attempts",
            c.check_attempts,
            "max_checks",
            c.max_checks,
            "created_at",
            repr(c.created_at),
            "updated_at",
            repr(c.updated_at),
            "expires_at",
            repr(c.expires_at),
            "binding",
            c.binding,
        ]
        result = await self._run(
            "start",
            repr(now),
            repr(float(window)),
            max_sends,
            channel.value,
            locale or "",
            repr(self._retention),
            "1" if deliver else "0",
            json.dumps(dict(options)) if options else "",
            *fields,
        )
        if _text(result[0]) == "limited":
            existing = _text(result[3])
            current = (await self.get(c.service_id, existing)) if existing else None
            return StartOutcome(current or c, False, int(result[2]), float(result[1]))
        return StartOutcome(_verification(result[4]), bool(int(result[2])), int(result[3]))

    async def get(self, service_id: str, verification_id: str) -> Verification | None:
        """A verification of the service."""
        loaded = await self._run("get", service_id, verification_id)
        return _verification(loaded) if loaded else None

    async def find_pending(self, service_id: str, to: str) -> Verification | None:
        """The pending verification for a destination."""
        loaded = await self._run("find_pending", service_id, to)
        return _verification(loaded) if loaded else None

    async def count_sends(self, service_id: str, to: str, since: float) -> int:
        """Send attempts to a destination after `since`."""
        try:
            return int(
                await self._r().zcount(
                    self._prefix + f"sends:{service_id}:{to}", f"({since!r}", "+inf"
                )
            )
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def count_check(
        self,
        service_id: str,
        *,
        now: float,
        window: float,
        verification_id: str | None = None,
        to: str | None = None,
    ) -> CheckOutcome:
        """See VerificationStore.count_check; one round trip."""
        result = await self._run(
            "count_check",
            service_id,
            verification_id or "",
            to or "",
            repr(now),
            repr(float(window)),
        )
        gate = CheckGate(_text(result[0]))
        if gate is CheckGate.NOT_FOUND:
            return CheckOutcome(gate)
        return CheckOutcome(gate, _verification(result[1]), int(result[2]))

    async def transition(
        self, verification_id: str, *, from_status: Status, to_status: Status, now: float
    ) -> bool:
        """Change the status only if it is still `from_status`."""
        done = await self._run(
            "transition", verification_id, from_status.value, to_status.value, repr(now)
        )
        return bool(int(done))

    async def claim_deliveries(
        self, now: float, *, lease_until: float, limit: int
    ) -> list[Delivery]:
        """Due retries back into the stream, lapsed leases re-claimed, new entries read."""
        rows = await self._run("claim", self._consumer, repr(now), repr(lease_until), limit)
        claimed = []
        for entry, aid, tries, channel, to, locale, name, loaded, options in rows:
            claimed.append(
                Delivery(
                    outbox_id=_text(entry),
                    attempt_id=int(aid),
                    tries=int(tries),
                    channel=Channel(_text(channel)),
                    to=_text(to),
                    locale=_text(locale) or None,
                    verification=_verification(loaded),
                    friendly_name=_text(name),
                    options=json.loads(_text(options)) if _text(options) else {},
                )
            )
        return claimed

    async def finish_delivery(
        self,
        delivery: Delivery,
        *,
        status: SendStatus,
        provider: str | None,
        error: str | None,
        now: float,
        provider_message_id: str | None = None,
    ) -> None:
        """Acknowledge the entry and record the attempt's outcome."""
        await self._run(
            "finish",
            str(delivery.outbox_id),
            delivery.attempt_id,
            status.value,
            provider or "",
            error or "",
            repr(now),
            provider_message_id or "",
        )

    async def report_delivery(
        self,
        provider: str,
        provider_message_id: str,
        status: SendStatus,
        *,
        error: str | None,
        now: float,
    ) -> bool | None:
        """See VerificationStore.report_delivery; one round trip."""
        allowed = [s.value for s, targets in REPORTABLE.items() if status in targets]
        done = int(
            await self._run(
                "report",
                provider,
                provider_message_id,
                status.value,
                error or "",
                repr(now),
                *allowed,
            )
        )
        return None if done < 0 else bool(done)

    async def retry_delivery(
        self, delivery: Delivery, *, next_attempt_at: float, error: str
    ) -> None:
        """Acknowledge the entry and park the attempt until it is due again."""
        await self._run(
            "retry", str(delivery.outbox_id), delivery.attempt_id, repr(next_attempt_at), error
        )

    async def expire_due(self, now: float, *, limit: int) -> int:
        """See VerificationStore.expire_due; one round trip."""
        return int(await self._run("expire_due", repr(now), limit))

    async def claim_events(self, now: float, *, lease_until: float, limit: int) -> list[Event]:
        """See VerificationStore.claim_events; one round trip."""
        rows = await self._run("claim_events", self._consumer, repr(now), repr(lease_until), limit)
        return [
            Event(_text(i), _text(t), _text(v), _text(s), float(a), int(n))
            for i, t, v, s, a, n in rows
        ]

    async def finish_event(self, event: Event) -> None:
        """See VerificationStore.finish_event."""
        await self._run("finish_event", str(event.id))

    async def retry_event(self, event: Event, *, next_attempt_at: float) -> None:
        """See VerificationStore.retry_event: the lease runs until the next try."""
        try:
            await self._r().zadd(self._prefix + "events:leases", {str(event.id): next_attempt_at})
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def pending_deliveries(self) -> int:
        """Entries in the stream plus retries waiting."""
        try:
            r = self._r()
            return int(await r.xlen(self._prefix + "outbox")) + int(
                await r.zcard(self._prefix + "outbox:later")
            )
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
