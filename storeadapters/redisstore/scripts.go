package redisstore

import "github.com/redis/go-redis/v9"

// luaPrelude holds the helpers the session scripts share. Scripts compare
// and compute times with Redis's clock (TIME), the same clock that expires
// the keys.
const luaPrelude = `
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- field returns the length-prefixed string at i and the position after it.
local function field(s, i)
  local n = u32(s, i)
  return string.sub(s, i + 4, i + 3 + n), i + 4 + n
end

-- indexkeys returns the keys of the group set (false if none) and of the
-- DID set that hold the encoded record s. See encoding.go for the layout:
-- the strings start after a 45-byte header.
local function indexkeys(prefix, s)
  if string.byte(s, 1) ~= 1 then
    error('atauth: redisstore: unknown session record format')
  end
  local group, did, kind, i
  group, i = field(s, 46)
  did, i = field(s, i)
  kind = field(s, i)
  local g = false
  if group ~= '' then g = prefix .. 'g:' .. group end
  return g, prefix .. 'd:' .. kind .. ':' .. did
end

local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- index adds id to the set k and keeps the set alive for at least ttl ms,
-- as long as its longest-lived member.
local function index(k, id, ttl)
  redis.call('SADD', k, id)
  if redis.call('PTTL', k) < ttl then
    redis.call('PEXPIRE', k, ttl)
  end
end

-- unindex removes id from the sets that hold the encoded record s.
local function unindex(prefix, s, id)
  local g, d = indexkeys(prefix, s)
  if g then redis.call('SREM', g, id) end
  redis.call('SREM', d, id)
end
`

// createScript stores a new session unless a live one has its id. A record
// already expired is not stored.
//
// KEYS: session, DID set, group set (optional).
// ARGV: id, encoded record, ExpiresAt in Unix milliseconds.
// Returns resultConflict or resultOK.
var createScript = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local ttl = tonumber(ARGV[3]) - nowms()
if ttl <= 0 then return 2 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
index(KEYS[2], ARGV[1], ttl)
if KEYS[3] then index(KEYS[3], ARGV[1], ttl) end
return 2
`)

// updateScript replaces a session if its stored version is the expected
// one, moving it between index sets. A record already expired deletes the
// session.
//
// KEYS: session, new DID set, new group set (optional).
// ARGV: id, encoded record, ExpiresAt in Unix milliseconds, prefix,
// expected version as 8 big-endian bytes.
// Returns resultNotFound, resultConflict or resultOK.
var updateScript = redis.NewScript(luaPrelude + `
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
if string.sub(old, 2, 9) ~= ARGV[5] then return 1 end
unindex(ARGV[4], old, ARGV[1])
local ttl = tonumber(ARGV[3]) - nowms()
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return 2
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
index(KEYS[2], ARGV[1], ttl)
if KEYS[3] then index(KEYS[3], ARGV[1], ttl) end
return 2
`)

// deleteScript deletes a session and its index entries.
//
// KEYS: session. ARGV: id, prefix.
var deleteScript = redis.NewScript(luaPrelude + `
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
unindex(ARGV[2], old, ARGV[1])
redis.call('DEL', KEYS[1])
return 1
`)

// membersScript walks an index set. A member whose session is gone, or is
// no longer indexed under this set (the id was reused after the session
// expired), is removed. With ARGV[2] = 1 it returns the live members and
// their records as id, record, id, record...; with 0 the number removed.
//
// KEYS: index set. ARGV: prefix, mode.
var membersScript = redis.NewScript(luaPrelude + `
local list = ARGV[2] == '1'
local out = {}
local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. 's:' .. id)
  local keep = false
  if v then
    local g, d = indexkeys(ARGV[1], v)
    keep = g == KEYS[1] or d == KEYS[1]
  end
  if not keep then
    redis.call('SREM', KEYS[1], id)
    removed = removed + 1
  elseif list then
    out[#out + 1] = id
    out[#out + 1] = v
  end
end
if list then return out end
return removed
`)

// acquireScript takes a free lease or extends the caller's own.
//
// KEYS: lease. ARGV: owner, ttl in milliseconds. Returns 1 if the caller
// holds the lease, 0 if another owner does.
var acquireScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseScript deletes a lease if the caller holds it.
//
// KEYS: lease. ARGV: owner.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// idleScript picks, from a batch of session keys, the records last used
// before a cutoff. It reads LastUsedAt at its fixed offset in the record
// (see encoding.go): 8 bytes of signed Unix seconds and 4 of nanoseconds,
// after the 1-byte format, the Version and two times.
//
// KEYS: session keys. ARGV: cutoff Unix seconds, cutoff nanoseconds.
// Returns key, record, key, record...
var idleScript = redis.NewScript(luaPrelude + `
local csec, cns = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and string.byte(v, 1) == 1 then
    local hi = u32(v, 34)
    if hi >= 2147483648 then hi = hi - 4294967296 end
    local sec = hi * 4294967296 + u32(v, 38)
    if sec < csec or (sec == csec and u32(v, 42) < cns) then
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
end
return out
`)
