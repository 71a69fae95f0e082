//! The Redis side of admission: the sorted set of leases and the two Lua
//! scripts that change it atomically, and the agent's book of the lease
//! names it holds.
//!
//! A lease is a member `node:incarnation:seq` of `{prefix}leases`, scored by
//! its expiry in Unix milliseconds of the Redis server's own clock (`TIME`),
//! so the nodes' clocks never matter. Both scripts first delete expired
//! leases, then count the live ones: a grant happens only while the count is
//! below `cluster_max_sessions`, inside one script, so concurrent nodes can
//! never push the sum over the bound. A node that stops renewing (killed,
//! partitioned) loses its leases one TTL after its last renewal, and the
//! next script run by any node reclaims them.

use redis::{Connection, RedisResult, Script};

use super::keys::Keys;

/// A lease script: the shared preamble (Redis's own clock in ms as `now`,
/// expired leases removed, `expiry` = `now` + `ARGV[1]` ms), then `$body`.
macro_rules! lease_script {
    ($body:literal) => {
        concat!(
            "if redis.replicate_commands then redis.replicate_commands() end\n",
            "local t = redis.call('TIME')\n",
            "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
            "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n",
            "local expiry = now + tonumber(ARGV[1])\n",
            $body
        )
    };
}

/// Grants up to `#ARGV - 2` of the candidate names in `ARGV[3..]` while the
/// live count stays at most `ARGV[2]`; each expires `ARGV[1]` ms from now.
/// Returns how many were granted (always a prefix of the candidates).
const ACQUIRE_LUA: &str = lease_script!(
    r"local room = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local granted = 0
for i = 3, #ARGV do
  if granted >= room then break end
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  granted = granted + 1
end
return granted
"
);

/// Extends the leases named in `ARGV[3..]` to `ARGV[1]` ms from now. A
/// lease Redis no longer has (it expired, or Redis restarted empty) is
/// taken again if the live count allows (`ARGV[2]`). Returns the names that
/// could not be kept.
const RENEW_LUA: &str = lease_script!(
    r"local missing = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
local live = redis.call('ZCARD', KEYS[1])
local lost = {}
for _, name in ipairs(missing) do
  if live < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], expiry, name)
    live = live + 1
  else
    lost[#lost + 1] = name
  end
end
return lost
"
);

/// The most leases one script call names: bounds the script's run time
/// (Redis runs nothing else meanwhile).
pub(crate) const LEASES_PER_CALL_MAX: usize = 1_024;

/// The scripts, hashed once.
pub(crate) struct LeaseScripts {
    acquire: Script,
    renew: Script,
}

impl LeaseScripts {
    pub(crate) fn new() -> Self {
        LeaseScripts {
            acquire: Script::new(ACQUIRE_LUA),
            renew: Script::new(RENEW_LUA),
        }
    }

    /// Asks for `candidates` (at most [`LEASES_PER_CALL_MAX`]); returns how
    /// many of them, from the front, were granted.
    pub(crate) fn acquire(
        &self,
        connection: &mut Connection,
        keys: &Keys,
        ttl_ms: u64,
        max: usize,
        candidates: &[String],
    ) -> RedisResult<usize> {
        debug_assert!(candidates.len() <= LEASES_PER_CALL_MAX);
        let granted: usize = self
            .acquire
            .key(keys.leases())
            .arg(ttl_ms)
            .arg(max)
            .arg(candidates)
            .invoke(connection)?;
        debug_assert!(granted <= candidates.len());
        Ok(granted.min(candidates.len()))
    }

    /// Renews `held`; returns the names Redis no longer has and could not
    /// take back.
    pub(crate) fn renew(
        &self,
        connection: &mut Connection,
        keys: &Keys,
        ttl_ms: u64,
        max: usize,
        held: &[String],
    ) -> RedisResult<Vec<String>> {
        let mut lost = Vec::new();
        for chunk in held.chunks(LEASES_PER_CALL_MAX) {
            let chunk_lost: Vec<String> = self
                .renew
                .key(keys.leases())
                .arg(ttl_ms)
                .arg(max)
                .arg(chunk)
                .invoke(connection)?;
            lost.extend(chunk_lost);
        }
        Ok(lost)
    }
}

/// Gives leases back.
pub(crate) fn release(
    connection: &mut Connection,
    keys: &Keys,
    names: &[String],
) -> RedisResult<()> {
    for chunk in names.chunks(LEASES_PER_CALL_MAX) {
        redis::cmd("ZREM")
            .arg(keys.leases())
            .arg(chunk)
            .exec(connection)?;
    }
    Ok(())
}

/// The names of the leases this node holds. Its length always equals the
/// `held` count of the admission pool: the agent changes both together.
#[derive(Debug)]
pub(crate) struct LeaseBook {
    node_id: String,
    /// Random per agent start, so a restarted node with the same id never
    /// reuses a name its previous life may still hold.
    incarnation: String,
    next_seq: u64,
    names: Vec<String>,
}

impl LeaseBook {
    pub(crate) fn new(node_id: &str, incarnation: &str) -> Self {
        LeaseBook {
            node_id: node_id.to_string(),
            incarnation: incarnation.to_string(),
            next_seq: 0,
            names: Vec::new(),
        }
    }

    /// `count` fresh names (at most [`LEASES_PER_CALL_MAX`]), never used before.
    pub(crate) fn candidates(&mut self, count: usize) -> Vec<String> {
        let count = count.min(LEASES_PER_CALL_MAX);
        let names = (0..count as u64)
            .map(|offset| {
                Keys::lease_member(&self.node_id, &self.incarnation, self.next_seq + offset)
            })
            .collect();
        self.next_seq += count as u64;
        names
    }

    /// Records the first `granted` candidates as held.
    pub(crate) fn add_granted(&mut self, mut candidates: Vec<String>, granted: usize) {
        candidates.truncate(granted);
        self.names.extend(candidates);
    }

    /// Takes `count` names out to return them.
    pub(crate) fn take(&mut self, count: usize) -> Vec<String> {
        let keep = self.names.len().saturating_sub(count);
        self.names.split_off(keep)
    }

    /// Forgets names Redis no longer has; returns how many were forgotten.
    pub(crate) fn forget(&mut self, lost: &[String]) -> usize {
        let before = self.names.len();
        self.names.retain(|name| !lost.contains(name));
        before - self.names.len()
    }

    /// Forgets every name (after a clean shutdown released them).
    pub(crate) fn clear(&mut self) -> Vec<String> {
        std::mem::take(&mut self.names)
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_fresh_and_carry_the_incarnation() {
        let mut book = LeaseBook::new("a:1", "f00d");
        let first = book.candidates(3);
        assert_eq!(first, ["a:1:f00d:0", "a:1:f00d:1", "a:1:f00d:2"]);
        let second = book.candidates(2);
        assert_eq!(second, ["a:1:f00d:3", "a:1:f00d:4"]);
        assert_eq!(
            book.candidates(LEASES_PER_CALL_MAX + 5).len(),
            LEASES_PER_CALL_MAX
        );
    }

    #[test]
    fn only_granted_names_are_held_and_returns_come_off_the_end() {
        let mut book = LeaseBook::new("a:1", "f00d");
        let candidates = book.candidates(4);
        book.add_granted(candidates, 3);
        assert_eq!(book.len(), 3);
        assert_eq!(book.take(2), ["a:1:f00d:1", "a:1:f00d:2"]);
        assert_eq!(book.take(5), ["a:1:f00d:0"]);
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn forgetting_lost_names_keeps_the_rest() {
        let mut book = LeaseBook::new("a:1", "f00d");
        let candidates = book.candidates(3);
        book.add_granted(candidates, 3);
        let lost = vec!["a:1:f00d:1".to_string(), "other".to_string()];
        assert_eq!(book.forget(&lost), 1);
        assert_eq!(book.names(), ["a:1:f00d:0", "a:1:f00d:2"]);
        assert_eq!(book.clear().len(), 2);
        assert_eq!(book.len(), 0);
    }
}
