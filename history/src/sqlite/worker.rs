//! A thread that owns one SQLite connection and runs the jobs sent to it, one at a time.
//!
//! rusqlite is blocking, and a `Connection` is not `Sync`: the store keeps two of these, a
//! writer (the only connection that writes, so writes never wait on SQLite's lock) and a
//! reader (WAL lets it read while the writer writes). Async callers await a oneshot reply;
//! the runtime's threads never block on the database.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;

use crate::Error;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread. It ends when the worker is dropped, after the jobs already sent.
    pub(crate) fn spawn(name: &str, mut conn: Connection) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(|e| Error::Unavailable(format!("cannot start sqlite thread: {e}")))?;
        Ok(Worker { jobs })
    }

    /// Runs `f` on the thread and waits for its answer.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                // The caller may have gone (its future dropped): the job still ran, which
                // for a write is what a commit before an ack means.
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| Error::WorkerStopped)?;
        answer.await.map_err(|_| Error::WorkerStopped)?
    }
}
