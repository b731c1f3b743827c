"""The registry's atomic writes and its one-round-trip lookup, as Lua scripts run inside Redis.

Every write that touches several keys is one script, so it is atomic and publishes its invalidation event in
the same step. The key layout is :mod:`authz.registry.redis_store`'s (docs/registry.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError

# Every script declares one key, ``P schema`` (KEYS[1]), and builds the others from the prefix: on a plain Redis the
# declared key is unused; on a Redis Cluster it routes the call to the node owning the prefix's hash slot (every
# key of a cluster registry shares that slot, see :func:`cluster_hash_tag`).
#
# The registry's sequence number ``P seq`` counts the writes: every write script that changes something ends with
# ``commit``, which increments it and publishes the event ``"<seq> <subject>"`` in the same atomic step, so the
# sequence can only grow; a reader that sees it smaller than before is reading an older copy of the registry
# (docs/operations.md, "Durability"). The reads of the hot path return it with their answer.
COMMIT = """
local function commit(p, subject)
  local seq = redis.call('INCR', p .. 'seq')
  redis.call('PUBLISH', p .. 'events', seq .. ' ' .. subject)
  return seq
end
"""


def _write(body: str) -> str:
    """A write script: ``body`` with the ``commit(prefix, subject)`` function defined before it."""
    return COMMIT + body


# ARGV: prefix, key manager, client id, api id. The last element is the registry sequence.
LOOKUP = """
local p = ARGV[1]
local seq = redis.call('GET', p .. 'seq')
local ckey = p .. 'client:' .. ARGV[2] .. ':' .. ARGV[3]
local client = redis.call('HMGET', ckey, 'app_id', 'key_type')
if not client[1] then
  return {false, false, false, false, false, false, false, false, redis.call('EXISTS', ckey), 0, seq}
end
local akey = p .. 'app:' .. client[1]
local app = redis.call('HMGET', akey, 'name', 'owner', 'tier', 'status', 'created_at')
local sub = redis.call('HGET', akey .. ':subs', ARGV[4])
return {client[1], client[2], app[1], app[2], app[3], app[4], app[5], sub, 1, redis.call('EXISTS', akey), seq}
"""

# ARGV: prefix, key manager, jti. Returns {revocation expiry or false, withdrawal stored (0/1), sequence}.
REVOCATION = """
local p = ARGV[1]
local suffix = ARGV[2] .. ':' .. ARGV[3]
return {redis.call('GET', p .. 'revoked:' .. suffix), redis.call('EXISTS', p .. 'unrevoked:' .. suffix),
        redis.call('GET', p .. 'seq')}
"""

# ARGV: prefix, app id, name, owner, tier, status, created_at
CREATE_APP = _write("""
local p = ARGV[1]
if redis.call('EXISTS', p .. 'app:' .. ARGV[2]) == 1 then return {'err_id', ARGV[2]} end
local other = redis.call('GET', p .. 'app-name:' .. ARGV[3])
if other then return {'err_name', other} end
redis.call('SET', p .. 'app-name:' .. ARGV[3], ARGV[2])
redis.call('HSET', p .. 'app:' .. ARGV[2], 'name', ARGV[3], 'owner', ARGV[4], 'tier', ARGV[5],
           'status', ARGV[6], 'created_at', ARGV[7])
redis.call('SADD', p .. 'apps', ARGV[2])
redis.call('SETNX', p .. 'schema', '1')
commit(p, 'app:' .. ARGV[2])
return {'ok', ARGV[2]}
""")

# ARGV: prefix, app id, key manager, client id, key type
ADD_CLIENT = _write("""
local p = ARGV[1]
if redis.call('EXISTS', p .. 'app:' .. ARGV[2]) == 0 then return {'err_app', ''} end
local ckey = p .. 'client:' .. ARGV[3] .. ':' .. ARGV[4]
local owner = redis.call('HGET', ckey, 'app_id')
if owner then
  if owner == ARGV[2] then return {'same', owner} end
  return {'err_taken', owner}
end
redis.call('HSET', ckey, 'app_id', ARGV[2], 'key_type', ARGV[5])
redis.call('SADD', p .. 'app:' .. ARGV[2] .. ':clients', ARGV[3] .. ':' .. ARGV[4])
commit(p, 'client:' .. ARGV[3] .. ':' .. ARGV[4])
return {'ok', ARGV[2]}
""")

# ARGV: prefix, app id, key manager, client id
REMOVE_CLIENT = _write("""
local p = ARGV[1]
local ckey = p .. 'client:' .. ARGV[3] .. ':' .. ARGV[4]
if redis.call('HGET', ckey, 'app_id') ~= ARGV[2] then return 0 end
redis.call('DEL', ckey)
redis.call('SREM', p .. 'app:' .. ARGV[2] .. ':clients', ARGV[3] .. ':' .. ARGV[4])
commit(p, 'client:' .. ARGV[3] .. ':' .. ARGV[4])
return 1
""")

# ARGV: prefix, app id, api id, json (or '' to delete), mode ('put' | 'status' | 'delete'), status, tier
# ('status' mode: an empty status or tier keeps the current value)
SUBSCRIPTION = _write("""
local p = ARGV[1]
if redis.call('EXISTS', p .. 'app:' .. ARGV[2]) == 0 then return 'err_app' end
local skey = p .. 'app:' .. ARGV[2] .. ':subs'
local current = redis.call('HGET', skey, ARGV[3])
if ARGV[5] == 'put' then
  if current then return 'err_exists' end
  redis.call('HSET', skey, ARGV[3], ARGV[4])
elseif ARGV[5] == 'delete' then
  if not current then return 'err_missing' end
  redis.call('HDEL', skey, ARGV[3])
else
  if not current then return 'err_missing' end
  local doc = cjson.decode(current)
  if ARGV[6] ~= '' then doc['status'] = ARGV[6] end
  if ARGV[7] and ARGV[7] ~= '' then doc['tier'] = ARGV[7] end
  redis.call('HSET', skey, ARGV[3], cjson.encode(doc))
end
commit(p, 'sub:' .. ARGV[2] .. ':' .. ARGV[3])
return 'ok'
""")

# ARGV: prefix, app id
DELETE_APP = _write("""
local p = ARGV[1]
local akey = p .. 'app:' .. ARGV[2]
local name = redis.call('HGET', akey, 'name')
if not name then return 0 end
for _, c in ipairs(redis.call('SMEMBERS', akey .. ':clients')) do
  redis.call('DEL', p .. 'client:' .. c)
end
redis.call('DEL', akey, akey .. ':clients', akey .. ':subs', p .. 'app-name:' .. name)
redis.call('SREM', p .. 'apps', ARGV[2])
commit(p, 'app:' .. ARGV[2])
return 1
""")

# ARGV: prefix, key manager, jti, expiry (integer epoch seconds). A withdrawal stored earlier is dropped.
# Event subject: revoked:<expiry>:<key manager>:<jti>.
REVOKE = _write("""
local p = ARGV[1]
local suffix = ARGV[2] .. ':' .. ARGV[3]
redis.call('SET', p .. 'revoked:' .. suffix, ARGV[4], 'EXAT', ARGV[4])
redis.call('DEL', p .. 'unrevoked:' .. suffix)
commit(p, 'revoked:' .. ARGV[4] .. ':' .. suffix)
return 1
""")

# ARGV: prefix, key manager, jti. The withdrawal is stored (``P unrevoked:...``) until the revocation would have
# ended, so that a process that remembers the revocation can tell a withdrawal from a registry that lost it.
# Event subject: unrevoked:<key manager>:<jti>.
UNREVOKE = _write("""
local p = ARGV[1]
local suffix = ARGV[2] .. ':' .. ARGV[3]
local expiry = redis.call('GET', p .. 'revoked:' .. suffix)
if not expiry then return 0 end
redis.call('DEL', p .. 'revoked:' .. suffix)
redis.call('SET', p .. 'unrevoked:' .. suffix, expiry, 'EXAT', expiry)
commit(p, 'unrevoked:' .. suffix)
return 1
""")

# ARGV: prefix, app id, key manager, client id, key type
SET_CLIENT_KEY_TYPE = _write("""
local p = ARGV[1]
local ckey = p .. 'client:' .. ARGV[3] .. ':' .. ARGV[4]
if redis.call('HGET', ckey, 'app_id') ~= ARGV[2] then return 0 end
redis.call('HSET', ckey, 'key_type', ARGV[5])
commit(p, 'client:' .. ARGV[3] .. ':' .. ARGV[4])
return 1
""")

# ARGV: prefix, app id, new name ('' keeps it), owner, tier, status (each '' keeps it; owner uses '\0' to clear)
UPDATE_APP = _write("""
local p = ARGV[1]
local akey = p .. 'app:' .. ARGV[2]
local name = redis.call('HGET', akey, 'name')
if not name then return {'err_app', ''} end
if ARGV[3] ~= '' and ARGV[3] ~= name then
  local other = redis.call('GET', p .. 'app-name:' .. ARGV[3])
  if other then return {'err_name', other} end
  redis.call('DEL', p .. 'app-name:' .. name)
  redis.call('SET', p .. 'app-name:' .. ARGV[3], ARGV[2])
  redis.call('HSET', akey, 'name', ARGV[3])
end
if ARGV[4] == '\0' then redis.call('HSET', akey, 'owner', '')
elseif ARGV[4] ~= '' then redis.call('HSET', akey, 'owner', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', akey, 'tier', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', akey, 'status', ARGV[6]) end
commit(p, 'app:' .. ARGV[2])
return {'ok', ''}
""")

# ARGV: prefix, app id, status
SET_APP_STATUS = _write("""
local p = ARGV[1]
local akey = p .. 'app:' .. ARGV[2]
if redis.call('EXISTS', akey) == 0 then return 0 end
redis.call('HSET', akey, 'status', ARGV[3])
commit(p, 'app:' .. ARGV[2])
return 1
""")


class Script:
    """A Lua script run by ``EVALSHA``, falling back to ``EVAL`` (which also caches it) on ``NOSCRIPT``.

    Unlike redis-py's ``register_script``, which answers ``NOSCRIPT`` with ``SCRIPT LOAD`` (sent to every
    node of a cluster, so failing while any node is down), the fallback goes to the node of ``keys`` only.
    """

    def __init__(self, client: Any, body: str) -> None:
        self.client = client
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()  # noqa: S324 - the script cache's own key

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(self.body, len(keys), *keys, *args)
