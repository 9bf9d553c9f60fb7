//! The one error type of the TikTok client, and what each error means for a retry.
//!
//! TikTok reports failures in three shapes: the `{"data":…, "error":{code, message, log_id}}` envelope of
//! the posting endpoints (sometimes inside an HTTP 200), the flat `{"error", "error_description",
//! "log_id"}` body of the OAuth endpoints (also sometimes inside an HTTP 200), and bare HTTP statuses on
//! the upload host. All three become a [`TikTokError`], which keeps TikTok's own code, message and
//! `log_id` and knows its [`Disposition`]: the single place where "should we retry?" is decided
//! (`tiktok-api.md` sections 7 and 11).
//!
//! No variant ever holds a token or an `upload_url` (whose query string is a credential): transport errors
//! are stripped of their URL before they are stored.

use std::fmt;
use std::time::Duration;

pub use super::limits::{DAILY_WINDOW, RATE_WINDOW};

/// The code of a local read that failed for a momentary shortage (EMFILE, ENFILE, ENOMEM, EAGAIN).
pub const LOCAL_TRANSIENT: &str = "local_transient";

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A transient failure (5xx, `internal_error`, a dropped connection, a timeout): retry the same call
    /// with the caller's usual backoff.
    Retry,
    /// Retry, but not before this long (429 `rate_limit_exceeded`: the per-minute window).
    RetryAfter(Duration),
    /// The access token was refused (`access_token_invalid`): refresh it once, then replay the call.
    RefreshToken,
    /// A daily cap (`spam_risk_too_many_posts`, pending inbox shares, the client's active-user cap):
    /// the post must wait this long, not minutes.
    Defer(Duration),
    /// Permanent: retrying the same request will fail the same way.
    Fail,
}

impl Disposition {
    /// True for the dispositions that allow the same request again (possibly later).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retry | Self::RetryAfter(_) | Self::RefreshToken)
    }
}

/// Which of TikTok's response shapes (or which local failure) produced the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The `error` object of a posting endpoint, with a code other than `ok`.
    Api,
    /// The flat error of the OAuth token and revoke endpoints.
    OAuth,
    /// A bare HTTP status from the upload host (400, 403 expired, 404 unknown upload, 416, 5xx).
    Upload,
    /// The request never got a complete answer: connect failure, dropped connection, timeout.
    Transport {
        /// The request timed out (as opposed to failing to connect or being cut off).
        timeout: bool,
    },
    /// TikTok answered, but with a body we could not read.
    Decode,
    /// A local failure: reading the video file, a bad argument.
    Local,
}

/// An error from a TikTok call.
///
/// `Display` is one lowercase line that names the operation, TikTok's code and message, the HTTP status
/// and the `log_id` (which TikTok support asks for), e.g.
/// `video init failed: spam_risk_too_many_posts (HTTP 403): … [log_id 2022…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TikTokError {
    /// The operation that failed, e.g. `"video init"`, `"token refresh"`, `"upload chunk 3/7"`.
    pub op: String,
    /// Which shape the error came in.
    pub kind: ErrorKind,
    /// The HTTP status, when there was a response.
    pub http_status: Option<u16>,
    /// TikTok's code (`spam_risk_too_many_posts`, `invalid_grant`, …), or a local code such as
    /// `http_503`, `timeout`, `connection` or `decode`.
    pub code: String,
    /// TikTok's message or `error_description`, or a description of the local failure.
    pub message: String,
    /// TikTok's `log_id`, when it sent one.
    pub log_id: Option<String>,
    /// The `Retry-After` header of a 429, when present.
    pub retry_after: Option<Duration>,
}

/// Bytes kept of TikTok's `message`: it is stored on the post and logged, and a body may be 1 MiB.
const MAX_MESSAGE_BYTES: usize = 1024;
/// Bytes kept of TikTok's `code` and `log_id` (real ones are under 64).
const MAX_CODE_BYTES: usize = 128;

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let total = s.len();
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(&format!("…[cut: {total} bytes in all]"));
    }
    s
}

impl TikTokError {
    pub(crate) fn new(op: impl Into<String>, kind: ErrorKind, code: impl Into<String>) -> Self {
        Self {
            op: op.into(),
            kind,
            http_status: None,
            code: bounded(code.into(), MAX_CODE_BYTES),
            message: String::new(),
            log_id: None,
            retry_after: None,
        }
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = bounded(message.into(), MAX_MESSAGE_BYTES);
        self
    }

    pub(crate) fn with_log_id(mut self, log_id: Option<String>) -> Self {
        self.log_id = log_id
            .filter(|s| !s.is_empty())
            .map(|s| bounded(s, MAX_CODE_BYTES));
        self
    }

    /// A local failure (bad file, bad argument): never retried.
    pub(crate) fn local(op: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(op, ErrorKind::Local, "local").with_message(message)
    }

    /// A local failure reading the video: retried when the host was only short of descriptors or
    /// memory for a moment ([`LOCAL_TRANSIENT`]), never retried otherwise.
    pub(crate) fn local_io(
        op: impl Into<String>,
        error: &std::io::Error,
        message: impl Into<String>,
    ) -> Self {
        let code = if crate::health::is_transient(error) {
            LOCAL_TRANSIENT
        } else {
            "local"
        };
        Self::new(op, ErrorKind::Local, code).with_message(message)
    }

    /// A transport failure from reqwest, with the URL removed (an `upload_url` carries a credential).
    pub(crate) fn transport(op: impl Into<String>, err: reqwest::Error) -> Self {
        let timeout = err.is_timeout();
        let code = if timeout {
            "timeout"
        } else if err.is_connect() {
            "connect"
        } else if err.is_decode() {
            "decode"
        } else {
            "connection"
        };
        let kind = if err.is_decode() {
            ErrorKind::Decode
        } else {
            ErrorKind::Transport { timeout }
        };
        let err = err.without_url();
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self::new(op, kind, code).with_message(message)
    }

    /// Whether the failed call is known not to have created anything at TikTok: TikTok refused it
    /// (an error in a 2xx or 4xx answer, so no publish_id was issued) or it never reached TikTok. A
    /// 5xx, a timeout, a cut connection or an unreadable answer may hide a created post.
    pub fn never_created_a_post(&self) -> bool {
        match self.kind {
            ErrorKind::Api | ErrorKind::OAuth | ErrorKind::Upload => {
                self.http_status.is_some_and(|s| s < 500)
            }
            // Nothing reached TikTok.
            ErrorKind::Local => true,
            ErrorKind::Transport { .. } => self.code == "connect",
            // An answer we could not read may have carried a publish_id.
            ErrorKind::Decode => false,
        }
    }

    /// True when TikTok's code is `invalid_param` or `invalid_params` (the docs use both spellings).
    pub fn is_invalid_params(&self) -> bool {
        self.code == "invalid_param" || self.code == "invalid_params"
    }

    /// True when the upload host no longer knows the `upload_url` (expired after its hour, or
    /// unknown): TikTok never got the whole file, so the attempt is dead and only a new init helps.
    pub fn is_upload_url_gone(&self) -> bool {
        self.code == "upload_url_expired" || self.code == "upload_not_found"
    }

    /// What to do about this error: decided here, and only here, from TikTok's code and the HTTP status
    /// (`tiktok-api.md` sections 7 and 11).
    pub fn disposition(&self) -> Disposition {
        match self.kind {
            ErrorKind::Transport { .. } => return Disposition::Retry,
            ErrorKind::Local if self.code == LOCAL_TRANSIENT => return Disposition::Retry,
            ErrorKind::Local => return Disposition::Fail,
            ErrorKind::Decode => {
                // A half-read or garbled body from a gateway is transient; a well-formed 2xx body we do
                // not understand is a contract change, and retrying will not fix it.
                return match self.http_status {
                    Some(s) if s >= 500 => Disposition::Retry,
                    None => Disposition::Retry,
                    _ => Disposition::Fail,
                };
            }
            ErrorKind::OAuth => return oauth_disposition(&self.code, self.http_status),
            ErrorKind::Api | ErrorKind::Upload => {}
        }
        match self.code.as_str() {
            "rate_limit_exceeded" => {
                Disposition::RetryAfter(self.retry_after.unwrap_or(RATE_WINDOW))
            }
            "access_token_invalid" => Disposition::RefreshToken,
            "internal_error" => Disposition::Retry,
            "spam_risk_too_many_posts" => Disposition::Defer(DAILY_WINDOW),
            // Pending inbox shares clear as the creator acts on them, or after 24 h at the latest.
            "spam_risk_too_many_pending_share" => Disposition::Defer(Duration::from_secs(60 * 60)),
            // The app's own daily quota of active creators.
            "reached_active_user_cap" => Disposition::Defer(DAILY_WINDOW),
            "invalid_param"
            | "invalid_params"
            | "invalid_file_upload"
            | "scope_permission_missed"
            | "scope_not_authorized"
            | "app_version_check_failed"
            | "invalid_publish_id"
            | "token_not_authorized_for_specified_publish_id"
            | "publish_not_cancellable"
            | "spam_risk_user_banned_from_posting"
            | "unaudited_client_can_only_post_to_private_accounts"
            | "url_ownership_unverified"
            | "privacy_level_option_mismatch" => Disposition::Fail,
            _ => match self.http_status {
                Some(429) => Disposition::RetryAfter(self.retry_after.unwrap_or(RATE_WINDOW)),
                Some(401) => Disposition::RefreshToken,
                Some(s) if s >= 500 => Disposition::Retry,
                // 408 Request Timeout from a proxy.
                Some(408) => Disposition::Retry,
                _ => Disposition::Fail,
            },
        }
    }
}

fn oauth_disposition(code: &str, status: Option<u16>) -> Disposition {
    match code {
        "server_error" | "temporarily_unavailable" => Disposition::Retry,
        "rate_limit_exceeded" => Disposition::RetryAfter(RATE_WINDOW),
        // invalid_grant: the code or refresh token is expired, used, revoked or another client's. The user
        // must connect the account again; retrying cannot help.
        "invalid_grant"
        | "invalid_client"
        | "invalid_request"
        | "invalid_scope"
        | "access_denied"
        | "unauthorized_client"
        | "unsupported_grant_type"
        | "unsupported_response_type" => Disposition::Fail,
        _ => match status {
            Some(s) if s >= 500 => Disposition::Retry,
            Some(429) => Disposition::RetryAfter(RATE_WINDOW),
            _ => Disposition::Fail,
        },
    }
}

impl fmt::Display for TikTokError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.code)?;
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(log_id) = &self.log_id {
            write!(f, " [log_id {log_id}]")?;
        }
        if let Some(hint) = hint(&self.code) {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TikTokError {}

/// One sentence for the operator, for the codes where there is something to do.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "spam_risk_too_many_posts" => {
            "the creator reached TikTok's daily limit of API posts (about 15 per 24 h, shared by every app); the post waits for the window to pass"
        }
        "spam_risk_too_many_pending_share" => {
            "the creator has 5 drafts waiting in the TikTok inbox; they must post or delete some in the app"
        }
        "spam_risk_user_banned_from_posting" => "TikTok has banned this account from posting",
        "reached_active_user_cap" => {
            "the app reached its daily quota of posting users; ask TikTok for a higher quota in the developer portal"
        }
        "unaudited_client_can_only_post_to_private_accounts" => {
            "an unaudited app may post only to private accounts with privacy SELF_ONLY; make the account private or pass TikTok's audit"
        }
        "privacy_level_option_mismatch" => {
            "the privacy level is not one the creator allows now; choose one of the options creator_info lists"
        }
        "url_ownership_unverified" => {
            "PULL_FROM_URL needs the URL's domain or prefix verified in the TikTok developer portal"
        }
        "scope_not_authorized" => {
            "the app or the user lacks the endpoint's scope (video.publish, video.upload or video.list); reconnect the account and grant it"
        }
        "scope_permission_missed" => {
            "a field asked for needs a scope the user did not grant; ask only for the granted scopes' fields (UserField::allowed) or reconnect and grant it"
        }
        "invalid_grant" => {
            "the authorization was revoked or expired; connect the account again (tiktok-poster accounts connect NAME)"
        }
        "invalid_client" => {
            "TikTok refused the client key or secret; check [tiktok] client_key and client_secret"
        }
        "access_token_invalid" => "the access token is invalid or expired; it will be refreshed",
        "rate_limit_exceeded" => "TikTok's per-minute rate limit; the call waits for the window",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str, status: u16) -> TikTokError {
        TikTokError::new("video init", ErrorKind::Api, code).with_status(status)
    }

    #[test]
    fn every_documented_code_has_the_disposition_of_the_reference() {
        let cases = [
            ("invalid_param", 400, Disposition::Fail),
            ("invalid_params", 400, Disposition::Fail),
            ("invalid_file_upload", 400, Disposition::Fail),
            ("scope_permission_missed", 400, Disposition::Fail),
            ("app_version_check_failed", 400, Disposition::Fail),
            ("invalid_publish_id", 400, Disposition::Fail),
            (
                "token_not_authorized_for_specified_publish_id",
                400,
                Disposition::Fail,
            ),
            ("publish_not_cancellable", 400, Disposition::Fail),
            (
                "spam_risk_too_many_posts",
                403,
                Disposition::Defer(DAILY_WINDOW),
            ),
            (
                "spam_risk_too_many_posts",
                200,
                Disposition::Defer(DAILY_WINDOW),
            ),
            ("spam_risk_user_banned_from_posting", 403, Disposition::Fail),
            (
                "spam_risk_too_many_pending_share",
                403,
                Disposition::Defer(Duration::from_secs(3600)),
            ),
            (
                "reached_active_user_cap",
                200,
                Disposition::Defer(DAILY_WINDOW),
            ),
            (
                "unaudited_client_can_only_post_to_private_accounts",
                403,
                Disposition::Fail,
            ),
            ("url_ownership_unverified", 403, Disposition::Fail),
            ("privacy_level_option_mismatch", 403, Disposition::Fail),
            ("access_token_invalid", 401, Disposition::RefreshToken),
            ("scope_not_authorized", 401, Disposition::Fail),
            (
                "rate_limit_exceeded",
                429,
                Disposition::RetryAfter(RATE_WINDOW),
            ),
            ("internal_error", 500, Disposition::Retry),
            ("", 502, Disposition::Retry),
            ("some_new_code", 503, Disposition::Retry),
            ("some_new_code", 400, Disposition::Fail),
        ];
        for (code, status, want) in cases {
            assert_eq!(
                api(code, status).disposition(),
                want,
                "{code} at HTTP {status}"
            );
        }
    }

    #[test]
    fn a_retry_after_header_overrides_the_default_window() {
        let mut e = api("rate_limit_exceeded", 429);
        e.retry_after = Some(Duration::from_secs(7));
        assert_eq!(
            e.disposition(),
            Disposition::RetryAfter(Duration::from_secs(7))
        );
    }

    #[test]
    fn a_dead_upload_url_is_recognised_by_its_code() {
        for code in ["upload_url_expired", "upload_not_found"] {
            assert!(
                TikTokError::new("upload chunk 1/1", ErrorKind::Upload, code).is_upload_url_gone()
            );
        }
        assert!(
            !TikTokError::new("upload chunk 1/1", ErrorKind::Upload, "http_500")
                .is_upload_url_gone()
        );
    }

    #[test]
    fn oauth_errors_are_judged_by_their_error_field() {
        let e = |code: &str, status| {
            TikTokError::new("token refresh", ErrorKind::OAuth, code).with_status(status)
        };
        assert_eq!(e("invalid_grant", 200).disposition(), Disposition::Fail);
        assert_eq!(e("invalid_client", 400).disposition(), Disposition::Fail);
        assert_eq!(
            e("temporarily_unavailable", 200).disposition(),
            Disposition::Retry
        );
        assert_eq!(e("server_error", 500).disposition(), Disposition::Retry);
        assert_eq!(e("weird", 502).disposition(), Disposition::Retry);
    }

    #[test]
    fn a_huge_message_code_or_log_id_from_tiktok_is_kept_bounded() {
        let e = TikTokError::new("x", ErrorKind::Api, "c".repeat(1 << 20))
            .with_message("é".repeat(1 << 19))
            .with_log_id(Some("L".repeat(1 << 20)));
        assert!(e.code.len() < 200 && e.code.ends_with("[cut: 1048576 bytes in all]"));
        assert!(e.message.len() < 1100, "{}", e.message.len());
        assert!(e.log_id.clone().unwrap().len() < 200);
        assert!(e.to_string().len() < 2000);
    }

    #[test]
    fn transport_failures_retry_and_local_failures_do_not() {
        let t = TikTokError::new("upload", ErrorKind::Transport { timeout: true }, "timeout");
        assert_eq!(t.disposition(), Disposition::Retry);
        assert_eq!(
            TikTokError::local("upload", "no such file").disposition(),
            Disposition::Fail
        );
        let io = |n| std::io::Error::from_raw_os_error(n);
        // EMFILE: the host ran out of descriptors for a moment; ENOENT: the file is gone.
        assert_eq!(
            TikTokError::local_io("upload", &io(24), "x").disposition(),
            Disposition::Retry
        );
        assert_eq!(
            TikTokError::local_io("upload", &io(2), "x").disposition(),
            Disposition::Fail
        );
    }

    #[test]
    fn display_names_the_operation_code_status_log_id_and_a_fix() {
        let e = api("spam_risk_too_many_posts", 403)
            .with_message("too many posts")
            .with_log_id(Some("202210112248442CB9319E1FB30C1073F3".into()));
        let s = e.to_string();
        assert!(
            s.starts_with("video init failed: spam_risk_too_many_posts (HTTP 403): too many posts"),
            "{s}"
        );
        assert!(
            s.contains("[log_id 202210112248442CB9319E1FB30C1073F3]"),
            "{s}"
        );
        assert!(s.contains("daily limit"), "{s}");
    }

    #[test]
    fn both_spellings_of_invalid_params_are_recognised() {
        assert!(api("invalid_param", 400).is_invalid_params());
        assert!(api("invalid_params", 400).is_invalid_params());
        assert!(!api("internal_error", 500).is_invalid_params());
    }
}
