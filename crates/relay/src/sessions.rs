//! Request sessions (troth_core::session): opened by one signed request,
//! then each request carries a MAC under the session key. Held in memory
//! only: a restart forgets them and clients open new ones.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use troth_core::SpaceId;
use troth_core::session::{ReplayWindow, SessionId, SessionKey};

/// A session lives this long after it was opened.
pub const SESSION_TTL_MS: u64 = 60 * 60 * 1000;
/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 100_000;
/// Most sessions of one space; opening one more closes its oldest.
pub const MAX_SESSIONS_PER_SPACE: usize = 16;

/// One open session.
pub(crate) struct Session {
    pub key: SessionKey,
    pub expires_ms: u64,
    pub window: Mutex<ReplayWindow>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<SessionId, Arc<Session>>,
    /// Each space's sessions, oldest first.
    by_space: HashMap<SpaceId, VecDeque<SessionId>>,
}

impl Table {
    fn remove(&mut self, id: &SessionId) {
        if let Some(s) = self.by_id.remove(id) {
            let space = s.key.space();
            if let Some(q) = self.by_space.get_mut(&space) {
                q.retain(|x| x != id);
                if q.is_empty() {
                    self.by_space.remove(&space);
                }
            }
        }
    }

    fn sweep(&mut self, now: u64) {
        let dead: Vec<SessionId> = self
            .by_id
            .iter()
            .filter(|(_, s)| now >= s.expires_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove(&id);
        }
    }
}

/// Every open session.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<Table>);

fn lock(m: &Mutex<Table>) -> MutexGuard<'_, Table> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// Adds a session. `false` if the relay holds as many as it may, even
    /// after forgetting expired ones.
    pub fn insert(&self, key: SessionKey, now: u64) -> bool {
        let mut t = lock(&self.0);
        if t.by_id.len() >= MAX_SESSIONS {
            t.sweep(now);
            if t.by_id.len() >= MAX_SESSIONS {
                return false;
            }
        }
        let (id, space) = (key.id(), key.space());
        let oldest = t.by_space.get(&space).and_then(|q| {
            (q.len() >= MAX_SESSIONS_PER_SPACE)
                .then(|| q.front().copied())
                .flatten()
        });
        if let Some(old) = oldest {
            t.remove(&old);
        }
        t.by_space.entry(space).or_default().push_back(id);
        t.by_id.insert(
            id,
            Arc::new(Session {
                key,
                expires_ms: now.saturating_add(SESSION_TTL_MS),
                window: Mutex::new(ReplayWindow::default()),
            }),
        );
        true
    }

    /// The session with this id.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        lock(&self.0).by_id.get(id).cloned()
    }

    /// Forgets one session.
    pub fn remove(&self, id: &SessionId) {
        lock(&self.0).remove(id);
    }

    /// Forgets every session of a space (it was deleted).
    pub fn forget_space(&self, space: SpaceId) {
        let mut t = lock(&self.0);
        if let Some(q) = t.by_space.remove(&space) {
            for id in q {
                t.by_id.remove(&id);
            }
        }
    }

    /// Forgets expired sessions.
    pub fn sweep(&self, now: u64) {
        lock(&self.0).sweep(now);
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        lock(&self.0).by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use troth_core::keys::DeviceId;
    use troth_core::session::SessionOpening;

    fn key(rng: &mut rand::rngs::StdRng, space: u8) -> SessionKey {
        let o = SessionOpening::new(rng);
        SessionKey::accept(rng, SpaceId([space; 16]), DeviceId([1; 32]), o.public())
            .map(|(k, _)| k)
            .expect("accept")
    }

    #[test]
    fn a_space_keeps_its_newest_sessions_and_expiry_forgets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = Sessions::default();
        let first = key(&mut rng, 1);
        let first_id = first.id();
        assert!(s.insert(first, 0));
        for _ in 1..MAX_SESSIONS_PER_SPACE {
            assert!(s.insert(key(&mut rng, 1), 0));
        }
        assert!(s.get(&first_id).is_some());
        let other = key(&mut rng, 2);
        let other_id = other.id();
        assert!(s.insert(other, 10));
        assert!(s.insert(key(&mut rng, 1), 0));
        assert!(s.get(&first_id).is_none(), "the oldest of space 1 went");
        assert_eq!(s.len(), MAX_SESSIONS_PER_SPACE + 1);
        s.forget_space(SpaceId([1; 16]));
        assert_eq!(s.len(), 1);
        s.sweep(SESSION_TTL_MS + 9);
        assert!(s.get(&other_id).is_some());
        s.sweep(SESSION_TTL_MS + 10);
        assert_eq!(s.len(), 0);
    }
}
