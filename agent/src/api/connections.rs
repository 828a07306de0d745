//! The HTTP(S) server's connection table: at most `cap` connections open at once. A new
//! connection at the cap closes the oldest one with no request in flight (an idle keep-alive,
//! a half-sent request line, a stalled TLS handshake), so sockets held open by a client that
//! never finishes a request cannot lock out a real one. Connections serving a request are
//! never closed to make room; when all of them are, the new connection is refused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The table shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub struct Connections {
    cap: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    /// Oldest first.
    slots: VecDeque<Arc<Slot>>,
}

/// One open connection: how many of its requests are in flight, and whether it was told to
/// close.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    state: Mutex<SlotState>,
    closed: Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    in_flight: usize,
    evicted: bool,
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            cap: cap.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    /// Makes room for a new connection, closing the oldest idle one at the cap. `None` when
    /// every open connection is serving a request.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.open.lock().expect("connection table");
        if open.slots.len() >= self.cap {
            let idle = open.slots.iter().position(|s| s.evict_if_idle())?;
            open.slots.remove(idle);
        }
        open.next_id += 1;
        let slot = Arc::new(Slot {
            id: open.next_id,
            state: Mutex::new(SlotState::default()),
            closed: Notify::new(),
        });
        open.slots.push_back(slot.clone());
        Some(Admitted {
            table: self.clone(),
            slot,
        })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().expect("connection table").slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every connection with no request in flight (at shutdown).
    pub fn close_idle(&self) {
        let mut open = self.open.lock().expect("connection table");
        open.slots.retain(|s| !s.evict_if_idle());
    }
}

impl Slot {
    fn evict_if_idle(&self) -> bool {
        let mut st = self.state.lock().expect("connection slot");
        if st.in_flight == 0 && !st.evicted {
            st.evicted = true;
            self.closed.notify_one();
            true
        } else {
            false
        }
    }
}

/// A connection's place in the table; leaves the table when dropped.
#[derive(Debug)]
pub struct Admitted {
    table: Arc<Connections>,
    slot: Arc<Slot>,
}

impl Admitted {
    /// Resolves when the table closed this connection to make room.
    pub async fn evicted(&self) {
        self.slot.closed.notified().await
    }

    /// A handle for the connection's service to mark its requests.
    pub fn slot(&self) -> Arc<Slot> {
        self.slot.clone()
    }
}

impl Slot {
    /// Marks a request in flight until the guard drops; `None` if the connection was already
    /// told to close.
    pub fn request(self: &Arc<Self>) -> Option<InFlight> {
        let mut st = self.state.lock().expect("connection slot");
        if st.evicted {
            return None;
        }
        st.in_flight += 1;
        Some(InFlight(self.clone()))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().expect("connection table");
        open.slots.retain(|s| s.id != self.slot.id);
    }
}

/// A request in flight on a connection: that connection is not closed to make room.
#[derive(Debug)]
pub struct InFlight(Arc<Slot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state.lock().expect("connection slot").in_flight -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let table = Connections::new(2);
        let first = table.admit().unwrap();
        let second = table.admit().unwrap();
        let third = table.admit().expect("room made");
        assert_eq!(table.len(), 2);
        tokio::time::timeout(Duration::from_secs(1), first.evicted())
            .await
            .expect("the oldest idle one is told to close");
        assert!(
            first.slot().request().is_none(),
            "an evicted connection takes no request"
        );
        let _busy = second.slot().request().unwrap();
        let _fourth = table.admit().expect("third is idle and makes room");
        assert!(third.slot().request().is_none());
        assert!(
            second.slot().request().is_some(),
            "a busy connection is never evicted"
        );
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_new_one_is_refused() {
        let table = Connections::new(1);
        let only = table.admit().unwrap();
        let busy = only.slot().request().unwrap();
        assert!(table.admit().is_none());
        drop(busy);
        assert!(table.admit().is_some());
    }

    #[test]
    fn a_closed_connection_leaves_the_table() {
        let table = Connections::new(4);
        let a = table.admit().unwrap();
        let _b = table.admit().unwrap();
        drop(a);
        assert_eq!(table.len(), 1);
        table.close_idle();
        assert!(table.is_empty());
    }
}
