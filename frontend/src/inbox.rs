//! Frames from the socket, applied in batches: whatever has arrived is applied together and
//! rendered once, in slices of a few milliseconds with the page free in between, so that a
//! replay of thousands of events neither blocks input nor renders thousands of times.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use gloo::timers::callback::Timeout;
use tally_shared::protocol::ServerFrame;
use yew::Callback;

use crate::state::Action;

/// How long one slice may apply frames before it yields the main thread, in milliseconds.
const SLICE_MS: f64 = 8.0;
/// Frames applied between two looks at the clock.
const CHUNK: usize = 256;

/// The frames received and not yet applied.
pub struct Inbox {
    queue: RefCell<VecDeque<ServerFrame>>,
    scheduled: Cell<bool>,
    dispatch: Callback<Action>,
}

impl Inbox {
    /// An inbox that applies through `dispatch`.
    pub fn new(dispatch: Callback<Action>) -> Rc<Inbox> {
        Rc::new(Inbox {
            queue: RefCell::default(),
            scheduled: Cell::new(false),
            dispatch,
        })
    }

    /// Queues a frame; a slice that applies it runs once the current task is done.
    pub fn push(self: &Rc<Self>, frame: ServerFrame) {
        self.queue.borrow_mut().push_back(frame);
        self.schedule();
    }

    fn schedule(self: &Rc<Self>) {
        if !self.scheduled.replace(true) {
            let inbox = self.clone();
            Timeout::new(0, move || inbox.slice()).forget();
        }
    }

    /// Applies frames for up to [`SLICE_MS`], then yields and continues later if any are left.
    fn slice(self: &Rc<Self>) {
        self.scheduled.set(false);
        let started = js_sys::Date::now();
        while js_sys::Date::now() - started < SLICE_MS && self.apply(CHUNK) {}
        if !self.queue.borrow().is_empty() {
            self.schedule();
        }
    }

    /// Applies up to `n` queued frames as one batch; false when none was queued.
    fn apply(&self, n: usize) -> bool {
        let batch: Vec<ServerFrame> = {
            let mut queue = self.queue.borrow_mut();
            let n = n.min(queue.len());
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return false;
        }
        self.dispatch.emit(Action::Frames(batch));
        true
    }

    /// Applies everything still queued at once (the socket closed: what it delivered counts).
    pub fn flush(&self) {
        while self.apply(usize::MAX) {}
    }
}
