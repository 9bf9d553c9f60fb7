//! What a stopped step means for the post: one pure function, [`decide`], from the post's facts and
//! the failure to a [`Verdict`] that `settle.rs` then applies to the ledger.
//!
//! Pure so that it can be tested row by row (the tests below), and so that the rule it encodes is in
//! one place: a post TikTok may already have (`publish_id`, or a pull init whose answer was lost) is
//! never failed and never initialised again on a guess; it ends `unconfirmed` instead. No I/O and no
//! clock: the caller passes `now` and the random draws ([`Roll`]), so deciding twice decides the same.

use std::time::Duration;

use crate::tiktok::Disposition;

/// What the verdict depends on about the post.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// The post has an attempt at TikTok (`publish_id`).
    pub has_publish_id: bool,
    /// An init was sent for the current attempt (`init_started_ms`), answered or not.
    pub init_started: bool,
    /// TikTok has every byte of the file (`upload_done`).
    pub upload_done: bool,
    /// The post is PULL_FROM_URL (TikTok fetches the video itself, so a lost init may go live).
    pub pull: bool,
    /// This claim's attempt, from 1.
    pub attempt: u32,
    /// `[worker] max_attempts`.
    pub max_attempts: u32,
}

impl Facts {
    /// Whether TikTok may have the post: an attempt, or at least an init sent.
    pub fn may_be_live(&self) -> bool {
        self.has_publish_id || self.init_started
    }
}

/// The clock and the random draws a verdict uses, taken by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roll {
    /// Now (ms since the epoch).
    pub now_ms: i64,
    /// `worker::backoff` for this attempt.
    pub backoff: Duration,
    /// `worker::backoff` for a first attempt (after a Redis failure, which is not the post's fault).
    pub first_backoff: Duration,
    /// Added to TikTok's `Retry-After` (spreads the posts a 429 stopped at once): in `0..2000` ms.
    pub retry_jitter_ms: i64,
    /// Added to a TikTok cap's wait (spreads the deferred posts): in `0..60_000` ms.
    pub defer_jitter_ms: i64,
}

/// Why a step stopped, as the verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// TikTok said no, or could not be reached.
    TikTok {
        /// What TikTok's error allows.
        disposition: Disposition,
        /// The request may have reached TikTok without its answer reaching us.
        transport: bool,
        /// The error code (TikTok's or a local one).
        code: String,
        /// TikTok's log id.
        log_id: Option<String>,
        /// The error in words.
        text: String,
    },
    /// The account must be connected again.
    Reauth {
        /// The account's name.
        account: String,
    },
    /// The account's tokens were sealed with another key than the configured one.
    WrongKey {
        /// The key id that sealed them.
        found: String,
        /// The configured key id.
        expected: String,
    },
    /// The token store failed for a moment.
    AccountTransient(String),
    /// The token store refused for good.
    Account(String),
    /// Redis failed.
    Redis,
    /// Our lease was lost: another worker may hold the post now.
    LeaseLost,
    /// Shutting down.
    Shutdown,
    /// The host was short of descriptors or memory for a moment.
    LocalLater(String),
}

/// What to do with the post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Touch nothing more; the claim ends.
    Done,
    /// Hand the post back at once (it resumes from its `publish_id` on the next claim).
    HandBack,
    /// Work on it again at `at`, noting `note` as the post's `error_message` when given.
    Retry {
        /// When (ms).
        at: i64,
        /// The error, in words.
        note: Option<String>,
    },
    /// TikTok's cap: `deferred` until `until`, and the attempt count starts again (a cap is not a
    /// failure of ours).
    Defer {
        /// When (ms).
        until: i64,
        /// The error code.
        code: String,
        /// The message (names the time).
        message: String,
        /// TikTok's log id.
        log_id: Option<String>,
    },
    /// The account cannot be used until the operator acts: `deferred`, looking again at `until`.
    WaitForAccount {
        /// When (ms).
        until: i64,
        /// The error code.
        code: &'static str,
        /// What the operator must do.
        message: String,
    },
    /// `failed`, for good.
    Fail {
        /// The error code.
        code: String,
        /// The message.
        message: String,
        /// TikTok's log id.
        log_id: Option<String>,
    },
    /// `unconfirmed`: TikTok may have published it; a person must check.
    Unconfirmed(String),
}

impl Verdict {
    /// True when applying the verdict starts the attempt count again (only TikTok's caps do).
    pub fn resets_attempts(&self) -> bool {
        matches!(self, Self::Defer { .. })
    }
}

/// How long a post waits for its account before looking again.
const ACCOUNT_WAIT_MS: i64 = 5 * 60_000;

/// Ends a post that may or may not be live: `unconfirmed` when TikTok may have it, else `failed`.
pub fn doubt(facts: &Facts, message: String) -> Verdict {
    if facts.may_be_live() {
        Verdict::Unconfirmed(message)
    } else {
        Verdict::Fail {
            code: "gave_up".into(),
            message,
            log_id: None,
        }
    }
}

/// A transient failure: again later (at `at`, or after the attempt's backoff), unless the attempts are
/// used up, then settled as [`doubt`] says.
fn retry_later(facts: &Facts, roll: &Roll, message: String, at: Option<i64>) -> Verdict {
    if facts.attempt >= facts.max_attempts {
        return doubt(
            facts,
            format!(
                "gave up after {} attempts; last error: {message}",
                facts.attempt
            ),
        );
    }
    Verdict::Retry {
        at: at.unwrap_or(roll.now_ms + roll.backoff.as_millis() as i64),
        note: Some(message),
    }
}

/// What `failure` means for a post with `facts`.
pub fn decide(facts: &Facts, failure: &Failure, roll: &Roll) -> Verdict {
    let now = roll.now_ms;
    match failure {
        Failure::LeaseLost => Verdict::Done,
        Failure::Shutdown => Verdict::HandBack,
        Failure::LocalLater(message) => retry_later(facts, roll, message.clone(), None),
        Failure::Redis => Verdict::Retry {
            at: now + roll.first_backoff.as_millis() as i64,
            note: None,
        },
        Failure::Reauth { account } => Verdict::WaitForAccount {
            until: now + ACCOUNT_WAIT_MS,
            code: "reauth_required",
            message: format!(
                "account {account:?} must be connected again (`tiktok-poster accounts connect {account}`); the post waits and resumes after that"
            ),
        },
        Failure::WrongKey { found, expected } => Verdict::WaitForAccount {
            until: now + ACCOUNT_WAIT_MS,
            code: "token_key_mismatch",
            message: format!(
                "the account's tokens were sealed with token key {found}, but the configured key is {expected}; configure the key that sealed them (tokens.encryption_key_file, or tokens.previous_key_file and `tiktok-poster keys rotate`) or connect the account again; the post waits"
            ),
        },
        Failure::AccountTransient(message) => retry_later(facts, roll, message.clone(), None),
        Failure::Account(message) => Verdict::Fail {
            code: "account".into(),
            message: message.clone(),
            log_id: None,
        },
        Failure::TikTok {
            disposition,
            transport,
            code,
            log_id,
            text,
        } => match *disposition {
            Disposition::Retry | Disposition::RefreshToken => {
                if !facts.has_publish_id && facts.pull && *transport {
                    // A pull init whose answer was lost may still go live.
                    return doubt(
                        facts,
                        format!(
                            "the init answer was lost ({text}); TikTok may be downloading the video"
                        ),
                    );
                }
                retry_later(facts, roll, text.clone(), None)
            }
            Disposition::RetryAfter(d) => {
                let at = now + d.as_millis() as i64 + roll.retry_jitter_ms;
                retry_later(facts, roll, text.clone(), Some(at))
            }
            Disposition::Defer(d) => {
                let until = now + d.as_millis() as i64 + roll.defer_jitter_ms;
                let message = format!(
                    "{text}; deferred until {}",
                    chrono::DateTime::from_timestamp_millis(until)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                );
                Verdict::Defer {
                    until,
                    code: code.clone(),
                    message,
                    log_id: log_id.clone(),
                }
            }
            Disposition::Fail => {
                if facts.has_publish_id && facts.upload_done {
                    return doubt(facts, format!("TikTok refused a follow-up call: {text}"));
                }
                Verdict::Fail {
                    code: code.clone(),
                    message: text.clone(),
                    log_id: log_id.clone(),
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn roll() -> Roll {
        Roll {
            now_ms: NOW,
            backoff: Duration::from_secs(8),
            first_backoff: Duration::from_secs(2),
            retry_jitter_ms: 700,
            defer_jitter_ms: 30_000,
        }
    }

    fn tiktok(disposition: Disposition, transport: bool, code: &str) -> Failure {
        Failure::TikTok {
            disposition,
            transport,
            code: code.into(),
            log_id: Some("log-1".into()),
            text: format!("TikTok said {code}"),
        }
    }

    /// A fresh FILE_UPLOAD post at attempt 2 of 8.
    const FILE: Facts = Facts {
        has_publish_id: false,
        init_started: false,
        upload_done: false,
        pull: false,
        attempt: 2,
        max_attempts: 8,
    };
    const PULL: Facts = Facts { pull: true, ..FILE };
    /// A pull post whose init was sent (`init_started_ms` is written before the call).
    const PULL_INIT_SENT: Facts = Facts {
        init_started: true,
        ..PULL
    };
    const SENT: Facts = Facts {
        has_publish_id: true,
        init_started: true,
        ..FILE
    };
    const UPLOADED: Facts = Facts {
        upload_done: true,
        ..SENT
    };
    const LAST: Facts = Facts { attempt: 8, ..FILE };
    const LAST_SENT: Facts = Facts { attempt: 8, ..SENT };

    /// A row: its name, the post, the failure, and what the verdict must satisfy.
    type Row = (&'static str, Facts, Failure, Box<dyn Fn(&Verdict) -> bool>);

    fn is_unconfirmed(v: &Verdict) -> bool {
        matches!(v, Verdict::Unconfirmed(_))
    }

    fn fail_code(v: &Verdict) -> Option<&str> {
        match v {
            Verdict::Fail { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn each_row() {
        let retry_at = |v: &Verdict| match v {
            Verdict::Retry { at, .. } => Some(*at),
            _ => None,
        };
        let transport = tiktok(Disposition::Retry, true, "connection");
        let http_503 = tiktok(Disposition::Retry, false, "http_503");
        let refresh = tiktok(Disposition::RefreshToken, false, "access_token_invalid");
        let fail = tiktok(Disposition::Fail, false, "invalid_params");
        let rows: Vec<Row> = vec![
            (
                "transport error on a pull init without publish_id: unconfirmed",
                PULL_INIT_SENT,
                transport.clone(),
                Box::new(|v| {
                    v == &Verdict::Unconfirmed(
                        "the init answer was lost (TikTok said connection); TikTok may be downloading the video".into(),
                    )
                }),
            ),
            (
                "... but on a pull init that was never sent and has no init mark: failed (gave_up)",
                Facts {
                    init_started: false,
                    ..PULL
                },
                transport.clone(),
                Box::new(|v| fail_code(v) == Some("gave_up")),
            ),
            (
                "transport error on a file post: retried after the backoff",
                FILE,
                transport.clone(),
                Box::new(move |v| retry_at(v) == Some(NOW + 8_000)),
            ),
            (
                "transport error on a pull post with a publish_id: retried",
                Facts {
                    has_publish_id: true,
                    ..PULL
                },
                transport.clone(),
                Box::new(move |v| retry_at(v) == Some(NOW + 8_000)),
            ),
            (
                "retryable at the last attempt with a publish_id: unconfirmed",
                LAST_SENT,
                http_503.clone(),
                Box::new(|v| {
                    v == &Verdict::Unconfirmed(
                        "gave up after 8 attempts; last error: TikTok said http_503".into(),
                    )
                }),
            ),
            (
                "retryable at the last attempt without a publish_id: failed",
                LAST,
                http_503.clone(),
                Box::new(|v| {
                    v == &Verdict::Fail {
                        code: "gave_up".into(),
                        message: "gave up after 8 attempts; last error: TikTok said http_503"
                            .into(),
                        log_id: None,
                    }
                }),
            ),
            (
                "a refused token after its one refresh: retried like any transient error",
                SENT,
                refresh,
                Box::new(|v| {
                    v == &Verdict::Retry {
                        at: NOW + 8_000,
                        note: Some("TikTok said access_token_invalid".into()),
                    }
                }),
            ),
            (
                "429: retried after TikTok's wait and the jitter",
                SENT,
                tiktok(
                    Disposition::RetryAfter(Duration::from_secs(30)),
                    false,
                    "rate_limit_exceeded",
                ),
                Box::new(move |v| retry_at(v) == Some(NOW + 30_000 + 700)),
            ),
            (
                "429 at the last attempt, with a publish_id: unconfirmed",
                LAST_SENT,
                tiktok(
                    Disposition::RetryAfter(Duration::from_secs(30)),
                    false,
                    "rate_limit_exceeded",
                ),
                Box::new(is_unconfirmed),
            ),
            (
                "Fail after upload_done: unconfirmed",
                UPLOADED,
                fail.clone(),
                Box::new(|v| {
                    v == &Verdict::Unconfirmed(
                        "TikTok refused a follow-up call: TikTok said invalid_params".into(),
                    )
                }),
            ),
            (
                "Fail with a publish_id but before the upload finished: failed with TikTok's code",
                SENT,
                fail.clone(),
                Box::new(|v| {
                    v == &Verdict::Fail {
                        code: "invalid_params".into(),
                        message: "TikTok said invalid_params".into(),
                        log_id: Some("log-1".into()),
                    }
                }),
            ),
            (
                "Fail on a fresh post: failed with TikTok's code",
                FILE,
                fail,
                Box::new(|v| fail_code(v) == Some("invalid_params")),
            ),
            (
                "spam_risk: deferred past the cap (which resets the attempts)",
                LAST_SENT,
                tiktok(
                    Disposition::Defer(Duration::from_secs(3600)),
                    false,
                    "spam_risk_too_many_posts",
                ),
                Box::new(|v| {
                    match v {
                    Verdict::Defer { until, code, message, log_id } => {
                        *until == NOW + 3_600_000 + 30_000
                            && code == "spam_risk_too_many_posts"
                            && message.starts_with("TikTok said spam_risk_too_many_posts; deferred until 1970-01-01T01:17:10")
                            && log_id.as_deref() == Some("log-1")
                            && v.resets_attempts()
                    }
                    _ => false,
                }
                }),
            ),
            (
                "reauth: waits for the account",
                SENT,
                Failure::Reauth {
                    account: "main".into(),
                },
                Box::new(|v| {
                    match v {
                    Verdict::WaitForAccount { until, code, message } => {
                        *until == NOW + 300_000
                            && *code == "reauth_required"
                            && message.starts_with("account \"main\" must be connected again (`tiktok-poster accounts connect main`)")
                            && !v.resets_attempts()
                    }
                    _ => false,
                }
                }),
            ),
            (
                "tokens sealed with another key: waits for the account",
                FILE,
                Failure::WrongKey {
                    found: "k1".into(),
                    expected: "k2".into(),
                },
                Box::new(|v| {
                    matches!(v, Verdict::WaitForAccount { code: "token_key_mismatch", message, .. }
                    if message.starts_with("the account's tokens were sealed with token key k1, but the configured key is k2;"))
                }),
            ),
            (
                "a transient token store error: retried",
                FILE,
                Failure::AccountTransient("redis down".into()),
                Box::new(move |v| retry_at(v) == Some(NOW + 8_000)),
            ),
            (
                "a transient token store error at the last attempt with a publish_id: unconfirmed",
                LAST_SENT,
                Failure::AccountTransient("redis down".into()),
                Box::new(is_unconfirmed),
            ),
            (
                "a permanent token store error: failed (account)",
                SENT,
                Failure::Account("no such account".into()),
                Box::new(|v| fail_code(v) == Some("account")),
            ),
            (
                "Redis: handed back after a first backoff, nothing noted",
                LAST_SENT,
                Failure::Redis,
                Box::new(|v| {
                    v == &Verdict::Retry {
                        at: NOW + 2_000,
                        note: None,
                    }
                }),
            ),
            (
                "lease lost: done",
                SENT,
                Failure::LeaseLost,
                Box::new(|v| v == &Verdict::Done),
            ),
            (
                "shutdown: handed back",
                SENT,
                Failure::Shutdown,
                Box::new(|v| v == &Verdict::HandBack),
            ),
            (
                "short of memory: retried later",
                FILE,
                Failure::LocalLater("EMFILE".into()),
                Box::new(|v| {
                    v == &Verdict::Retry {
                        at: NOW + 8_000,
                        note: Some("EMFILE".into()),
                    }
                }),
            ),
            (
                "short of memory at the last attempt, never sent: failed",
                LAST,
                Failure::LocalLater("EMFILE".into()),
                Box::new(|v| fail_code(v) == Some("gave_up")),
            ),
        ];
        for (name, facts, failure, ok) in rows {
            let v = decide(&facts, &failure, &roll());
            assert!(ok(&v), "{name}: {v:?}");
            // Pure: the same inputs give the same verdict.
            assert_eq!(v, decide(&facts, &failure, &roll()), "{name}");
        }
    }

    #[test]
    fn doubt_fails_only_what_tiktok_cannot_have() {
        assert_eq!(fail_code(&doubt(&FILE, "m".into())), Some("gave_up"));
        assert!(is_unconfirmed(&doubt(&SENT, "m".into())));
        let init_only = Facts {
            init_started: true,
            ..FILE
        };
        assert!(is_unconfirmed(&doubt(&init_only, "m".into())));
    }
}
