//! Reading a response body with a size cap: TikTok's answers are a few KiB, so a body past
//! [`MAX_BODY_BYTES`] is something else answering (a captive portal, a broken proxy, an attack) and
//! is refused with an error naming the cap, after reading at most the cap.
//!
//! [`send_and_read`] is the one way an API call (posting or OAuth) goes out and comes back: send,
//! map a transport failure to a [`TikTokError`], keep the status and `Retry-After`, read the capped
//! body. What the body means is the caller's (the posting envelope, the OAuth grant).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};

use super::{ErrorKind, TikTokError};

/// The largest response body the client reads from TikTok or its upload host: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The error for a body past the cap; its disposition is a decode error's (retried after a 5xx,
/// final after a 2xx, whose body will not shrink on a second try).
fn too_large(op: &str, status: u16, declared: Option<u64>) -> TikTokError {
    let size = match declared {
        Some(n) => format!("it declares {n} bytes"),
        None => format!("more than {MAX_BODY_BYTES} bytes arrived"),
    };
    TikTokError::new(op, ErrorKind::Decode, "response_too_large")
        .with_status(status)
        .with_message(format!(
            "the response body is larger than the client's cap of {MAX_BODY_BYTES} bytes (1 MiB; {size}); TikTok's answers are a few KiB, so check what answers at the configured api_base"
        ))
}

/// An answer to an API call, read.
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, in seconds, when present.
    pub retry_after: Option<Duration>,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
}

/// Sends `req` (within the client's whole-request deadline) and reads the answer. A transport failure
/// and a body that cannot be read or is too large are errors; any status is a [`Reply`]. An error
/// while reading the body carries the response's `Retry-After`.
pub(crate) async fn send_and_read(
    op: &str,
    req: reqwest::RequestBuilder,
) -> Result<Reply, TikTokError> {
    let resp = req
        .send()
        .await
        .map_err(|e| TikTokError::transport(op, e))?;
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = read_capped(op, resp).await.map_err(|mut e| {
        e.retry_after = retry_after;
        e
    })?;
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// Reads `Retry-After` given in seconds (the HTTP-date form is not used by TikTok's API).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Reads `resp`'s body, at most [`MAX_BODY_BYTES`] of it; a longer body is an error and the rest is
/// never read (dropping the response closes the connection).
pub(crate) async fn read_capped(
    op: &str,
    mut resp: reqwest::Response,
) -> Result<Vec<u8>, TikTokError> {
    read_capped_to(op, &mut resp, MAX_BODY_BYTES).await
}

async fn read_capped_to(
    op: &str,
    resp: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, TikTokError> {
    let status = resp.status().as_u16();
    if let Some(n) = resp.content_length()
        && n > cap as u64
    {
        return Err(too_large(op, status, Some(n)));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| TikTokError::transport(op, e))?
    {
        if out.len() + chunk.len() > cap {
            return Err(too_large(op, status, None));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: Vec<u8>) -> reqwest::Response {
        reqwest::Response::from(axum::http::Response::new(body))
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole_and_a_longer_one_is_refused() {
        let ok = read_capped_to("x", &mut response(vec![b'a'; 100]), 100)
            .await
            .unwrap();
        assert_eq!(ok.len(), 100);
        let e = read_capped_to("creator info", &mut response(vec![b' '; 101]), 100)
            .await
            .unwrap_err();
        assert_eq!(e.code, "response_too_large");
        assert_eq!(e.http_status, Some(200));
        assert_eq!(e.disposition(), crate::tiktok::Disposition::Fail);
        let shown = e.to_string();
        assert!(
            shown.contains("creator info failed: response_too_large"),
            "{shown}"
        );
        assert!(shown.contains("1 MiB"), "{shown}");
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_the_date_form_ignored() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(v).unwrap(),
            );
            retry_after(&h)
        };
        assert_eq!(with(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
