//! A bounded EBML reader for the WebM/Matroska probe: element ids and sizes, the few small values
//! the probe needs read whole (integers, floats, strings cut at a few dozen bytes), everything else
//! seeked over. Nothing is allocated by what the file declares, so a file cannot make the probe hold
//! more than its buffer, whatever sizes it claims or really has.

use std::io::{BufReader, Read, Seek, SeekFrom};

use super::ProbeError;

/// The read buffer: a header or a few small values per refill, little read in vain when skipping.
const BUFFER: usize = 8 << 10;

pub(super) fn malformed(detail: impl Into<String>) -> ProbeError {
    ProbeError::Malformed {
        container: "WebM",
        detail: detail.into(),
    }
}

/// One element's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Element {
    /// The id with its length marker, as the specifications write it (`0x1A45DFA3`).
    pub id: u32,
    /// Where the header starts.
    pub start: u64,
    /// Where the data starts.
    pub data: u64,
    /// Bytes of data; `None` for the unknown size ("to the end of the parent") of live recordings.
    pub size: Option<u64>,
}

impl Element {
    /// Where the data ends, when the size is known.
    pub fn end(&self) -> Option<u64> {
        self.size.map(|s| self.data.saturating_add(s))
    }
}

/// Reads elements from a file of `len` bytes, keeping the position itself so that seeks within the
/// buffer cost nothing.
pub(super) struct Reader<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Reader<R> {
    pub fn new(mut inner: R, len: u64) -> Result<Self, ProbeError> {
        inner.seek(SeekFrom::Start(0))?;
        Ok(Self {
            r: BufReader::with_capacity(BUFFER, inner),
            pos: 0,
            len,
        })
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Moves to `to` (at most the end of the file).
    pub fn seek_to(&mut self, to: u64) -> Result<(), ProbeError> {
        let to = to.min(self.len);
        if to != self.pos {
            // Both within the file's length, which fits an i64 for any real file.
            let delta = i64::try_from(i128::from(to) - i128::from(self.pos))
                .map_err(|_| ProbeError::LimitExceeded("a seek beyond 8 EiB".into()))?;
            self.r.seek_relative(delta)?;
            self.pos = to;
        }
        Ok(())
    }

    fn bytes(&mut self, buf: &mut [u8], what: &str) -> Result<(), ProbeError> {
        if self.pos.saturating_add(buf.len() as u64) > self.len {
            return Err(ProbeError::Truncated(format!(
                "{what} at offset {} runs past the end of the file",
                self.pos
            )));
        }
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// One byte, named `what` in the error should the file end first.
    pub fn u8(&mut self, what: &str) -> Result<u8, ProbeError> {
        let mut b = [0u8];
        self.bytes(&mut b, what)?;
        Ok(b[0])
    }

    /// A variable-length integer (1 to 8 bytes, the length marker removed) and its length.
    pub fn vint(&mut self, what: &str) -> Result<(u64, u32), ProbeError> {
        let at = self.pos;
        let first = self.u8(what)?;
        if first == 0 {
            return Err(malformed(format!("invalid {what} at offset {at}")));
        }
        let len = first.leading_zeros() + 1;
        let mut v = u64::from(first) & (0xFF >> len);
        for _ in 1..len {
            v = (v << 8) | u64::from(self.u8(what)?);
        }
        Ok((v, len))
    }

    /// The header of the element at the current position, or `None` at the end of the file.
    pub fn next(&mut self) -> Result<Option<Element>, ProbeError> {
        if self.pos >= self.len {
            return Ok(None);
        }
        let start = self.pos;
        let first = self.u8("an element id")?;
        let id_len = first.leading_zeros() + 1;
        if id_len > 4 {
            return Err(malformed(format!(
                "invalid element id (first byte {first:#04x}) at offset {start}"
            )));
        }
        let mut id = u32::from(first);
        for _ in 1..id_len {
            id = (id << 8) | u32::from(self.u8("an element id")?);
        }
        let (size, n) = self.vint("an element size")?;
        // All data bits set: the reserved "unknown size".
        let unknown = size == (1u64 << (7 * n)) - 1;
        Ok(Some(Element {
            id,
            start,
            data: self.pos,
            size: (!unknown).then_some(size),
        }))
    }

    /// The element's size, which a value or a master element other than Segment and Cluster must
    /// have, and which must fit in the file.
    pub fn known_end(&self, e: &Element) -> Result<u64, ProbeError> {
        let end = e.end().ok_or_else(|| {
            malformed(format!(
                "element {:#x} at offset {} has an unknown size",
                e.id, e.start
            ))
        })?;
        if end > self.len {
            return Err(ProbeError::Truncated(format!(
                "element {:#x} at offset {} ends at {end}, past the end of the file",
                e.id, e.start
            )));
        }
        Ok(end)
    }

    /// An unsigned integer element (0 to 8 bytes).
    pub fn uint(&mut self, e: &Element) -> Result<u64, ProbeError> {
        let n = self.value_len(e, 8)?;
        let mut b = [0u8; 8];
        self.bytes(&mut b[8 - n..], "an integer")?;
        Ok(u64::from_be_bytes(b))
    }

    /// A float element (0, 4 or 8 bytes).
    pub fn float(&mut self, e: &Element) -> Result<f64, ProbeError> {
        match self.value_len(e, 8)? {
            0 => Ok(0.0),
            4 => {
                let mut b = [0u8; 4];
                self.bytes(&mut b, "a float")?;
                Ok(f32::from_be_bytes(b).into())
            }
            8 => {
                let mut b = [0u8; 8];
                self.bytes(&mut b, "a float")?;
                Ok(f64::from_be_bytes(b))
            }
            n => Err(malformed(format!(
                "a float of {n} bytes (element {:#x} at offset {})",
                e.id, e.start
            ))),
        }
    }

    /// A string element, of at most `max` bytes (trailing NULs dropped, invalid UTF-8 replaced).
    pub fn string(&mut self, e: &Element, max: usize) -> Result<String, ProbeError> {
        let n = self.value_len(e, max)?;
        let mut b = [0u8; 256];
        let b = &mut b[..n.min(256)];
        self.bytes(b, "a string")?;
        let s = String::from_utf8_lossy(b);
        Ok(s.trim_end_matches('\0').to_string())
    }

    /// Moves to the element's data and checks that its size is at most `max`.
    fn value_len(&mut self, e: &Element, max: usize) -> Result<usize, ProbeError> {
        let end = self.known_end(e)?;
        let size = end - e.data;
        if size > max as u64 {
            return Err(malformed(format!(
                "element {:#x} at offset {} holds {size} bytes, more than the {max} its kind has",
                e.id, e.start
            )));
        }
        self.seek_to(e.data)?;
        Ok(size as usize)
    }

    /// Calls `f` with each child of the master element `e` (which needs a known size), then moves
    /// to the end of the child; a child that overruns its parent is malformed.
    pub fn children(
        &mut self,
        e: &Element,
        mut f: impl FnMut(&mut Self, &Element) -> Result<(), ProbeError>,
    ) -> Result<(), ProbeError> {
        let end = self.known_end(e)?;
        self.seek_to(e.data)?;
        while self.pos < end {
            let c = self.next()?.ok_or_else(|| malformed("unreachable: end"))?;
            let c_end = self.known_end(&c)?;
            if c_end > end {
                return Err(malformed(format!(
                    "element {:#x} at offset {} overruns its parent {:#x}, which ends at {end}",
                    c.id, c.start, e.id
                )));
            }
            f(self, &c)?;
            self.seek_to(c_end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn reader(b: &[u8]) -> Reader<Cursor<Vec<u8>>> {
        Reader::new(Cursor::new(b.to_vec()), b.len() as u64).unwrap()
    }

    #[test]
    fn reads_ids_sizes_and_the_unknown_size() {
        // EBML header id, 1-byte size 3; then Cluster with the 8-byte unknown size; then 0xEC
        // (Void) with the 1-byte unknown size.
        let mut b = vec![0x1A, 0x45, 0xDF, 0xA3, 0x83, 1, 2, 3];
        b.extend([
            0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        b.extend([0xEC, 0xFF]);
        let mut r = reader(&b);
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.id, e.start, e.data, e.size), (0x1A45DFA3, 0, 5, Some(3)));
        r.seek_to(e.end().unwrap()).unwrap();
        let c = r.next().unwrap().unwrap();
        assert_eq!((c.id, c.start, c.data, c.size), (0x1F43B675, 8, 20, None));
        let v = r.next().unwrap().unwrap();
        assert_eq!((v.id, v.size), (0xEC, None));
        assert!(r.next().unwrap().is_none(), "the end of the file");
    }

    #[test]
    fn refuses_bad_ids_and_cut_headers() {
        let e = reader(&[0x08, 0x80]).next().unwrap_err();
        assert_eq!(e.code(), "malformed", "{e}");
        let e = reader(&[0x81, 0x00]).next().unwrap_err();
        assert_eq!(e.code(), "malformed", "a size of 0 bytes: {e}");
        let e = reader(&[0x1A, 0x45]).next().unwrap_err();
        assert_eq!(e.code(), "truncated", "{e}");
        let e = reader(&[0x81, 0x40]).next().unwrap_err();
        assert_eq!(e.code(), "truncated", "{e}");
    }

    #[test]
    fn reads_values_only_when_small() {
        // A uint 0x0102, a float32 1.5, a string "webm\0", a 9-byte "integer".
        let mut b = vec![0xD7, 0x82, 0x01, 0x02];
        b.extend([0x44, 0x89, 0x84]);
        b.extend(1.5f32.to_be_bytes());
        b.extend([0x42, 0x82, 0x85, b'w', b'e', b'b', b'm', 0]);
        b.extend([0xD7, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut r = reader(&b);
        let e = r.next().unwrap().unwrap();
        assert_eq!(r.uint(&e).unwrap(), 0x0102);
        let e = r.next().unwrap().unwrap();
        assert_eq!(r.float(&e).unwrap(), 1.5);
        let e = r.next().unwrap().unwrap();
        assert_eq!(r.string(&e, 64).unwrap(), "webm");
        let e = r.next().unwrap().unwrap();
        let err = r.uint(&e).unwrap_err();
        assert!(err.to_string().contains("9 bytes"), "{err}");
    }

    #[test]
    fn a_huge_declared_size_is_never_allocated_and_a_string_over_its_bound_refused() {
        // A string claiming 2^56 - 2 bytes in a 10-byte file, and one of 100 bytes really there.
        let mut b = vec![0x86, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, b'V'];
        let mut r = reader(&b);
        let e = r.next().unwrap().unwrap();
        assert_eq!(e.size, Some((1 << 56) - 2));
        assert_eq!(r.string(&e, 64).unwrap_err().code(), "truncated");
        b = vec![0x86, 0xE4];
        b.extend([b'x'; 100]);
        let mut r = reader(&b);
        let e = r.next().unwrap().unwrap();
        let err = r.string(&e, 64).unwrap_err();
        assert_eq!(err.code(), "malformed", "{err}");
        assert!(err.to_string().contains("100 bytes"), "{err}");
    }

    #[test]
    fn children_are_walked_and_an_overrun_refused() {
        // A master (0xE0) of 6 bytes: two uints; then one whose child claims 4 bytes of its 3.
        let mut b = vec![0xE0, 0x86, 0xB0, 0x81, 7, 0xBA, 0x81, 9];
        b.extend([0xE0, 0x83, 0xB0, 0x84, 1]);
        b.extend([0, 0, 0]);
        let mut r = reader(&b);
        let e = r.next().unwrap().unwrap();
        let mut seen = Vec::new();
        r.children(&e, |r, c| {
            seen.push((c.id, r.uint(c)?));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(0xB0, 7), (0xBA, 9)]);
        assert_eq!(r.pos(), 8);
        let e = r.next().unwrap().unwrap();
        let err = r.children(&e, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("overruns its parent"), "{err}");
    }
}
