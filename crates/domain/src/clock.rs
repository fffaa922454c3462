//! The one clock. Every part of Cairn that reads the time reads a [`Clock`], so tests and demos
//! can set and advance time (scoring, relative-time segments, delays and schedules follow it).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use tokio::sync::watch;

/// A source of "now". Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

enum Inner {
    System,
    /// A settable clock. `None` means "follow the system clock"; once set or advanced it is
    /// frozen at that instant and only moves when told to, so tests are deterministic.
    Test {
        frozen: Mutex<Option<DateTime<Utc>>>,
        changed: watch::Sender<u64>,
    },
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_test() { "Clock(test)" } else { "Clock(system)" })
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock { inner: Arc::new(Inner::System) }
    }

    pub fn test() -> Clock {
        let (changed, _) = watch::channel(0);
        Clock { inner: Arc::new(Inner::Test { frozen: Mutex::new(None), changed }) }
    }

    pub fn is_test(&self) -> bool {
        matches!(*self.inner, Inner::Test { .. })
    }

    /// The current time, truncated to microseconds so that it round-trips through every store.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.inner {
            Inner::System => Utc::now().trunc_subsecs(6),
            Inner::Test { frozen, .. } => {
                let frozen = *frozen.lock().unwrap_or_else(|p| p.into_inner());
                frozen.unwrap_or_else(|| Utc::now().trunc_subsecs(6))
            }
        }
    }

    /// Sets a test clock to `at` and freezes it there. Returns false on the system clock.
    pub fn set(&self, at: DateTime<Utc>) -> bool {
        self.update(|_| at.trunc_subsecs(6))
    }

    /// Moves a test clock forward (or back, with a negative duration). Returns false on the
    /// system clock.
    pub fn advance(&self, by: Duration) -> bool {
        self.update(|now| now + by)
    }

    fn update(&self, f: impl FnOnce(DateTime<Utc>) -> DateTime<Utc>) -> bool {
        match &*self.inner {
            Inner::System => false,
            Inner::Test { frozen, changed } => {
                {
                    let mut guard = frozen.lock().unwrap_or_else(|p| p.into_inner());
                    let now = guard.unwrap_or_else(|| Utc::now().trunc_subsecs(6));
                    *guard = Some(f(now));
                }
                changed.send_modify(|n| *n += 1);
                true
            }
        }
    }

    /// A receiver that wakes whenever a test clock is set or advanced, so that schedulers
    /// sleeping until a due time re-check it. On the system clock it never fires.
    pub fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        match &*self.inner {
            Inner::System => None,
            Inner::Test { changed, .. } => Some(changed.subscribe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_freezes_when_set_and_moves_when_advanced() {
        let clock = Clock::test();
        let at: DateTime<Utc> = "1997-09-30T00:00:00Z".parse().unwrap();
        assert!(clock.set(at));
        assert_eq!(clock.now(), at);
        assert_eq!(clock.now(), at, "a set clock stays where it was put");
        assert!(clock.advance(Duration::days(3)));
        assert_eq!(clock.now(), at + Duration::days(3));
    }

    #[test]
    fn system_clock_cannot_be_set() {
        let clock = Clock::system();
        assert!(!clock.set(Utc::now()));
        assert!(clock.subscribe().is_none());
    }

    #[test]
    fn clones_share_the_same_test_time() {
        let a = Clock::test();
        let b = a.clone();
        let rx = b.subscribe().unwrap();
        a.set("2026-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(b.now(), a.now());
        assert!(rx.has_changed().unwrap());
    }
}
