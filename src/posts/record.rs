//! A post as stored: one Redis hash, read into [`PostRecord`] and written through [`Field`].
//!
//! The field names are a public contract (producers and operators read the hash), so they live in one
//! table here and nowhere else: a reader asks `post.publish_id()`, a writer names `Field::PublishId`,
//! and a misspelt field is a compile error instead of a field nobody reads. The hash is kept whole
//! ([`PostRecord::from_hash`]), so a field this version does not know (written by a producer's
//! `extra`, or by a newer daemon) is never lost by a read–modify–write.

use std::collections::HashMap;

use super::State;
use super::submission::{self, Submission, parse_fields};

/// Declares the fields: the [`Field`] enum with the stored names, and one named reader per field on
/// [`PostRecord`] (`text`: `Option<&str>`, empty is absent; `int`: `i64`, 0 when absent; `flag`: true
/// for `1`; `raw`: no reader, see [`PostRecord::current`]).
macro_rules! post_fields {
    ($( $(#[$doc:meta])* $variant:ident => $name:ident : $kind:ident ),* $(,)?) => {
        /// A field of the post hash, as stored.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field {
            $( $(#[$doc])* $variant, )*
        }

        impl Field {
            /// Every field this version reads or writes.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            /// The name in the hash.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Field::$variant => stringify!($name), )*
                }
            }
        }

        impl PostRecord {
            $( post_fields!(@get $(#[$doc])* $variant, $name, $kind); )*
        }
    };
    (@get $(#[$doc:meta])* $variant:ident, $name:ident, text) => {
        $(#[$doc])*
        pub fn $name(&self) -> Option<&str> {
            self.text(Field::$variant)
        }
    };
    (@get $(#[$doc:meta])* $variant:ident, $name:ident, int) => {
        $(#[$doc])*
        pub fn $name(&self) -> i64 {
            self.int(Field::$variant)
        }
    };
    (@get $(#[$doc:meta])* $variant:ident, $name:ident, raw) => {};
    (@get $(#[$doc:meta])* $variant:ident, $name:ident, flag) => {
        $(#[$doc])*
        pub fn $name(&self) -> bool {
            self.text(Field::$variant) == Some("1")
        }
    };
}

post_fields! {
    /// The post's id (also in the key).
    Id => id: text,
    /// The account the post goes to (a submission field).
    Account => account: text,
    /// The submitted file's path (a submission field; FILE_UPLOAD).
    Video => video: text,
    /// The submitted URL (a submission field; PULL_FROM_URL).
    VideoUrl => video_url: text,
    /// The requested privacy level (a submission field).
    PrivacyLevel => privacy_level: text,
    /// `true` for an inbox draft (a submission field).
    Draft => draft: text,
    /// The current state; read typed with [`PostRecord::current`].
    State => state: raw,
    /// When the post was recorded (ms).
    CreatedMs => created_ms: int,
    /// When the post last changed state (ms).
    UpdatedMs => updated_ms: int,
    /// When the post is due (ms).
    DueMs => due_ms: int,
    /// `next` when the post asked for its account's next free calendar slot (a submission field).
    Slot => slot: text,
    /// The calendar slot the post got (RFC 3339 with the zone's offset); a retry does not change it.
    SlotAt => slot_at: text,
    /// The instant the post holds in its account's calendar (ms): `publish_at` or the slot; moved only
    /// by `calendar reslot` and a resume.
    HeldMs => held_ms: int,
    /// Times the post was moved (the feed's SEQUENCE).
    Sequence => sequence: int,
    /// When a deferred post may go again (ms).
    DeferredUntilMs => deferred_until_ms: int,
    /// Attempts of the current run (reset by a cap, and by `retry`).
    Attempts => attempts: int,
    /// Claims of the post by a worker (kept by the job store; a post lost too often is settled).
    Claims => claims: int,
    /// The claim token of the worker holding the post (kept by the job store; internal).
    LeaseOwner => lease_owner: text,
    /// When a worker first claimed the post (ms); its lag is this minus `due_ms`.
    FirstClaimMs => first_claim_ms: int,
    /// When the current attempt's init was sent (ms): set before the call, so a lost answer is known.
    InitStartedMs => init_started_ms: int,
    /// TikTok's id of the current attempt.
    PublishId => publish_id: text,
    /// The ids of earlier attempts TikTok confirmed cannot be published, comma-separated.
    PreviousPublishIds => previous_publish_ids: text,
    /// `1` once TikTok has every byte of the file (`0` after init).
    UploadDone => upload_done: flag,
    /// The upload URL, sealed with the token key (internal).
    UploadUrlSealed => upload_url_sealed: text,
    /// When the upload URL stops being used (ms).
    UploadExpiresMs => upload_expires_ms: int,
    /// When the upload finished (ms).
    UploadedMs => uploaded_ms: int,
    /// When TikTok published the post or delivered the draft (ms).
    PublishedMs => published_ms: int,
    /// The public post id (after moderation).
    PostId => post_id: text,
    /// How often a published post was asked for its public id.
    PostIdChecks => post_id_checks: int,
    /// The public URL.
    Url => url: text,
    /// Why the post failed, was deferred or is unconfirmed (a code).
    ErrorCode => error_code: text,
    /// The same, in words.
    ErrorMessage => error_message: text,
    /// TikTok's log id of the failing call.
    LogId => log_id: text,
    /// Probes started and not finished (see `worker::probe_guard`).
    ProbesUnfinished => probes_unfinished: int,
    /// The submitted file's size at submission (bytes).
    VideoSize => video_size: int,
    /// The submitted file's modification time at submission (ms).
    VideoMtimeMs => video_mtime_ms: int,
    /// The submitted file's identity at submission (device, inode, …).
    VideoIdentity => video_identity: text,
    /// The video's duration as probed before its upload (ms); matched against TikTok's video list.
    DurationMs => duration_ms: int,
    /// The video's display width as probed before its upload (pixels).
    VideoWidth => video_width: int,
    /// The video's display height as probed before its upload (pixels).
    VideoHeight => video_height: int,
    /// Why the post ended `unconfirmed` (its first `error_message`, kept while the looks add to it).
    UnconfirmedReason => unconfirmed_reason: text,
    /// Looks for an `unconfirmed` post on TikTok's video list so far.
    ConfirmLooks => confirm_looks: int,
    /// When the daemon stops looking for an `unconfirmed` post on the video list (ms).
    ConfirmUntilMs => confirm_until_ms: int,
    /// The look-alike videos of an `unconfirmed` post (comma-separated TikTok ids).
    Candidates => candidates: text,
    /// How the post's public id was found: `video_list` when the list lookup confirmed it.
    ConfirmedBy => confirmed_by: text,
    /// Views at the last stats read.
    ViewCount => view_count: text,
    /// Likes at the last stats read.
    LikeCount => like_count: text,
    /// Comments at the last stats read.
    CommentCount => comment_count: text,
    /// Shares at the last stats read.
    ShareCount => share_count: text,
    /// When the stats were last read (ms).
    StatsReadMs => stats_read_ms: int,
    /// Which read that was: `1h`, `1d` or `7d` after publishing.
    StatsRead => stats_read: text,
    /// Stats reads done (or given up) so far.
    StatsReads => stats_reads: int,
    /// Failed tries of the current stats read.
    StatsTries => stats_tries: int,
}

/// A post as stored.
#[derive(Debug, Clone, Default)]
pub struct PostRecord {
    /// Every field of the hash, known or not (kept so nothing a producer stored is lost).
    pub fields: HashMap<String, String>,
}

impl PostRecord {
    /// A record from the hash as read.
    pub fn from_hash(fields: HashMap<String, String>) -> Self {
        Self { fields }
    }

    /// A field, if present and non-empty.
    pub fn text(&self, f: Field) -> Option<&str> {
        self.fields
            .get(f.as_str())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether a field is present and non-empty.
    pub fn has(&self, f: Field) -> bool {
        self.text(f).is_some()
    }

    /// A numeric field, 0 when absent or unreadable.
    pub fn int(&self, f: Field) -> i64 {
        self.text(f).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Records a value the worker has just written to the ledger, so later steps of the same claim
    /// see it without reading the hash again.
    pub fn note(&mut self, f: Field, value: impl Into<String>) {
        self.fields.insert(f.as_str().to_string(), value.into());
    }

    /// The state; `None` when missing or not a state this version knows.
    pub fn current(&self) -> Option<State> {
        self.text(Field::State).and_then(State::parse)
    }

    /// The state as stored (empty when missing), for display.
    pub fn state_name(&self) -> &str {
        self.fields
            .get(Field::State.as_str())
            .map_or("", String::as_str)
    }

    /// The submission the post was created from.
    pub fn submission(&self) -> Result<Submission, String> {
        let fields: Vec<(String, String)> = submission::FIELDS
            .iter()
            .filter_map(|k| self.fields.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        parse_fields(&fields)
    }

    /// The fields a producer reads, without internal ones (lease owner, sealed upload URL).
    pub fn public_fields(&self) -> Vec<(&str, &str)> {
        const INTERNAL: [Field; 3] = [Field::LeaseOwner, Field::UploadUrlSealed, Field::Claims];
        let mut v: Vec<(&str, &str)> = self
            .fields
            .iter()
            .filter(|(k, _)| !INTERNAL.iter().any(|f| f.as_str() == k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        v.sort();
        v
    }
}

/// Fields to write, typed: `[(Field::PublishId, id)]`.
pub type Fields = [(Field, String)];

/// The fields as the scripts take them.
pub(super) fn names(fields: &Fields) -> impl Iterator<Item = (&'static str, &str)> {
    fields.iter().map(|(f, v)| (f.as_str(), v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_contract() {
        let names: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
        for expected in [
            "publish_id",
            "attempts",
            "claims",
            "due_ms",
            "deferred_until_ms",
            "init_started_ms",
            "upload_done",
            "upload_url_sealed",
            "upload_expires_ms",
            "uploaded_ms",
            "published_ms",
            "post_id",
            "url",
            "error_code",
            "error_message",
            "log_id",
            "previous_publish_ids",
            "probes_unfinished",
            "post_id_checks",
            "first_claim_ms",
            "lease_owner",
            "updated_ms",
            "video_size",
            "video_mtime_ms",
            "video_identity",
        ] {
            assert!(names.contains(&expected), "{expected}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        // The submission fields a reader here names are the submission's own.
        for f in [
            Field::Account,
            Field::Video,
            Field::VideoUrl,
            Field::PrivacyLevel,
            Field::Draft,
        ] {
            assert!(submission::FIELDS.contains(&f.as_str()), "{f:?}");
        }
    }

    #[test]
    fn typed_reads_and_unknown_fields_kept() {
        let hash: HashMap<String, String> = [
            ("state", "processing"),
            ("attempts", "3"),
            ("upload_done", "1"),
            ("publish_id", ""),
            ("entry_id", "1-0"),
            ("due_ms", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut p = PostRecord::from_hash(hash);
        assert_eq!(p.current(), Some(State::Processing));
        assert_eq!(p.attempts(), 3);
        assert!(p.upload_done());
        assert_eq!(p.publish_id(), None, "empty is absent");
        assert_eq!(p.due_ms(), 0, "unreadable is 0");
        assert_eq!(p.fields.get("entry_id").map(String::as_str), Some("1-0"));
        p.note(Field::PublishId, "p-1");
        assert_eq!(p.publish_id(), Some("p-1"));
        assert_eq!(p.fields.len(), 6);
        let public: Vec<&str> = p.public_fields().iter().map(|(k, _)| *k).collect();
        assert!(public.contains(&"entry_id"));
    }
}
