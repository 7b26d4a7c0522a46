//! An object store wrapper that counts requests and bytes, for run manifests and for proving
//! how much of a table a query actually fetched.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use serde::{Deserialize, Serialize};

/// Request and byte counters of one store.
#[derive(Debug, Default)]
pub struct IoCounters {
    get_requests: AtomicU64,
    bytes_read: AtomicU64,
    put_requests: AtomicU64,
    bytes_written: AtomicU64,
    list_requests: AtomicU64,
    other_requests: AtomicU64,
}

/// A snapshot of [`IoCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStats {
    /// GET requests (whole objects and ranges; a multi-range read counts one per range).
    pub get_requests: u64,
    /// Bytes received.
    pub bytes_read: u64,
    /// PUT requests, multipart parts included.
    pub put_requests: u64,
    /// Bytes sent.
    pub bytes_written: u64,
    /// LIST requests.
    pub list_requests: u64,
    /// HEAD, DELETE, COPY and RENAME requests.
    pub other_requests: u64,
}

impl IoStats {
    /// Every request counted.
    pub fn requests(&self) -> u64 {
        self.get_requests + self.put_requests + self.list_requests + self.other_requests
    }

    /// The counters accumulated between `earlier` and `self`.
    pub fn since(&self, earlier: &IoStats) -> IoStats {
        IoStats {
            get_requests: self.get_requests - earlier.get_requests,
            bytes_read: self.bytes_read - earlier.bytes_read,
            put_requests: self.put_requests - earlier.put_requests,
            bytes_written: self.bytes_written - earlier.bytes_written,
            list_requests: self.list_requests - earlier.list_requests,
            other_requests: self.other_requests - earlier.other_requests,
        }
    }

    /// Adds two snapshots.
    pub fn plus(&self, other: &IoStats) -> IoStats {
        IoStats {
            get_requests: self.get_requests + other.get_requests,
            bytes_read: self.bytes_read + other.bytes_read,
            put_requests: self.put_requests + other.put_requests,
            bytes_written: self.bytes_written + other.bytes_written,
            list_requests: self.list_requests + other.list_requests,
            other_requests: self.other_requests + other.other_requests,
        }
    }
}

impl IoCounters {
    /// The current values.
    pub fn snapshot(&self) -> IoStats {
        IoStats {
            get_requests: self.get_requests.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            put_requests: self.put_requests.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            list_requests: self.list_requests.load(Ordering::Relaxed),
            other_requests: self.other_requests.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Delegates every call to `inner` and counts it.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<IoCounters>,
}

impl MeteredStore {
    /// Wraps `inner`, counting into `counters`.
    pub fn new(inner: Arc<dyn ObjectStore>, counters: Arc<IoCounters>) -> Self {
        Self { inner, counters }
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        IoCounters::add(&self.counters.put_requests, 1);
        IoCounters::add(
            &self.counters.bytes_written,
            payload.content_length() as u64,
        );
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        IoCounters::add(&self.counters.other_requests, 1);
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(MeteredUpload {
            inner: Some(upload),
            finished: false,
            counters: Arc::clone(&self.counters),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if head {
            IoCounters::add(&self.counters.other_requests, 1);
        } else {
            IoCounters::add(&self.counters.get_requests, 1);
            IoCounters::add(
                &self.counters.bytes_read,
                result.range.end - result.range.start,
            );
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let parts = self.inner.get_ranges(location, ranges).await?;
        IoCounters::add(&self.counters.get_requests, ranges.len() as u64);
        IoCounters::add(
            &self.counters.bytes_read,
            parts.iter().map(|b| b.len() as u64).sum(),
        );
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counters = Arc::clone(&self.counters);
        self.inner
            .delete_stream(locations)
            .inspect(move |_| IoCounters::add(&counters.other_requests, 1))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        IoCounters::add(&self.counters.list_requests, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        IoCounters::add(&self.counters.list_requests, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        IoCounters::add(&self.counters.list_requests, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        IoCounters::add(&self.counters.other_requests, 1);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        IoCounters::add(&self.counters.other_requests, 1);
        self.inner.rename_opts(from, to, options).await
    }
}

/// Multipart uploads abandoned without `complete` or `abort` (a failed or cancelled write) are
/// aborted in the background; [`drain_aborts`] waits for those aborts before the process exits,
/// so that no incomplete upload is left on the store.
#[derive(Debug, Default)]
struct AbandonedUploads {
    pending: Mutex<Vec<tokio::task::JoinHandle<bool>>>,
    aborted: AtomicU64,
}

static ABANDONED: LazyLock<AbandonedUploads> = LazyLock::new(AbandonedUploads::default);

/// Waits for the aborts of abandoned multipart uploads; returns how many were aborted so far in
/// this process.
pub async fn drain_aborts() -> u64 {
    loop {
        let handles: Vec<_> =
            std::mem::take(&mut *ABANDONED.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if handles.is_empty() {
            break;
        }
        for handle in handles {
            if let Ok(true) = handle.await {
                ABANDONED.aborted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    ABANDONED.aborted.load(Ordering::Relaxed)
}

#[derive(Debug)]
struct MeteredUpload {
    inner: Option<Box<dyn MultipartUpload>>,
    finished: bool,
    counters: Arc<IoCounters>,
}

impl MeteredUpload {
    fn inner(&mut self) -> &mut Box<dyn MultipartUpload> {
        self.inner
            .as_mut()
            .expect("the upload is only taken out in drop")
    }
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        IoCounters::add(&self.counters.put_requests, 1);
        IoCounters::add(&self.counters.bytes_written, data.content_length() as u64);
        self.inner().put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        IoCounters::add(&self.counters.other_requests, 1);
        let result = self.inner().complete().await;
        self.finished = result.is_ok();
        result
    }

    async fn abort(&mut self) -> Result<()> {
        IoCounters::add(&self.counters.other_requests, 1);
        self.finished = true;
        self.inner().abort().await
    }
}

impl Drop for MeteredUpload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (Some(mut upload), Ok(runtime)) =
            (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let counters = Arc::clone(&self.counters);
        let handle = runtime.spawn(async move {
            IoCounters::add(&counters.other_requests, 1);
            match upload.abort().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not abort an abandoned multipart upload");
                    false
                }
            }
        });
        ABANDONED
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn counts_requests_and_bytes() {
        let counters = Arc::new(IoCounters::default());
        let store = MeteredStore::new(Arc::new(InMemory::new()), Arc::clone(&counters));
        let path = Path::from("a/b");
        store
            .put(&path, PutPayload::from_static(b"0123456789"))
            .await
            .expect("put");
        store.get_range(&path, 2..6).await.expect("range");
        store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let _ = store.list(None).collect::<Vec<_>>().await;
        let s = counters.snapshot();
        assert_eq!((s.put_requests, s.bytes_written), (1, 10));
        assert_eq!((s.get_requests, s.bytes_read), (2, 14));
        assert_eq!(s.list_requests, 1);
        assert_eq!(s.requests(), 4);
    }

    #[tokio::test]
    async fn abandoned_multipart_uploads_are_aborted() {
        let counters = Arc::new(IoCounters::default());
        let store = MeteredStore::new(Arc::new(InMemory::new()), Arc::clone(&counters));
        let before = drain_aborts().await;
        let mut upload = store
            .put_multipart(&Path::from("big"))
            .await
            .expect("start");
        upload
            .put_part(PutPayload::from_static(b"part"))
            .await
            .expect("part");
        drop(upload);
        assert_eq!(drain_aborts().await, before + 1);

        let mut done = store.put_multipart(&Path::from("ok")).await.expect("start");
        done.put_part(PutPayload::from_static(b"part"))
            .await
            .expect("part");
        done.complete().await.expect("complete");
        drop(done);
        assert_eq!(
            drain_aborts().await,
            before + 1,
            "a completed upload is not aborted"
        );
    }
}
