//! Group commit for webhook pushes. Each push waits for a durable commit
//! before it is answered, but pushes that arrive while a commit is running
//! share the next one: one fsync for many pushes instead of one each.

use tokio::sync::{mpsc, oneshot};

use super::{Backend, Idempotency, NewRecords, PushOutcome, StorageError, Store};

/// Most pushes per transaction: bounds the latency one slow batch adds.
const MAX_BATCH: usize = 256;

/// A push, owned, so it can wait in the queue.
pub struct PushJob {
    pub tenant_id: String,
    pub owner_id: String,
    pub client_id: String,
    pub collection: String,
    pub records: Vec<(String, String)>,
    pub now: i64,
    /// Key, request digest and the response to replay.
    pub idempotency: Option<(String, String, String)>,
    /// The pushing request's W3C `traceparent`, for the deliveries' spans.
    pub traceparent: Option<String>,
}

impl PushJob {
    fn as_new_records(&self) -> NewRecords<'_> {
        NewRecords {
            tenant_id: &self.tenant_id,
            owner_id: &self.owner_id,
            client_id: &self.client_id,
            collection: &self.collection,
            records: &self.records,
            now: self.now,
            idempotency: self
                .idempotency
                .as_ref()
                .map(|(key, digest, response)| Idempotency {
                    key,
                    request_digest: digest,
                    response,
                }),
            traceparent: self.traceparent.as_deref(),
        }
    }
}

type Reply = oneshot::Sender<Result<PushOutcome, StorageError>>;

#[derive(Clone)]
pub struct PushQueue {
    sender: mpsc::Sender<(PushJob, Reply)>,
    backend: Backend,
}

impl PushQueue {
    /// Starts the writers: one on SQLite (it has one writer anyway), a few on
    /// PostgreSQL.
    pub fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::channel::<(PushJob, Reply)>(4 * MAX_BATCH);
        let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
        let backend = store.backend();
        let writers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        for _ in 0..writers {
            let store = store.clone();
            let receiver = std::sync::Arc::clone(&receiver);
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut receiver = receiver.lock().await;
                        let Some(first) = receiver.recv().await else {
                            break;
                        };
                        batch.push(first);
                        while batch.len() < MAX_BATCH {
                            match receiver.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                    }
                    commit(&store, batch).await;
                }
            });
        }
        PushQueue { sender, backend }
    }

    /// Queues the push and waits until it is committed.
    pub async fn push(&self, job: PushJob) -> Result<PushOutcome, StorageError> {
        // The wait for the shared commit, in the pushing request's trace (the
        // commit itself runs on the writer's task, for many requests).
        let _span = super::database_span(self.backend, "push_records");
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((job, reply))
            .await
            .map_err(|_| StorageError::Unavailable(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StorageError::Unavailable(sqlx::Error::PoolClosed))?
    }
}

async fn commit(store: &Store, batch: Vec<(PushJob, Reply)>) {
    let records: Vec<NewRecords<'_>> = batch.iter().map(|(job, _)| job.as_new_records()).collect();
    match store.push_batch(&records).await {
        Ok(outcomes) => {
            drop(records);
            for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            drop(records);
            let mut batch = batch;
            if batch.len() == 1 {
                if let Some((_, reply)) = batch.pop() {
                    let _ = reply.send(Err(err));
                }
                return;
            }
            // One bad push must not fail the others: retry each alone.
            for (job, reply) in batch {
                let _ = reply.send(store.push_records(job.as_new_records()).await);
            }
        }
    }
}
