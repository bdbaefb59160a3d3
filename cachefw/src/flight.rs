//! Per-cache single-flight: concurrent misses of one key share one load.
//!
//! The first caller of a key becomes the leader and runs the loader; callers
//! arriving while it runs become followers and wait for what it publishes.
//! Values cross as `Arc<dyn Any>` because one cache serves many value types.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
enum State {
    Running,
    Done(Shared),
    Failed,
}

/// How a follower's wait ended.
pub(crate) enum Outcome {
    /// The leader's value.
    Value(Shared),
    /// The leader's loader returned an error, which went to the leader's
    /// caller. Errors are not `Clone`, so each follower asks the source
    /// itself rather than queueing behind another leader that may fail
    /// just as slowly.
    Failed,
    /// The leader was cancelled (its future dropped) before its loader
    /// finished: the follower should join again, and may lead.
    Abandoned,
}

#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<String, watch::Receiver<State>>>,
}

pub(crate) enum Join<'a> {
    Leader(Leader<'a>),
    Follower(Follower),
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = running.get(key) {
            return Join::Follower(Follower { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(State::Running);
        running.insert(key.to_owned(), rx);
        Join::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            tx,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The one caller that loads. Dropping it ends the flight: followers that got
/// no value learn so at once and never hang.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    tx: watch::Sender<State>,
}

impl Leader<'_> {
    /// Hands the value to every follower, present and arriving, until the
    /// leader is dropped.
    pub(crate) fn publish(&self, value: Shared) {
        self.tx.send_replace(State::Done(value));
    }

    /// Tells followers the loader failed.
    pub(crate) fn fail(self) {
        self.tx.send_replace(State::Failed);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut running = self
            .flights
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // No other flight of this key can start while we are registered, so
        // the entry is ours.
        running.remove(&self.key);
    }
}

pub(crate) struct Follower {
    rx: watch::Receiver<State>,
}

impl Follower {
    pub(crate) async fn wait(mut self) -> Outcome {
        // `wait_for` errs only when the leader is gone; by then the last
        // state is final.
        let finished = self
            .rx
            .wait_for(|s| !matches!(s, State::Running))
            .await
            .map(|state| state.clone());
        let state = finished.unwrap_or_else(|_| self.rx.borrow().clone());
        match state {
            State::Done(value) => Outcome::Value(value),
            State::Failed => Outcome::Failed,
            State::Running => Outcome::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(outcome: Outcome) -> Option<u32> {
        match outcome {
            Outcome::Value(v) => v.downcast_ref::<u32>().copied(),
            _ => None,
        }
    }

    #[tokio::test]
    async fn followers_get_the_published_value() {
        let flights = Flights::default();
        let Join::Leader(leader) = flights.join("k") else {
            panic!("first caller leads");
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second caller follows");
        };
        leader.publish(Arc::new(7u32));
        // A caller arriving after the publish still gets the value.
        let Join::Follower(late) = flights.join("k") else {
            panic!("flight still registered");
        };
        drop(leader);
        assert_eq!(value(follower.wait().await), Some(7));
        assert_eq!(value(late.wait().await), Some(7));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn failure_and_cancellation_release_followers() {
        let flights = Flights::default();
        let Join::Leader(leader) = flights.join("k") else {
            panic!("first caller leads");
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second caller follows");
        };
        leader.fail();
        assert!(matches!(follower.wait().await, Outcome::Failed));
        assert_eq!(flights.len(), 0);

        let Join::Leader(leader) = flights.join("k") else {
            panic!("a new flight starts");
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second caller follows");
        };
        drop(leader);
        assert!(matches!(follower.wait().await, Outcome::Abandoned));
        assert!(matches!(flights.join("k"), Join::Leader(_)));
    }

    #[tokio::test]
    async fn keys_are_independent() {
        let flights = Flights::default();
        let a = flights.join("a");
        let b = flights.join("b");
        assert!(matches!(a, Join::Leader(_)));
        assert!(matches!(b, Join::Leader(_)));
    }
}
