//! Media transfer for FILE_UPLOAD: the chunk plan, and a streaming, resumable chunked PUT.
//!
//! The chunk rules (`tiktok-api.md` 5.1) say "MB" and mean MiB in one example and 10^6 bytes in another,
//! so the plan is made safe under both readings:
//! - a file of at most 64,000,000 bytes goes as one chunk (`chunk_size == video_size`, count 1), which
//!   is under 64 MB either way and satisfies "files under 5 MB must go as one chunk";
//! - a larger file is cut into 10,000,000-byte chunks (between 5 MiB and 64,000,000 bytes), counted with
//!   `floor(size / chunk)`, so the final chunk absorbs the rest and stays under 20 MB; past 1000 chunks
//!   (files over 10 GB) the chunk grows to keep the count at 1000, up to 64,000,000 bytes.
//!
//! Each chunk is read from the file while it is sent, through a fixed buffer, so memory does not grow
//! with the file or the chunk. After a 416, or a response carrying `Content-Range`, the next offset
//! comes from the server's count of received bytes (read both as a count and as a last-byte index, since
//! the docs are ambiguous); a 5xx or a dropped connection sends the same chunk again.
//!
//! The file must stay the one that was planned: a [`SourceCheck`] looks at the open file before each
//! chunk's first byte and again before each chunk's last buffer goes out, and a file that ends early
//! stops the chunk. Either way the chunk's body is cut short, so the server never holds a complete
//! final chunk of a changed file, and the error is local and final (never retried as a network fault).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::Retryable;
use rand::Rng;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::chunk_body::{BodyState, BufferPool, ChunkBody, changed, chunk_body, open_at};
pub use super::chunk_body::{SourceChanged, SourceCheck};
use super::{Client, ErrorKind, TikTokError};

/// Largest single-chunk upload, safe under both readings of "64 MB".
pub const SINGLE_CHUNK_MAX: u64 = 64_000_000;
/// The chunk size of multi-chunk uploads (between 5 MiB and 64,000,000 bytes under both readings).
pub const DEFAULT_CHUNK: u64 = 10_000_000;
/// Largest chunk (both readings).
pub const MAX_CHUNK: u64 = 64_000_000;
/// At most this many chunks.
pub const MAX_CHUNKS: u64 = 1000;

/// How a file is cut into PUTs: what `source_info` declares at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    /// Bytes in the file.
    pub video_size: u64,
    /// Bytes per chunk (the final chunk may be larger).
    pub chunk_size: u64,
    /// `floor(video_size / chunk_size)`.
    pub total_chunk_count: u64,
}

/// Why a file cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Zero bytes.
    #[error("the video file is empty (0 bytes); TikTok needs a real video")]
    Empty,
    /// More than 1000 chunks of 64 MB.
    #[error(
        "the video file is {0} bytes, more than 1000 chunks of 64 MB can carry; TikTok accepts at most 4 GB"
    )]
    TooLarge(u64),
}

impl ChunkPlan {
    /// The plan for a file of `size` bytes.
    pub fn for_size(size: u64) -> Result<Self, PlanError> {
        if size == 0 {
            return Err(PlanError::Empty);
        }
        if size <= SINGLE_CHUNK_MAX {
            return Ok(Self {
                video_size: size,
                chunk_size: size,
                total_chunk_count: 1,
            });
        }
        let chunk = DEFAULT_CHUNK.max(size.div_ceil(MAX_CHUNKS));
        if chunk > MAX_CHUNK {
            return Err(PlanError::TooLarge(size));
        }
        Ok(Self {
            video_size: size,
            chunk_size: chunk,
            total_chunk_count: size / chunk,
        })
    }

    /// `(first byte, length)` of chunk `index` (0-based). The final chunk absorbs the remainder.
    pub fn chunk(&self, index: u64) -> (u64, u64) {
        let start = index * self.chunk_size;
        let len = if index + 1 == self.total_chunk_count {
            self.video_size - start
        } else {
            self.chunk_size
        };
        (start, len)
    }

    /// The chunk that starts at `offset`, if one does.
    pub fn chunk_starting_at(&self, offset: u64) -> Option<u64> {
        if offset % self.chunk_size != 0 {
            return None;
        }
        let i = offset / self.chunk_size;
        (i < self.total_chunk_count).then_some(i)
    }

    fn is_boundary(&self, offset: u64) -> bool {
        offset == self.video_size || self.chunk_starting_at(offset).is_some()
    }
}

/// The `upload_url` an init returned. Its query string is a credential (`upload_token`), so it is kept
/// secret: never in `Debug`, logs or errors.
#[derive(Clone)]
pub struct UploadUrl(SecretString);

impl UploadUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The URL itself, for sending or for sealed storage only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for UploadUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}
impl Eq for UploadUrl {}

impl fmt::Debug for UploadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UploadUrl([redacted])")
    }
}

/// `Content-Type` of the PUT when the file's name gives none of TikTok's three (ingest refuses such
/// names; a post recorded before that check still goes as MP4, as it always did).
pub const DEFAULT_CONTENT_TYPE: &str = "video/mp4";

/// `Content-Type` of the PUT, from the file's extension, falling back to [`DEFAULT_CONTENT_TYPE`].
pub fn content_type_or_default(path: &Path) -> &'static str {
    content_type_for(path).unwrap_or(DEFAULT_CONTENT_TYPE)
}

/// `Content-Type` of the PUT, from the file's extension: one of TikTok's three.
pub fn content_type_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "mp4" | "m4v" => Some("video/mp4"),
        "mov" | "qt" => Some("video/quicktime"),
        "webm" => Some("video/webm"),
        _ => None,
    }
}

/// How an upload went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Bytes put on the wire, retries included.
    pub bytes_sent: u64,
    /// PUTs sent.
    pub requests: u32,
    /// Chunks sent again after a 5xx or a dropped connection.
    pub retries: u32,
    /// Times the offset was resynchronised from the server's `Content-Range` after a 416.
    pub resyncs: u32,
}

/// What to upload.
pub struct UploadRequest<'a> {
    /// From the init.
    pub url: &'a UploadUrl,
    /// The file; its size must still be `plan.video_size`.
    pub path: &'a Path,
    /// The plan declared at init.
    pub plan: ChunkPlan,
    /// `video/mp4`, `video/quicktime` or `video/webm`.
    pub content_type: &'a str,
    /// Where to start (0, or a chunk boundary the server already confirmed).
    pub start_offset: u64,
    /// Checks the file is still the one planned, before and at the end of every chunk.
    pub check: Option<SourceCheck>,
}

impl fmt::Debug for UploadRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadRequest")
            .field("path", &self.path)
            .field("plan", &self.plan)
            .field("start_offset", &self.start_offset)
            .field("check", &self.check.is_some())
            .finish_non_exhaustive()
    }
}

/// Parses `bytes A-B/T` or `bytes */T`; returns `(Some(B), T)` or `(None, T)`.
fn parse_content_range(v: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    if range.trim() == "*" {
        return Some((None, total));
    }
    let (_, end) = range.split_once('-')?;
    Some((Some(end.trim().parse().ok()?), total))
}

impl Client {
    /// Uploads the file chunk by chunk, in order, resuming from the server's own progress after a 416 or a
    /// dropped connection. Returns once the server answered 201 (or reported every byte received).
    ///
    /// Safe to interrupt: the next call may start at the last confirmed chunk boundary (or 0, and a 416
    /// resynchronises it). `progress` is called with the confirmed byte count after each chunk.
    pub async fn upload_file(
        &self,
        req: UploadRequest<'_>,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<UploadOutcome, TikTokError> {
        let plan = req.plan;
        let total = plan.video_size;
        let meta = tokio::fs::metadata(req.path).await.map_err(|e| {
            TikTokError::local_io(
                "upload",
                &e,
                format!("cannot read {}: {e}", req.path.display()),
            )
        })?;
        if meta.len() != total {
            let code = if meta.len() < total {
                super::chunk_body::TRUNCATED
            } else {
                "video_changed"
            };
            return Err(TikTokError::new("upload", ErrorKind::Local, code).with_message(format!(
                "{} is {} bytes now but was {} bytes when the upload was planned; the file changed, submit it again",
                req.path.display(),
                meta.len(),
                total
            )));
        }
        let mut out = UploadOutcome::default();
        let pool = BufferPool::default();
        let mut offset = req.start_offset;
        let mut failures = 0u32;
        let mut resyncs_in_a_row = 0u32;
        loop {
            let Some(index) = plan.chunk_starting_at(offset) else {
                return Err(TikTokError::local(
                    "upload",
                    format!("offset {offset} is not a chunk boundary of the plan"),
                ));
            };
            let (start, len) = plan.chunk(index);
            let op = format!("upload chunk {}/{}", index + 1, plan.total_chunk_count);
            out.requests += 1;
            out.bytes_sent += len;
            // A 5xx or a dropped connection sends the same chunk again after a backoff. The budget of
            // retries is shared by every chunk since the last one the server confirmed (206), so
            // the schedule continues from `failures`.
            let backoff = (failures + 1..=self.cfg.upload_chunk_retries)
                .map(chunk_backoff as fn(u32) -> Duration);
            let (status, range) = (|| self.put_chunk(&op, &req, &pool, start, len))
                .retry(backoff)
                .when(|e: &TikTokError| e.disposition().is_retryable())
                .notify(|e: &TikTokError, _| {
                    failures += 1;
                    out.retries += 1;
                    out.requests += 1;
                    out.bytes_sent += len;
                    tracing::warn!(chunk = index + 1, attempt = failures, error = %e, "Chunk upload failed; sending it again.");
                })
                .await?;
            // Where the server says it is, read both ways.
            let reported = range.and_then(|(end, _)| end).and_then(|b| {
                [b + 1, b]
                    .into_iter()
                    .find(|&o| plan.is_boundary(o) && o > 0)
            });
            match status {
                200 | 201 => {
                    progress(total);
                    return Ok(out);
                }
                206 => {
                    failures = 0;
                    resyncs_in_a_row = 0;
                    offset = reported.unwrap_or(start + len);
                    if offset >= total {
                        // Every byte is in, but the server still says "partial": the final PUT is the
                        // one that completes; this should not happen with a conforming server.
                        return Err(TikTokError::new(op, ErrorKind::Upload, "upload_incomplete")
                            .with_status(206)
                            .with_message(
                                "the server has every byte but did not confirm the upload with 201",
                            ));
                    }
                    progress(offset);
                }
                416 => {
                    out.resyncs += 1;
                    resyncs_in_a_row += 1;
                    let next = match range {
                        Some((None, _)) => Some(0),
                        _ => reported,
                    };
                    let Some(next) = next.filter(|_| resyncs_in_a_row <= 3) else {
                        return Err(TikTokError::new(op, ErrorKind::Upload, "range_not_satisfiable")
                            .with_status(416)
                            .with_message("the server refused the byte range and gave no usable Content-Range to resume from"));
                    };
                    tracing::info!(
                        from = offset,
                        to = next,
                        "Upload resynchronised from the server's Content-Range."
                    );
                    if next >= total {
                        progress(total);
                        return Ok(out);
                    }
                    offset = next;
                }
                _ => unreachable!("put_chunk returns only 2xx and 416 as Ok"),
            }
        }
    }

    /// One PUT. Returns the status (2xx or 416) and the parsed response `Content-Range`; every other
    /// status is an error whose disposition says whether to send the chunk again.
    async fn put_chunk(
        &self,
        op: &str,
        req: &UploadRequest<'_>,
        req_pool: &BufferPool,
        start: u64,
        len: u64,
    ) -> Result<(u16, Option<(Option<u64>, Option<u64>)>), TikTokError> {
        let total = req.plan.video_size;
        let shown = req.path.display().to_string();
        let (file, meta) = open_at(op, req.path, &shown, start, req.check.is_some()).await?;
        if let (Some(check), Some(meta)) = (&req.check, meta) {
            check(&meta).map_err(|c| changed(op, c))?;
        }
        // Set by the body when it stops itself; then that, not the transport error, is the outcome.
        let stopped: Arc<Mutex<Option<TikTokError>>> = Arc::default();
        let body = reqwest::Body::wrap_stream(chunk_body(ChunkBody {
            file,
            state: BodyState {
                left: len,
                check: req.check.clone(),
                stopped: stopped.clone(),
                op: op.to_string(),
                shown,
                pool: req_pool.clone(),
            },
        }));
        let resp = self
            .upload
            .put(req.url.expose())
            .header(CONTENT_TYPE, req.content_type)
            .header(CONTENT_LENGTH, len)
            .header(
                CONTENT_RANGE,
                format!("bytes {}-{}/{}", start, start + len - 1, total),
            )
            .timeout(self.cfg.upload_chunk_timeout)
            .body(body)
            .send()
            .await;
        let stop = stopped.lock().ok().and_then(|mut s| s.take());
        if let Some(e) = stop {
            return Err(e);
        }
        let resp = resp.map_err(|e| TikTokError::transport(op, e))?;
        let status = resp.status().as_u16();
        let range = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range);
        // The body is undocumented; read it (capped) so the connection can be reused. A body cut off
        // midway is ignored like any other; one past the cap is an error naming it.
        let body = match super::body::read_capped(op, resp).await {
            Ok(b) => b,
            Err(e) if e.code == "response_too_large" => return Err(e),
            Err(_) => Vec::new(),
        };
        match status {
            200 | 201 | 206 | 416 => Ok((status, range)),
            _ => {
                let (code, message) = match status {
                    400 => (
                        "upload_rejected",
                        "the upload host refused the request headers or body length",
                    ),
                    403 => (
                        "upload_url_expired",
                        "the upload_url has expired (it lives one hour after init)",
                    ),
                    404 => ("upload_not_found", "no upload matches this upload_url"),
                    _ => ("", ""),
                };
                let code = if code.is_empty() {
                    format!("http_{status}")
                } else {
                    code.to_string()
                };
                let mut message = message.to_string();
                if message.is_empty() {
                    message = String::from_utf8_lossy(&body).chars().take(200).collect();
                }
                Err(TikTokError::new(op, ErrorKind::Upload, code)
                    .with_status(status)
                    .with_message(message))
            }
        }
    }
}

/// 250 ms doubling to 8 s, with jitter between half and all of it.
fn chunk_backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(5)).min(8_000);
    Duration::from_millis(rand::rng().random_range(base / 2..=base))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Every PUT of a plan, as byte counts.
    fn puts(p: &ChunkPlan) -> Vec<u64> {
        (0..p.total_chunk_count).map(|i| p.chunk(i).1).collect()
    }

    /// The rules of the media transfer guide, under both readings of MB.
    fn assert_valid_both_readings(size: u64) {
        let p = ChunkPlan::for_size(size).unwrap();
        assert_eq!(p.video_size, size);
        assert_eq!(
            p.total_chunk_count,
            size / p.chunk_size,
            "floor count for {size}"
        );
        assert!(
            (1..=1000).contains(&p.total_chunk_count),
            "count for {size}"
        );
        let puts = puts(&p);
        assert_eq!(puts.iter().sum::<u64>(), size, "bytes add up for {size}");
        if p.total_chunk_count == 1 {
            assert_eq!(p.chunk_size, size);
            assert!(
                size <= 64_000_000,
                "single chunk must be at most 64 MB (decimal) for {size}"
            );
        } else {
            for (i, &n) in puts.iter().enumerate() {
                let last = i + 1 == puts.len();
                assert!(n >= 5 * MIB, "chunk {i} of {size} under 5 MB: {n}");
                if last {
                    assert!(n <= 128_000_000, "final chunk of {size} over 128 MB: {n}");
                } else {
                    assert!(n <= 64_000_000, "chunk {i} of {size} over 64 MB: {n}");
                }
            }
        }
    }

    #[test]
    fn zero_bytes_cannot_be_planned() {
        assert_eq!(ChunkPlan::for_size(0), Err(PlanError::Empty));
    }

    #[test]
    fn small_files_go_as_one_chunk() {
        for size in [
            1,
            4_999_999,
            5 * MIB - 1,
            5_000_001,
            5 * MIB + 1,
            64_000_000,
        ] {
            let p = ChunkPlan::for_size(size).unwrap();
            assert_eq!((p.chunk_size, p.total_chunk_count), (size, 1), "{size}");
            assert_valid_both_readings(size);
        }
    }

    #[test]
    fn files_over_64_mb_are_split_with_the_final_chunk_absorbing_the_rest() {
        for size in [
            64_000_001,
            64 * MIB,
            64 * MIB + 1,
            128_000_000,
            1_000_000_000,
            4 * 1024 * MIB,
        ] {
            assert_valid_both_readings(size);
            let p = ChunkPlan::for_size(size).unwrap();
            assert!(p.total_chunk_count > 1, "{size}");
        }
        let p = ChunkPlan::for_size(64 * MIB).unwrap();
        assert_eq!((p.chunk_size, p.total_chunk_count), (10_000_000, 6));
        assert_eq!(p.chunk(5), (50_000_000, 64 * MIB - 50_000_000));
        let p = ChunkPlan::for_size(4 * 1024 * MIB).unwrap();
        assert_eq!((p.chunk_size, p.total_chunk_count), (10_000_000, 429));
    }

    #[test]
    fn the_documented_example_is_reproduced() {
        let p = ChunkPlan {
            video_size: 50_000_123,
            chunk_size: 10_000_000,
            total_chunk_count: 5,
        };
        assert_eq!(
            puts(&p),
            vec![10_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_123]
        );
    }

    #[test]
    fn huge_files_keep_to_1000_chunks_and_refuse_past_64_gb() {
        assert_valid_both_readings(20_000_000_000);
        assert_eq!(
            ChunkPlan::for_size(20_000_000_000)
                .unwrap()
                .total_chunk_count,
            1000
        );
        assert!(matches!(
            ChunkPlan::for_size(64_000_000_001 + 64_000_000),
            Err(PlanError::TooLarge(_))
        ));
    }

    #[test]
    fn content_range_parses_both_forms() {
        assert_eq!(
            parse_content_range("bytes 0-9999999/50000123"),
            Some((Some(9_999_999), Some(50_000_123)))
        );
        assert_eq!(
            parse_content_range("bytes */50000123"),
            Some((None, Some(50_000_123)))
        );
        assert_eq!(parse_content_range("garbage"), None);
    }

    #[test]
    fn content_type_follows_the_container() {
        assert_eq!(content_type_for(Path::new("/a/b.MP4")), Some("video/mp4"));
        assert_eq!(
            content_type_for(Path::new("x.mov")),
            Some("video/quicktime")
        );
        assert_eq!(content_type_for(Path::new("x.webm")), Some("video/webm"));
        assert_eq!(content_type_for(Path::new("x.avi")), None);
        assert_eq!(content_type_or_default(Path::new("x.avi")), "video/mp4");
        assert_eq!(content_type_or_default(Path::new("x.webm")), "video/webm");
    }

    #[test]
    fn chunk_backoff_is_capped() {
        for a in 0..20 {
            assert!(chunk_backoff(a) <= Duration::from_secs(8));
        }
    }
}
