//! Test videos: the fixtures, and real MP4s of any size whose every MiB differs, so a reordered,
//! repeated or lost chunk changes the hash.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A fixture that passes both video policies; `make_video` grows it.
pub const GOOD_MP4: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/video/good.mp4");

/// The path of fixture `name` (the fixtures directory for "").
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/video")
        .join(name)
}

/// Writes a `size`-byte video at `path` and returns its sha256: a real MP4 (the `good.mp4` fixture,
/// 1.2 s of 720x1280) followed by a `free` box of filler, so the probe accepts it under the `api`
/// policy (TestApp's) at any size. The file is sparse where possible, with a distinct 4 KiB pattern
/// every MiB. The filler is seeded by the file name, so two test videos of one size still differ.
/// Below the fixture's own size (client-level upload tests only) the file is all filler.
pub fn make_video(path: &Path, size: u64) -> String {
    use std::io::{Seek, SeekFrom, Write};
    let good = std::fs::read(GOOD_MP4).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let head = good.len() as u64 + 16;
    let filler_from = if size >= head {
        f.write_all(&good).unwrap();
        // A 64-bit-size `free` box over the rest of the file.
        f.write_all(&1u32.to_be_bytes()).unwrap();
        f.write_all(b"free").unwrap();
        f.write_all(&(size - good.len() as u64).to_be_bytes())
            .unwrap();
        head
    } else {
        0
    };
    // Seeded by the file name, so two test videos of one size still differ.
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    let seed = u64::from_le_bytes(digest[..8].try_into().unwrap()) % 10_007;
    let mut at = filler_from;
    let mut n = 0u64;
    while at < size {
        let mut block: Vec<u8> = (0..4096u64)
            .map(|i| ((i * 31 + n * 7919 + seed) % 251) as u8)
            .collect();
        // The name's whole digest in every block: files of one size never collide (the pattern alone
        // repeats for seeds equal modulo 251).
        block[..32].copy_from_slice(&digest);
        let len = block.len().min((size - at) as usize);
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&block[..len]).unwrap();
        at += 1 << 20;
        n += 1;
    }
    f.sync_all().unwrap();
    drop(f);
    sha256_file(path)
}

/// sha256 of a file, hex; read in 1 MiB pieces so a large video is not held in memory.
pub fn sha256_file(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}
