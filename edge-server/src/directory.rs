//! Which sim worker hosts which match, and the edge's match capacity.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use outpost_protocol::{MatchId, RejectCode};

/// Where a match lives.
#[derive(Debug, Clone)]
pub struct Route {
    /// Index of its sim worker.
    pub worker: usize,
    /// Its current tick, published by the worker after every tick (answers clock pings
    /// without a trip through the sim thread).
    pub tick: Arc<AtomicU32>,
}

/// How long an ended match's id is remembered: as long as a token for it can still be
/// presented to reconnect ([`crate::admission::RECONNECT_WINDOW_MS`]).
const ENDED_FOR: Duration = Duration::from_millis(crate::admission::RECONNECT_WINDOW_MS);
/// Most ended match ids remembered (oldest forgotten first past it).
const MAX_ENDED: usize = 1_000_000;

#[derive(Default)]
struct Inner {
    routes: HashMap<MatchId, Route>,
    load: Vec<usize>,
    /// Matches that ended here, oldest first: never hosted again under the same id.
    ended: VecDeque<(Instant, MatchId)>,
    ended_ids: HashSet<MatchId>,
}

/// The match → worker map.
pub struct Directory {
    inner: Mutex<Inner>,
    max_matches: usize,
}

impl Directory {
    /// A directory over `workers` sim workers hosting at most `max_matches` matches.
    pub fn new(workers: usize, max_matches: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                load: vec![0; workers],
                ..Inner::default()
            }),
            max_matches,
        }
    }

    /// The route to a match, creating it on the least-loaded worker if it is new.
    /// New matches are refused when the edge is full or `accept_new` is false (draining);
    /// a match that ended here is over for good (`MatchOver`), so a reconnect after the
    /// end cannot raise it again under its old id.
    pub fn route(&self, match_id: MatchId, accept_new: bool) -> Result<(Route, bool), RejectCode> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = inner.routes.get(&match_id) {
            return Ok((route.clone(), false));
        }
        inner.forget_ended(Instant::now());
        if inner.ended_ids.contains(&match_id) {
            return Err(RejectCode::MatchOver);
        }
        if !accept_new {
            return Err(RejectCode::Draining);
        }
        if inner.routes.len() >= self.max_matches {
            return Err(RejectCode::EdgeFull);
        }
        let worker = (0..inner.load.len())
            .min_by_key(|&w| inner.load[w])
            .unwrap_or(0);
        inner.load[worker] += 1;
        let route = Route {
            worker,
            tick: Arc::new(AtomicU32::new(0)),
        };
        inner.routes.insert(match_id, route.clone());
        Ok((route, true))
    }

    /// Forgets a match that ended, and remembers that it did.
    pub fn ended(&self, match_id: MatchId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = inner.routes.remove(&match_id) {
            inner.load[route.worker] = inner.load[route.worker].saturating_sub(1);
        }
        if inner.ended_ids.insert(match_id) {
            inner.ended.push_back((Instant::now(), match_id));
        }
        while inner.ended.len() > MAX_ENDED {
            if let Some((_, id)) = inner.ended.pop_front() {
                inner.ended_ids.remove(&id);
            }
        }
    }

    /// Forgets a match that could not be created.
    pub fn remove(&self, match_id: MatchId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = inner.routes.remove(&match_id) {
            inner.load[route.worker] = inner.load[route.worker].saturating_sub(1);
        }
    }

    /// Matches routed now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .routes
            .len()
    }

    /// Whether no match is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn forget_ended(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.ended.front() {
            if now.duration_since(at) < ENDED_FOR {
                break;
            }
            self.ended.pop_front();
            self.ended_ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_spread_over_workers_and_capacity_holds() {
        let directory = Directory::new(2, 3);
        let (a, new_a) = directory.route(MatchId(1), true).expect("routes");
        let (b, _) = directory.route(MatchId(2), true).expect("routes");
        assert!(new_a);
        assert_ne!(a.worker, b.worker);
        let (again, new_again) = directory.route(MatchId(1), true).expect("routes");
        assert_eq!((again.worker, new_again), (a.worker, false));
        directory.route(MatchId(3), true).expect("routes");
        assert_eq!(
            directory.route(MatchId(4), true).unwrap_err(),
            RejectCode::EdgeFull
        );
        assert_eq!(
            directory.route(MatchId(5), false).unwrap_err(),
            RejectCode::Draining
        );
        directory
            .route(MatchId(1), false)
            .expect("an existing match still routes when draining");
        directory.ended(MatchId(1));
        assert_eq!(directory.len(), 2);
        directory.route(MatchId(4), true).expect("room again");
        assert_eq!(
            directory.route(MatchId(1), true).unwrap_err(),
            RejectCode::MatchOver,
            "an ended match is not hosted again"
        );
    }
}
