//! One chunk's PUT body, read from the video while it is sent, and the check that keeps a file changed
//! during the upload from ever being complete at TikTok: the open file is looked at (its `fstat`)
//! before the buffer that completes the chunk is yielded, and a file that ends early stops the body.
//! Either way the request is cut before its last byte, so the server cannot keep the chunk, and the
//! error left in [`ChunkBody::stopped`] (local, never retried as a network fault) is the outcome.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;

use super::{ErrorKind, TikTokError};

/// Read buffer of the streaming body.
const READ_BUF: usize = 256 * 1024;

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

pub(super) fn changed(op: &str, c: SourceChanged) -> TikTokError {
    TikTokError::new(op, ErrorKind::Local, c.code).with_message(c.message)
}

/// One chunk's body as it is read from the file.
pub(super) struct ChunkBody {
    /// The video, opened and positioned at the chunk's first byte.
    pub file: tokio::fs::File,
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
}

impl ChunkBody {
    /// Records why the body stops and returns the error that cuts the request.
    fn stop(&self, e: TikTokError) -> std::io::Error {
        let text = e.to_string();
        if let Ok(mut s) = self.stopped.lock() {
            *s = Some(e);
        }
        std::io::Error::other(text)
    }

    /// Runs the check on the open file; `Err` stops the body.
    async fn checked(&self) -> Result<(), std::io::Error> {
        let Some(check) = &self.check else {
            return Ok(());
        };
        let meta = match self.file.metadata().await {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", self.shown);
                return Err(self.stop(TikTokError::local_io(&self.op, &e, msg)));
            }
        };
        check(&meta).map_err(|c| self.stop(changed(&self.op, c)))
    }
}

/// The chunk's bytes through a fixed buffer. Before the buffer that completes the chunk is yielded
/// the file is checked again, and a file that ends early stops the body: either way the request is
/// cut before its last byte, so the server cannot complete the chunk.
pub(super) fn chunk_body(
    body: ChunkBody,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::try_unfold(body, |mut b| async move {
        if b.left == 0 {
            return Ok(None);
        }
        let want = READ_BUF.min(usize::try_from(b.left).unwrap_or(READ_BUF));
        let mut buf = bytes::BytesMut::zeroed(want);
        let n = match b.file.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", b.shown);
                return Err(b.stop(TikTokError::local_io(&b.op, &e, msg)));
            }
        };
        if n == 0 {
            // The check names what happened when it can (a truncation since submission).
            b.checked().await?;
            let msg = format!(
                "{} ended {} bytes before the planned size; the file was truncated during upload, submit it again once it is complete",
                b.shown, b.left
            );
            return Err(
                b.stop(TikTokError::new(&b.op, ErrorKind::Local, TRUNCATED).with_message(msg))
            );
        }
        buf.truncate(n);
        b.left -= n as u64;
        if b.left == 0 {
            b.checked().await?;
        }
        Ok(Some((buf.freeze(), b)))
    })
}
