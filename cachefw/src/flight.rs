//! Per-cache single-flight: concurrent misses of one key share one load.
//!
//! The first caller of a key becomes the leader and runs the loader; callers
//! arriving while it runs become followers and wait for what it publishes.
//! Values cross as `Arc<dyn Any>` because one cache serves many value types.
//!
//! A load whose fill was refused because its key was evicted or written
//! while it ran (perhaps by another process: this one cannot tell when,
//! relative to a follower's arrival) is published as *voided*: it leaves
//! the map at once, and its followers load again, once, in a new flight
//! (see `aside.rs`), so that none returns the value from before a write
//! acknowledged before it asked.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
enum State {
    Running,
    Done(Shared),
    /// The value of a load whose fill was refused by an eviction or a
    /// write of its key.
    Voided(Shared),
    Failed,
}

/// How a follower's wait ended.
pub(crate) enum Outcome {
    /// The leader's value.
    Value(Shared),
    /// The leader's value, from a load whose key was evicted or written
    /// while it ran: the follower may have asked after that write, and
    /// should load again (once).
    Voided(Shared),
    /// The leader's loader returned an error, which went to the leader's
    /// caller. Errors are not `Clone`: followers join a new flight once,
    /// and after a second failure each asks the source itself (see
    /// `aside.rs`).
    Failed,
    /// The leader was cancelled (its future dropped) before its loader
    /// finished: the follower should join again, and may lead.
    Abandoned,
}

/// A registered flight: its number (to tell it from a later flight of the
/// same key) and where its outcome appears.
struct Registered {
    id: u64,
    rx: watch::Receiver<State>,
}

#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<String, Registered>>,
    next_id: AtomicU64,
}

pub(crate) enum Join<'a> {
    Leader(Leader<'a>),
    Follower(Follower),
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let mut running = self.lock();
        if let Some(flight) = running.get(key) {
            return Join::Follower(Follower {
                rx: flight.rx.clone(),
            });
        }
        let (tx, rx) = watch::channel(State::Running);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        running.insert(key.to_owned(), Registered { id, rx });
        Join::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            id,
            tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registered>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Unregisters the flight of `key`, after a write or an eviction of the
    /// key: its followers still get its value, but callers from now on start
    /// a load of their own rather than take one that began before the write.
    pub(crate) fn detach(&self, key: &str) {
        self.lock().remove(key);
    }

    /// [`detach`](Self::detach) for every key starting with `prefix`.
    pub(crate) fn detach_prefix(&self, prefix: &str) {
        self.lock().retain(|key, _| !key.starts_with(prefix));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The one caller that loads. Dropping it ends the flight: followers that got
/// no value learn so at once and never hang.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    id: u64,
    tx: watch::Sender<State>,
}

impl Leader<'_> {
    /// Hands the value to every follower, present and arriving, until the
    /// leader is dropped.
    pub(crate) fn publish(&self, value: Shared) {
        self.tx.send_replace(State::Done(value));
    }

    /// Hands the value of a voided load to the followers, and
    /// unregisters the flight first: callers from now on start a new one
    /// rather than join this one.
    pub(crate) fn publish_voided(self, value: Shared) {
        self.unregister();
        self.tx.send_replace(State::Voided(value));
    }

    /// Tells followers the loader failed. The flight is unregistered first:
    /// a follower that wakes and joins again must start a new flight, not
    /// find this failed one.
    pub(crate) fn fail(self) {
        self.unregister();
        self.tx.send_replace(State::Failed);
    }

    /// Removes the flight from the map, unless it was detached (and perhaps
    /// replaced by a later flight).
    fn unregister(&self) {
        let mut running = self.flights.lock();
        if running
            .get(&self.key)
            .is_some_and(|flight| flight.id == self.id)
        {
            running.remove(&self.key);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.unregister();
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
            State::Voided(value) => Outcome::Voided(value),
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
    async fn detached_flights_keep_their_followers_but_take_no_new_ones() {
        let flights = Flights::default();
        let Join::Leader(old) = flights.join("user:1") else {
            panic!("first caller leads");
        };
        let Join::Follower(follower) = flights.join("user:1") else {
            panic!("second caller follows");
        };
        flights.detach_prefix("user:");
        let Join::Leader(new) = flights.join("user:1") else {
            panic!("after a detach, a new flight starts");
        };
        old.publish(Arc::new(1u32));
        drop(old);
        assert_eq!(value(follower.wait().await), Some(1));
        assert!(
            matches!(flights.join("user:1"), Join::Follower(_)),
            "the old leader did not unregister the new flight"
        );
        drop(new);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_voided_flight_takes_no_new_followers() {
        let flights = Flights::default();
        let Join::Leader(leader) = flights.join("k") else {
            panic!("first caller leads");
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second caller follows");
        };
        leader.publish_voided(Arc::new(3u32));
        match follower.wait().await {
            Outcome::Voided(v) => assert_eq!(v.downcast_ref::<u32>(), Some(&3)),
            _ => panic!("the follower learns the load was voided"),
        }
        assert_eq!(flights.len(), 0);
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
