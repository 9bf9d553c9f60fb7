//! One chunk's PUT body, read from the video while it is sent, and the check that keeps a file changed
//! during the upload from ever being complete at TikTok: the open file is looked at (its `fstat`)
//! before the buffer that completes the chunk is yielded, and a file that ends early stops the body.
//! Either way the request is cut before its last byte, so the server cannot keep the chunk, and the
//! error left in [`ChunkBody::stopped`] (local, never retried as a network fault) is the outcome.

use std::io::Read;
use std::sync::{Arc, Mutex};

use super::{ErrorKind, TikTokError};

/// Bytes read from the file per piece of the body: each piece is read straight into the buffer that
/// becomes the body frame (no intermediate copy, no zeroing), while the previous piece is on the wire.
const READ_BUF: usize = 512 * 1024;

/// The file no longer matches what was planned: a local code (`video_changed`, `video_truncated`, …)
/// and a sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceChanged {
    /// The post's error code.
    pub code: &'static str,
    /// What changed and what to do.
    pub message: String,
}

/// Looks at the open file (its `fstat`) before each chunk's first byte and before each chunk's last
/// buffer is sent; an error stops the upload there.
pub type SourceCheck =
    Arc<dyn Fn(&std::fs::Metadata) -> Result<(), SourceChanged> + Send + Sync + 'static>;

/// The code of a file that ended before the planned size.
pub(super) const TRUNCATED: &str = "video_truncated";

/// Opens the video, takes its `fstat` when `stat`, and positions it at `start`, in one trip to the
/// blocking pool; the error names the step that failed.
pub(super) async fn open_at(
    op: &str,
    path: &std::path::Path,
    shown: &str,
    start: u64,
    stat: bool,
) -> Result<(std::fs::File, Option<std::fs::Metadata>), TikTokError> {
    let path = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, (&str, std::io::Error)> {
        use std::io::Seek;
        let mut file = std::fs::File::open(&path).map_err(|e| ("open", e))?;
        let meta = if stat {
            Some(file.metadata().map_err(|e| ("read", e))?)
        } else {
            None
        };
        file.seek(std::io::SeekFrom::Start(start))
            .map_err(|e| ("seek", e))?;
        Ok((file, meta))
    })
    .await
    .map_err(|e| TikTokError::local(op, format!("the file could not be opened: {e}")))?;
    opened.map_err(|(what, e)| TikTokError::local_io(op, &e, format!("cannot {what} {shown}: {e}")))
}

pub(super) fn changed(op: &str, c: SourceChanged) -> TikTokError {
    TikTokError::new(op, ErrorKind::Local, c.code).with_message(c.message)
}

/// One chunk's body as it is read from the file.
pub(super) struct ChunkBody {
    /// The video, opened and positioned at the chunk's first byte.
    pub file: std::fs::File,
    /// Everything else the body keeps while its file is with the read in flight.
    pub state: BodyState,
}

/// The read buffers of one upload: a frame's buffer comes back here when the HTTP stack drops it, so
/// an upload reuses a few buffers instead of allocating (and faulting in) one per read.
#[derive(Clone, Default)]
pub(super) struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// Buffers kept for reuse: the piece being read, the one on the wire and one queued in the HTTP stack.
const POOLED: usize = 3;

impl BufferPool {
    fn take(&self, want: usize) -> Vec<u8> {
        let mut buf = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        buf.clear();
        buf.reserve_exact(want);
        buf
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut p) = self.0.lock()
            && p.len() < POOLED
        {
            p.push(buf);
        }
    }
}

/// A body frame's bytes, returned to the pool when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// One read from the file, made on the blocking pool: the bytes, and the file's `fstat` when this
/// read ended the chunk or the file (the check runs on it before the piece is yielded).
struct Piece {
    file: std::fs::File,
    data: std::io::Result<Vec<u8>>,
    meta: Option<std::io::Result<std::fs::Metadata>>,
}

/// Reads up to `want` bytes into a new buffer, through its spare capacity (`read_to_end` on a
/// `Take` neither zeroes it nor copies through another buffer).
fn read_piece(
    mut file: std::fs::File,
    mut buf: Vec<u8>,
    want: usize,
    left: u64,
    stat: bool,
) -> Piece {
    let data = (&mut file)
        .take(want as u64)
        .read_to_end(&mut buf)
        .map(|_| buf);
    let ends = data
        .as_ref()
        .is_ok_and(|d| d.is_empty() || d.len() as u64 == left);
    let meta = (stat && ends).then(|| file.metadata());
    Piece { file, data, meta }
}

/// The body's state between pieces: the read in flight (started as soon as the previous piece was
/// handed over, so reading overlaps sending), or none once the chunk is done.
struct Reading {
    body: BodyState,
    next: Option<tokio::task::JoinHandle<Piece>>,
}

/// What a chunk's body keeps besides its file.
pub(super) struct BodyState {
    /// Bytes of the chunk not read yet.
    pub left: u64,
    /// The check of the open file, if any.
    pub check: Option<SourceCheck>,
    /// Where the body leaves the error it stopped for.
    pub stopped: Arc<Mutex<Option<TikTokError>>>,
    /// The operation, for errors (`upload chunk 3/9`).
    pub op: String,
    /// The path as shown in errors.
    pub shown: String,
    /// The upload's read buffers.
    pub pool: BufferPool,
}

impl BodyState {
    /// Records why the body stops and returns the error that cuts the request.
    fn stop(&self, e: TikTokError) -> std::io::Error {
        let text = e.to_string();
        if let Ok(mut s) = self.stopped.lock() {
            *s = Some(e);
        }
        std::io::Error::other(text)
    }

    /// Runs the check on the `fstat` taken with the read; `Err` stops the body.
    fn checked(
        &self,
        meta: Option<std::io::Result<std::fs::Metadata>>,
    ) -> Result<(), std::io::Error> {
        let (Some(check), Some(meta)) = (&self.check, meta) else {
            return Ok(());
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", self.shown);
                return Err(self.stop(TikTokError::local_io(&self.op, &e, msg)));
            }
        };
        check(&meta).map_err(|c| self.stop(changed(&self.op, c)))
    }

    fn read_io_error(&self, e: &std::io::Error) -> std::io::Error {
        let msg = format!("cannot read {}: {e}", self.shown);
        self.stop(TikTokError::local_io(&self.op, e, msg))
    }
}

/// Starts the next read on the blocking pool.
fn start_read(
    file: std::fs::File,
    pool: &BufferPool,
    left: u64,
    stat: bool,
) -> tokio::task::JoinHandle<Piece> {
    let want = READ_BUF.min(usize::try_from(left).unwrap_or(READ_BUF));
    let buf = pool.take(want);
    tokio::task::spawn_blocking(move || read_piece(file, buf, want, left, stat))
}

/// The chunk's bytes, a piece at a time. Before the piece that completes the chunk is yielded the
/// file is checked again, and a file that ends early stops the body: either way the request is cut
/// before its last byte, so the server cannot complete the chunk.
pub(super) fn chunk_body(
    body: ChunkBody,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let ChunkBody { file, state: body } = body;
    let stat = body.check.is_some();
    let next = (body.left > 0).then(|| start_read(file, &body.pool, body.left, stat));
    futures_util::stream::try_unfold(Reading { body, next }, move |mut r| async move {
        let Some(handle) = r.next.take() else {
            return Ok(None);
        };
        let piece = match handle.await {
            Ok(p) => p,
            // A read that panicked or was cancelled at shutdown is local, not a network fault.
            Err(e) => {
                let msg = format!("the read of {} stopped: {e}", r.body.shown);
                return Err(r.body.stop(TikTokError::local(&r.body.op, msg)));
            }
        };
        let data = match piece.data {
            Ok(d) => d,
            Err(e) => return Err(r.body.read_io_error(&e)),
        };
        if data.is_empty() {
            // The check names what happened when it can (a truncation since submission).
            r.body.checked(piece.meta)?;
            let msg = format!(
                "{} ended {} bytes before the planned size; the file was truncated during upload, submit it again once it is complete",
                r.body.shown, r.body.left
            );
            let e = TikTokError::new(&r.body.op, ErrorKind::Local, TRUNCATED).with_message(msg);
            return Err(r.body.stop(e));
        }
        r.body.left -= data.len() as u64;
        if r.body.left == 0 {
            r.body.checked(piece.meta)?;
        } else {
            r.next = Some(start_read(piece.file, &r.body.pool, r.body.left, stat));
        }
        let pool = r.body.pool.clone();
        let frame = bytes::Bytes::from_owner(Pooled { buf: data, pool });
        Ok(Some((frame, r)))
    })
}
