//! Which videos on TikTok's public list could be a post whose outcome is unknown (pure).
//!
//! A video is a candidate when it was created after our init (minus [`SKEW_MS`]: TikTok's clock and
//! ours differ, and `create_time` is whole seconds), its duration is within a second of the probe's,
//! its caption is the title's start (in `title` or `video_description`: which one TikTok uses is
//! unconfirmed), its shape matches the probe's (width and height in the same ratio, allowing a swap:
//! TikTok may serve a smaller rendition or rotate it), and no other post of ours has claimed it.

use crate::tiktok::Video;

/// How much earlier than our init a video may be stamped and still be ours.
pub(super) const SKEW_MS: i64 = 60_000;

/// How far a video's duration may be from the probe's (TikTok gives whole seconds).
const DURATION_SLACK_MS: i64 = 1_000;

/// How far apart two shapes' width-to-height ratios may be (2 %).
const RATIO_SLACK: f64 = 0.02;

/// What is known of the post being looked for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted<'a> {
    /// The post's title as submitted (empty when it has none).
    pub title: &'a str,
    /// When our init was sent (ms).
    pub init_ms: i64,
    /// The probe's duration (ms); `None` for a post that was never probed here (PULL_FROM_URL).
    pub duration_ms: Option<i64>,
    /// The probe's display size.
    pub size: Option<(u32, u32)>,
}

/// Whether `v` could be the post (the claim is checked apart, see [`candidates`]).
pub(super) fn fits(w: &Wanted, v: &Video) -> bool {
    if v.create_time.saturating_mul(1000) < w.init_ms - SKEW_MS {
        return false;
    }
    if let Some(ms) = w.duration_ms
        && (i64::from(v.duration) * 1000 - ms).abs() > DURATION_SLACK_MS
    {
        return false;
    }
    if let (Some((pw, ph)), true) = (w.size, v.width > 0 && v.height > 0)
        && pw > 0
        && ph > 0
    {
        let ratio = |a: u32, b: u32| f64::from(a) / f64::from(b);
        let ours = ratio(pw, ph);
        let close = |r: f64| (r - ours).abs() <= RATIO_SLACK * ours;
        if !close(ratio(v.width, v.height)) && !close(ratio(v.height, v.width)) {
            return false;
        }
    }
    if w.title.trim().is_empty() {
        // A post without a title matches only a video without a caption, and only when its duration
        // is known (else nothing but the time would tell them apart).
        return w.duration_ms.is_some()
            && v.title.trim().is_empty()
            && v.video_description.trim().is_empty();
    }
    v.caption_starts_with(w.title)
}

/// The videos of `listed` that could be post `me`: those that [`fits`] and that no other post claimed
/// (`claimed[i]` names the post holding `listed[i]`, if any). Each video once, in list order.
pub(super) fn candidates<'v>(
    w: &Wanted,
    listed: &'v [Video],
    claimed: &[Option<String>],
    me: &str,
) -> Vec<&'v Video> {
    let mut out: Vec<&Video> = Vec::new();
    for (i, v) in listed.iter().enumerate() {
        let other = claimed
            .get(i)
            .and_then(Option::as_deref)
            .is_some_and(|p| p != me);
        if !other && fits(w, v) && !out.iter().any(|o| o.id == v.id) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: i64 = 1_800_000_000_000;

    fn wanted() -> Wanted<'static> {
        Wanted {
            title: "Morning run #fitness",
            init_ms: INIT,
            duration_ms: Some(12_400),
            size: Some((1080, 1920)),
        }
    }

    fn video(id: u64) -> Video {
        Video {
            id,
            create_time: INIT / 1000 + 30,
            title: "Morning run #fitness".into(),
            duration: 12,
            width: 720,
            height: 1280,
            ..Video::default()
        }
    }

    #[test]
    fn a_video_like_the_post_fits() {
        assert!(fits(&wanted(), &video(1)));
        // The caption in the other field, the size swapped, a second off, stamped just before init.
        let v = Video {
            title: String::new(),
            video_description: "Morning run #fitness".into(),
            width: 1280,
            height: 720,
            duration: 13,
            create_time: INIT / 1000 - 50,
            ..video(1)
        };
        assert!(fits(&wanted(), &v));
    }

    #[test]
    fn each_rule_can_refuse() {
        let w = wanted();
        let early = Video {
            create_time: INIT / 1000 - 120,
            ..video(1)
        };
        assert!(!fits(&w, &early), "created before our init");
        let long = Video {
            duration: 14,
            ..video(1)
        };
        assert!(!fits(&w, &long), "more than a second longer");
        let short = Video {
            duration: 11,
            ..video(1)
        };
        assert!(!fits(&w, &short), "more than a second shorter");
        let square = Video {
            width: 1080,
            height: 1080,
            ..video(1)
        };
        assert!(!fits(&w, &square), "another shape");
        let other = Video {
            title: "Evening run".into(),
            ..video(1)
        };
        assert!(!fits(&w, &other), "another caption");
        let longer = Video {
            title: "Morning run #fitness and more".into(),
            ..video(1)
        };
        assert!(!fits(&w, &longer), "a caption is the title's start, whole");
    }

    #[test]
    fn a_long_title_matches_its_first_150_characters() {
        let title = "a".repeat(200);
        let w = Wanted {
            title: &title,
            ..wanted()
        };
        let v = Video {
            title: "a".repeat(150),
            ..video(1)
        };
        assert!(fits(&w, &v));
    }

    #[test]
    fn unknowns_are_not_checked_but_an_empty_title_needs_a_duration() {
        let w = Wanted {
            duration_ms: None,
            size: None,
            ..wanted()
        };
        let v = Video {
            duration: 99,
            width: 10,
            height: 10,
            ..video(1)
        };
        assert!(fits(&w, &v));
        let blank = Video {
            title: String::new(),
            ..video(1)
        };
        let untitled = Wanted {
            title: "",
            ..wanted()
        };
        assert!(fits(&untitled, &blank));
        assert!(!fits(&untitled, &video(1)), "a captioned video is not it");
        let no_duration = Wanted {
            duration_ms: None,
            ..untitled
        };
        assert!(!fits(&no_duration, &blank));
    }

    #[test]
    fn claimed_videos_are_skipped_and_each_counts_once() {
        let listed = vec![video(1), video(2), video(2), video(3)];
        let claimed = vec![
            None,
            Some("me".to_string()),
            None,
            Some("other".to_string()),
        ];
        let found: Vec<u64> = candidates(&wanted(), &listed, &claimed, "me")
            .iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(
            found,
            vec![1, 2],
            "3 is another post's; our own claim does not hide 2"
        );
    }
}
