//! Which sim worker hosts which match, and the edge's match capacity.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;

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

#[derive(Default)]
struct Inner {
    routes: HashMap<MatchId, Route>,
    load: Vec<usize>,
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
                routes: HashMap::new(),
                load: vec![0; workers],
            }),
            max_matches,
        }
    }

    /// The route to a match, creating it on the least-loaded worker if it is new.
    /// New matches are refused when the edge is full or `accept_new` is false (draining).
    pub fn route(&self, match_id: MatchId, accept_new: bool) -> Result<(Route, bool), RejectCode> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = inner.routes.get(&match_id) {
            return Ok((route.clone(), false));
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

    /// Forgets a match that ended (or could not be created).
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
        directory.remove(MatchId(1));
        assert_eq!(directory.len(), 2);
        directory.route(MatchId(4), true).expect("room again");
    }
}
