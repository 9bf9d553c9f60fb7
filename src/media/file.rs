//! The video file on disk, as the daemon's own business: where a producer may point it
//! (`[video] allowed_dirs`, checked on the resolved path), which file it is (its [`FileIdentity`],
//! recorded at submission and compared before every chunk), and which read errors are only a
//! momentary shortage of the host's resources ([`crate::health::is_transient`], kept in `health`
//! because the TikTok client needs it too) and so are retried, never a reason to refuse the post.
//!
//! Nothing here knows TikTok, Redis or the ledger's field names beyond the text form of an identity.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The code of a video outside every allowed directory.
pub const OUTSIDE_CODE: &str = "video_outside_allowed_dirs";
/// The code of a file whose identity changed since it was submitted.
pub const CHANGED_CODE: &str = "video_changed";
/// The code of a file that became shorter since it was submitted (truncated during upload).
pub const TRUNCATED_CODE: &str = "video_truncated";

/// Which file a path named, and the state it was in: device and inode (the same file), size, and the
/// inode's change time. Any write, truncation, `chmod` or time-stamp change moves the change time,
/// and no user can set it back (unlike the modification time), so an equal identity means the bytes
/// are the ones that were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_ctime` in nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of a file from its metadata (`stat` or `fstat`).
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// The text kept on the post: `dev:ino:size:ctime_ns`.
    pub fn to_field(self) -> String {
        format!("{}:{}:{}:{}", self.dev, self.ino, self.size, self.ctime_ns)
    }

    /// Reads [`to_field`](Self::to_field)'s text back; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(':');
        let id = Self {
            dev: it.next()?.parse().ok()?,
            ino: it.next()?.parse().ok()?,
            size: it.next()?.parse().ok()?,
            ctime_ns: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(id)
    }

    /// `Ok` when `now` is the same file in the same state; otherwise the code ([`TRUNCATED_CODE`] when
    /// it got shorter, else [`CHANGED_CODE`]) and a sentence for the operator.
    pub fn compare(&self, now: &FileIdentity, path: &Path) -> Result<(), (&'static str, String)> {
        if now.dev != self.dev || now.ino != self.ino {
            return Err((
                CHANGED_CODE,
                format!(
                    "video {} is another file now than the one submitted (it was replaced); submit it again",
                    path.display()
                ),
            ));
        }
        if now.size < self.size {
            return Err((
                TRUNCATED_CODE,
                format!(
                    "video {} was truncated after it was submitted ({} bytes then, {} now); submit it again once it is complete",
                    path.display(),
                    self.size,
                    now.size
                ),
            ));
        }
        if now.size != self.size || now.ctime_ns != self.ctime_ns {
            return Err((
                CHANGED_CODE,
                format!(
                    "video {} was modified after it was submitted ({} bytes then, {} now, and its inode change time moved); submit it again",
                    path.display(),
                    self.size,
                    now.size
                ),
            ));
        }
        Ok(())
    }
}

/// The configured directories that exist, resolved (symlinks followed), and a warning for each that
/// does not resolve: a video there is refused until the directory exists.
pub fn resolve_dirs(dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut resolved = Vec::new();
    let mut warnings = Vec::new();
    for d in dirs {
        match std::fs::canonicalize(d) {
            Ok(r) if r.is_dir() => resolved.push(r),
            Ok(r) => warnings.push(format!(
                "video.allowed_dirs entry {} resolves to {}, which is not a directory; no video is accepted from it",
                d.display(),
                r.display()
            )),
            Err(e) => warnings.push(format!(
                "video.allowed_dirs entry {} cannot be resolved ({e}); no video is accepted from it until it exists",
                d.display()
            )),
        }
    }
    (resolved, warnings)
}

/// Why a video path is refused.
#[derive(Debug)]
pub enum PathRefused {
    /// The path cannot be resolved (missing, unreadable directory, or a transient shortage).
    Unresolvable(io::Error),
    /// The resolved path lies outside every allowed directory.
    Outside(String),
}

/// Resolves `path` (symlinks and `..` followed) and checks it lies inside one of `dirs` (the
/// configured entries, resolved again now); returns the resolved path.
pub fn check_allowed(path: &Path, dirs: &[PathBuf]) -> Result<PathBuf, PathRefused> {
    let resolved = std::fs::canonicalize(path).map_err(PathRefused::Unresolvable)?;
    let (allowed, _) = resolve_dirs(dirs);
    if allowed.iter().any(|d| resolved.starts_with(d)) {
        return Ok(resolved);
    }
    let list = dirs
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    Err(PathRefused::Outside(format!(
        "[{OUTSIDE_CODE}] video {} resolves to {}, which is outside every directory of `video.allowed_dirs` ([{list}]); move the file into one of them, or add its directory to `video.allowed_dirs` in the config (TIKTOK_POSTER__VIDEO__ALLOWED_DIRS)",
        path.display(),
        resolved.display()
    )))
}

/// [`check_allowed`] on a blocking thread (resolving may wait on a slow file system).
pub async fn check_allowed_async(path: &Path, dirs: &[PathBuf]) -> Result<PathBuf, PathRefused> {
    let (path, dirs) = (path.to_path_buf(), dirs.to_vec());
    tokio::task::spawn_blocking(move || check_allowed(&path, &dirs))
        .await
        .unwrap_or_else(|e| Err(PathRefused::Unresolvable(io::Error::other(e.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_its_text_form_and_tells_each_change() {
        let a = FileIdentity {
            dev: 2049,
            ino: 77,
            size: 1000,
            ctime_ns: 1_700_000_000_123_456_789,
        };
        assert_eq!(FileIdentity::parse(&a.to_field()), Some(a));
        assert_eq!(FileIdentity::parse("1:2:3"), None);
        assert_eq!(FileIdentity::parse("1:2:3:4:5"), None);
        let p = Path::new("/srv/videos/a.mp4");
        assert!(a.compare(&a, p).is_ok());
        let moved = FileIdentity { ino: 78, ..a };
        assert_eq!(a.compare(&moved, p).unwrap_err().0, CHANGED_CODE);
        let touched = FileIdentity {
            ctime_ns: a.ctime_ns + 1,
            ..a
        };
        assert_eq!(a.compare(&touched, p).unwrap_err().0, CHANGED_CODE);
        let shorter = FileIdentity { size: 10, ..a };
        assert_eq!(a.compare(&shorter, p).unwrap_err().0, TRUNCATED_CODE);
    }

    #[test]
    fn paths_are_checked_after_resolution() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("in");
        let outside = root.path().join("out");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("a.mp4"), b"x").unwrap();
        std::fs::write(outside.join("b.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.join("b.mp4"), inside.join("link.mp4")).unwrap();
        let dirs = vec![inside.clone(), root.path().join("missing")];
        assert!(check_allowed(&inside.join("a.mp4"), &dirs).is_ok());
        for bad in [
            outside.join("b.mp4"),
            inside.join("link.mp4"),
            inside.join("../out/b.mp4"),
        ] {
            match check_allowed(&bad, &dirs) {
                Err(PathRefused::Outside(m)) => assert!(m.contains(OUTSIDE_CODE), "{m}"),
                other => panic!("{} was {other:?}", bad.display()),
            }
        }
        // A directory named like an allowed one plus a suffix is not inside it.
        let sibling = root.path().join("in2");
        std::fs::create_dir_all(&sibling).unwrap();
        std::fs::write(sibling.join("c.mp4"), b"x").unwrap();
        assert!(matches!(
            check_allowed(&sibling.join("c.mp4"), &dirs),
            Err(PathRefused::Outside(_))
        ));
        let (resolved, warnings) = resolve_dirs(&dirs);
        assert_eq!(resolved, vec![std::fs::canonicalize(&inside).unwrap()]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("missing"), "{warnings:?}");
    }
}
