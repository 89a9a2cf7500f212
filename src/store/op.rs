//! [`Op`]: what a store operation returns, a future that is either ready at once (the
//! embedded store: no allocation, no executor round trip) or a boxed future (a store
//! over the network).
//!
//! The store is used as `Arc<dyn Store>`, so its methods cannot be `async fn`; returning
//! `Pin<Box<dyn Future>>` would allocate on every call of the decision path. `Op` costs
//! the embedded store nothing beyond the value it carries, and a networked store pays
//! the box it would pay anyway.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The result of a store operation, to be awaited.
#[must_use = "a store operation does nothing until it is awaited"]
pub enum Op<'a, T> {
    /// Done already: awaiting it returns at the first poll.
    Ready(Option<T>),
    /// Still running (a round trip to a shared store).
    Pending(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<'a, T> Op<'a, T> {
    /// An operation that finished synchronously.
    pub fn ready(value: T) -> Self {
        Op::Ready(Some(value))
    }

    /// The value, if the operation finished synchronously (the embedded store's always
    /// do): for callers that cannot await, such as tests and fuzz harnesses.
    pub fn now(self) -> Option<T> {
        match self {
            Op::Ready(value) => value,
            Op::Pending(_) => None,
        }
    }

    /// An operation that runs as `future`.
    pub fn pending(future: impl Future<Output = T> + Send + 'a) -> Self {
        Op::Pending(Box::pin(future))
    }
}

// `Op` never pins its value in place: `Ready` moves it out, `Pending` is already boxed.
impl<T> Unpin for Op<'_, T> {}

impl<T> Future for Op<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Op::Ready(value) => match value.take() {
                Some(value) => Poll::Ready(value),
                None => panic!("a store operation was polled after it completed"),
            },
            Op::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_and_pending_operations_give_their_value() {
        assert_eq!(Op::ready(3).await, 3);
        assert_eq!(Op::pending(async { 4 }).await, 4);
    }
}
