//! Reading ISO BMFF (MP4/MOV) boxes from a file in place: a buffered reader that knows its position,
//! and box headers checked against the box that holds them. Nothing here keeps more than one buffer.

use std::io::{BufReader, Read};

use super::ProbeError;
use super::deadline::TimedFile;

/// Read buffer: big enough that a sample table streams in few reads, small enough not to matter.
const BUFFER: usize = 64 << 10;

pub(super) fn malformed(detail: impl Into<String>) -> ProbeError {
    ProbeError::Malformed {
        container: "MP4",
        detail: detail.into(),
    }
}

pub(super) fn fourcc(k: &[u8]) -> String {
    k.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// The file, read forward through one buffer; seeks inside the buffer keep it.
pub(super) struct Src {
    r: BufReader<TimedFile>,
    pos: u64,
    /// The file's length when the probe started.
    pub len: u64,
}

impl Src {
    /// `f` must be at offset 0.
    pub(super) fn new(f: TimedFile, len: u64) -> Self {
        Self {
            r: BufReader::with_capacity(BUFFER, f),
            pos: 0,
            len,
        }
    }

    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    pub(super) fn seek(&mut self, to: u64) -> Result<(), ProbeError> {
        let delta = i64::try_from(to)
            .ok()
            .zip(i64::try_from(self.pos).ok())
            .map(|(a, b)| a - b)
            .ok_or_else(|| malformed(format!("offset {to} is beyond any file")))?;
        self.r.seek_relative(delta)?;
        self.pos = to;
        Ok(())
    }

    pub(super) fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ProbeError> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    pub(super) fn u32(&mut self) -> Result<u32, ProbeError> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    pub(super) fn u64(&mut self) -> Result<u64, ProbeError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Appends the bytes `[from, to)` to `out` (the caller bounds the length).
    pub(super) fn copy(&mut self, from: u64, to: u64, out: &mut Vec<u8>) -> Result<(), ProbeError> {
        self.seek(from)?;
        let start = out.len();
        out.resize(start + (to - from) as usize, 0);
        self.read_exact(&mut out[start..])
    }
}

/// A box: its type, where it starts, where its body starts and where it ends.
pub(super) struct BoxHeader {
    pub kind: [u8; 4],
    pub start: u64,
    pub body: u64,
    pub end: u64,
}

impl BoxHeader {
    pub(super) fn len(&self) -> u64 {
        self.end - self.start
    }

    pub(super) fn name(&self) -> String {
        fourcc(&self.kind)
    }
}

/// Reads the header of the top-level box at `at`.
///
/// A size of 0 means "to the end of the file". ISO 14496-12 (4.2) allows it only for the last box,
/// and says it is normally used for media data: a writer that streams `mdat` out fills in its size
/// afterwards or leaves 0. A movie box (`moov`) or any other of unknown size means the writer never
/// came back to finish it, and whatever follows it in the file (it would be taken as part of it) is
/// unaccounted for; so only `mdat` may have size 0, anything else is malformed.
pub(super) fn top_header(src: &mut Src, at: u64) -> Result<BoxHeader, ProbeError> {
    let file_len = src.len;
    if file_len - at < 8 {
        return Err(ProbeError::Truncated(format!(
            "{} stray bytes after the last box at offset {at}",
            file_len - at
        )));
    }
    src.seek(at)?;
    let size32 = src.u32()? as u64;
    let mut kind = [0u8; 4];
    src.read_exact(&mut kind)?;
    let (size, header_len) = match size32 {
        0 if &kind == b"mdat" => (file_len - at, 8),
        0 => {
            return Err(malformed(format!(
                "box {:?} at offset {at} has size 0 (\"to the end of the file\"), which only a last media data box (mdat) may have; the file was not finished by its writer: export it again",
                fourcc(&kind)
            )));
        }
        1 => {
            if file_len - at < 16 {
                return Err(ProbeError::Truncated(format!(
                    "box header at offset {at} is cut off"
                )));
            }
            (src.u64()?, 16)
        }
        s => (s, 8),
    };
    if size < header_len {
        return Err(malformed(format!(
            "box {:?} at offset {at} declares {size} bytes, less than its own header",
            fourcc(&kind)
        )));
    }
    let end = at.checked_add(size).ok_or_else(|| {
        malformed(format!(
            "box {:?} at offset {at} has an impossible size",
            fourcc(&kind)
        ))
    })?;
    if end > file_len {
        return Err(ProbeError::Truncated(format!(
            "box {:?} at offset {at} needs {size} bytes but the file ends at {file_len}",
            fourcc(&kind)
        )));
    }
    Ok(BoxHeader {
        kind,
        start: at,
        body: at + header_len,
        end,
    })
}

/// Reads the header of the box at the current position inside `parent`, or `None` when fewer than
/// 8 bytes of the parent are left (padding, which QuickTime writers leave and readers skip).
pub(super) fn child_header(
    src: &mut Src,
    parent: &BoxHeader,
) -> Result<Option<BoxHeader>, ProbeError> {
    let at = src.pos();
    if parent.end - at < 8 {
        return Ok(None);
    }
    let size32 = src.u32()? as u64;
    let mut kind = [0u8; 4];
    src.read_exact(&mut kind)?;
    let inside = || {
        format!(
            "box {:?} at offset {at} in {:?}",
            fourcc(&kind),
            parent.name()
        )
    };
    let (size, header_len) = match size32 {
        0 => {
            return Err(malformed(format!(
                "{} has size 0, which only a top-level media data box may have",
                inside()
            )));
        }
        1 if parent.end - at >= 16 => (src.u64()?, 16),
        1 => return Err(malformed(format!("{} has a cut-off header", inside()))),
        s => (s, 8),
    };
    if size < header_len || size > parent.end - at {
        return Err(malformed(format!(
            "{} declares {size} bytes ({} are left in its parent)",
            inside(),
            parent.end - at
        )));
    }
    Ok(Some(BoxHeader {
        kind,
        start: at,
        body: at + header_len,
        end: at + size,
    }))
}
