//! The spawner the `discv5` crate runs its tasks on.
//!
//! The crate starts its tasks (service, session handler, socket sender and receiver)
//! through an `Executor` and keeps no handle to them; its shutdown only signals them. This
//! executor keeps the handles, so [`TrackedExecutor::join`] can wait until every task has
//! really ended — the socket is closed only then — and abort what outlives a deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{warn, Instrument, Span};

/// A tokio spawner that remembers its tasks. Clones share the list.
#[derive(Clone)]
pub(super) struct TrackedExecutor {
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    span: Span,
}

impl TrackedExecutor {
    /// An executor whose tasks run inside `span`.
    pub(super) fn new(span: Span) -> TrackedExecutor {
        TrackedExecutor {
            tasks: Arc::new(Mutex::new(Vec::new())),
            span,
        }
    }

    /// Tasks started and not yet ended.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        let mut tasks = self.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.len()
    }

    /// Waits up to `grace` for every task to end, then aborts the rest and waits for them.
    /// Returns how many had to be aborted.
    pub(super) async fn join(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        let mut aborted = 0;
        // A task may start another while ending, so drain until the list stays empty.
        loop {
            let tasks = std::mem::take(&mut *self.lock());
            if tasks.is_empty() {
                break;
            }
            for mut task in tasks {
                if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                    task.abort();
                    aborted += 1;
                    let _ = task.await;
                }
            }
        }
        if aborted > 0 {
            warn!(aborted, "discv5 tasks did not end in time; aborted");
        }
        aborted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        // The list stays valid whatever panicked while it was held.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl discv5::Executor for TrackedExecutor {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let handle = tokio::spawn(future.instrument(self.span.clone()));
        let mut tasks = self.lock();
        // The crate starts a handful of tasks per service; reaping keeps the list that size.
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }
}
