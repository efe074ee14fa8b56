//! Just enough of the ZIP format for `.npz` files: a reader for stored and deflated
//! members (ZIP64 records included, as NumPy writes them) and a writer of stored or
//! deflated members. No encryption, no multi-disk archives.
//!
//! Errors are plain strings; the caller wraps them with the file name.

use std::collections::BTreeMap;
use std::io::{Read, Write};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
/// Deflate cannot expand data by more than about 1032:1 (a 258-byte match costs at
/// least 2 bits); a member that claims more is corrupt, and is rejected before any
/// inflating.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Room for the fixed overhead of a tiny deflate stream (block headers, the last
/// partial byte) on top of [`MAX_DEFLATE_RATIO`].
const DEFLATE_SLACK: u64 = 1024;

/// One member of an archive, decompressed and CRC-checked.
pub(crate) struct Member {
    pub name: String,
    pub data: Vec<u8>,
}

/// Little-endian reads with bounds checks.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }
    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!("truncated archive: {what} at byte {} needs {n} bytes", self.pos)),
        }
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn to_usize(v: u64, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} {v} does not fit in memory"))
}

/// Finds the end-of-central-directory record and returns (entries, cd offset, cd size).
fn find_central_directory(buf: &[u8]) -> Result<(u64, u64, u64), String> {
    if buf.len() < 22 {
        return Err(format!("not a zip archive: {} bytes is shorter than the end record", buf.len()));
    }
    // The record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
    let lowest = buf.len().saturating_sub(22 + 65535);
    let eocd = (lowest..=buf.len() - 22)
        .rev()
        .find(|&i| buf[i..i + 4] == EOCD_SIG.to_le_bytes())
        .ok_or("not a zip archive: no end-of-central-directory record")?;
    let mut c = Cursor::at(buf, eocd + 4);
    let disk = c.u16("disk number")?;
    let cd_disk = c.u16("central directory disk")?;
    let _entries_here = c.u16("entry count")?;
    let entries = c.u16("entry count")?;
    let cd_size = c.u32("central directory size")?;
    let cd_offset = c.u32("central directory offset")?;
    if (disk != 0 || cd_disk != 0) && disk != 0xFFFF && cd_disk != 0xFFFF {
        return Err("multi-disk archives are not supported".into());
    }
    if entries != 0xFFFF && cd_size != 0xFFFF_FFFF && cd_offset != 0xFFFF_FFFF {
        return Ok((entries as u64, cd_offset as u64, cd_size as u64));
    }
    // ZIP64: a locator sits just before the end record and points at the ZIP64 end record.
    let loc = eocd.checked_sub(20).ok_or("truncated archive: missing ZIP64 locator")?;
    let mut c = Cursor::at(buf, loc);
    if c.u32("ZIP64 locator")? != ZIP64_LOCATOR_SIG {
        return Err("corrupt archive: ZIP64 locator signature missing".into());
    }
    let _disk = c.u32("ZIP64 locator")?;
    let z64 = to_usize(c.u64("ZIP64 end record offset")?, "ZIP64 end record offset")?;
    let mut c = Cursor::at(buf, z64);
    if c.u32("ZIP64 end record")? != ZIP64_EOCD_SIG {
        return Err("corrupt archive: ZIP64 end record signature missing".into());
    }
    let _size = c.u64("ZIP64 end record")?;
    c.bytes(4 + 8, "ZIP64 end record")?; // versions, disk numbers
    let _entries_here = c.u64("ZIP64 entry count")?;
    let entries = c.u64("ZIP64 entry count")?;
    let cd_size = c.u64("ZIP64 central directory size")?;
    let cd_offset = c.u64("ZIP64 central directory offset")?;
    Ok((entries, cd_offset, cd_size))
}

/// Reads every member of an archive held in memory.
pub(crate) fn read_archive(buf: &[u8]) -> Result<Vec<Member>, String> {
    let (entries, cd_offset, _cd_size) = find_central_directory(buf)?;
    let mut c = Cursor::at(buf, to_usize(cd_offset, "central directory offset")?);
    // Each central entry takes at least 46 bytes, which bounds a corrupt count.
    if entries > (buf.len() / 46) as u64 {
        return Err(format!("corrupt archive: {entries} entries cannot fit in {} bytes", buf.len()));
    }
    let mut out: Vec<Member> = Vec::with_capacity(entries as usize);
    // The byte ranges (local header through data) of the members read so far: members
    // must not share bytes, or a small archive could name the same compressed data
    // many times over and inflate to a multiple of what any real archive holds.
    // Keyed by start: (end, index in `out`).
    let mut spans: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for i in 0..entries {
        if c.u32("central directory entry")? != CENTRAL_SIG {
            return Err(format!("corrupt archive: central directory entry {i} has a bad signature"));
        }
        c.bytes(4, "central directory entry")?; // versions
        let flags = c.u16("flags")?;
        let method = c.u16("compression method")?;
        c.bytes(4, "central directory entry")?; // time, date
        let crc = c.u32("crc")?;
        let mut csize = c.u32("compressed size")? as u64;
        let mut usize_ = c.u32("uncompressed size")? as u64;
        let name_len = c.u16("name length")? as usize;
        let extra_len = c.u16("extra length")? as usize;
        let comment_len = c.u16("comment length")? as usize;
        c.bytes(8, "central directory entry")?; // disk start, attributes
        let mut offset = c.u32("local header offset")? as u64;
        let name_bytes = c.bytes(name_len, "member name")?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = c.bytes(extra_len, "extra field")?;
        c.bytes(comment_len, "member comment")?;
        parse_zip64_extra(extra, &mut usize_, &mut csize, &mut offset).map_err(|e| format!("member {name:?}: {e}"))?;
        if flags & 1 != 0 {
            return Err(format!("member {name:?} is encrypted, which is not supported"));
        }
        let (raw, span) = locate_member(buf, offset, csize).map_err(|e| format!("member {name:?}: {e}"))?;
        // The spans so far are disjoint, so only the nearest one on each side can overlap.
        let before = spans.range(..=span.0).next_back().filter(|(_, &(end, _))| end > span.0);
        let after = spans.range(span.0..).next().filter(|(&start, _)| start < span.1);
        if let Some((_, &(_, other))) = before.or(after) {
            return Err(format!(
                "corrupt archive: member {name:?} (bytes {}..{}) overlaps member {:?}",
                span.0, span.1, out[other].name
            ));
        }
        spans.insert(span.0, (span.1, out.len()));
        let data = decode_member(raw, method, csize, usize_, crc).map_err(|e| format!("member {name:?}: {e}"))?;
        out.push(Member { name, data });
    }
    Ok(out)
}

/// Replaces the 0xFFFFFFFF placeholders by the values in the ZIP64 extra field.
fn parse_zip64_extra(extra: &[u8], usize_: &mut u64, csize: &mut u64, offset: &mut u64) -> Result<(), String> {
    let mut c = Cursor::at(extra, 0);
    while c.pos + 4 <= extra.len() {
        let id = c.u16("extra field id")?;
        let len = c.u16("extra field length")? as usize;
        let body = c.bytes(len, "extra field")?;
        if id != 0x0001 {
            continue;
        }
        let mut b = Cursor::at(body, 0);
        for v in [usize_, csize, offset] {
            if *v == 0xFFFF_FFFF {
                *v = b.u64("ZIP64 extra field")?;
            }
        }
        return Ok(());
    }
    Ok(())
}

/// The stored bytes of the member whose local header is at `offset`, and the byte
/// range from that header to the end of the data.
fn locate_member(buf: &[u8], offset: u64, csize: u64) -> Result<(&[u8], (usize, usize)), String> {
    let start = to_usize(offset, "local header offset")?;
    let mut c = Cursor::at(buf, start);
    if c.u32("local header")? != LOCAL_SIG {
        return Err(format!("bad local header signature at byte {offset}"));
    }
    c.bytes(22, "local header")?;
    let name_len = c.u16("local name length")? as usize;
    let extra_len = c.u16("local extra length")? as usize;
    c.bytes(name_len + extra_len, "local header")?;
    let raw = c.bytes(to_usize(csize, "compressed size")?, "member data")?;
    Ok((raw, (start, c.pos)))
}

/// Inflates (or copies) a member's stored bytes and checks its size and CRC.
fn decode_member(raw: &[u8], method: u16, csize: u64, usize_: u64, crc: u32) -> Result<Vec<u8>, String> {
    let data = match method {
        METHOD_STORED => {
            if csize != usize_ {
                return Err(format!("stored member has compressed size {csize} but size {usize_}"));
            }
            raw.to_vec()
        }
        METHOD_DEFLATED => {
            let most = csize.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(DEFLATE_SLACK);
            if usize_ > most {
                return Err(format!(
                    "declared size {usize_} cannot come from {csize} bytes of deflate data (at most {most})"
                ));
            }
            // Never trust the declared size for the allocation; read one byte more than
            // declared to notice a lie.
            let mut out = Vec::with_capacity(usize_.min(raw.len() as u64 * 16) as usize);
            flate2::read::DeflateDecoder::new(raw)
                .take(usize_.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| format!("corrupt deflate data: {e}"))?;
            if out.len() as u64 != usize_ {
                return Err(format!("inflated to {} bytes but the directory says {usize_}", out.len()));
            }
            out
        }
        m => return Err(format!("compression method {m} is not supported (only stored and deflated)")),
    };
    let got = crc32fast::hash(&data);
    if got != crc {
        return Err(format!("CRC mismatch (stored {crc:#010x}, computed {got:#010x})"));
    }
    Ok(data)
}

/// Writes members as a ZIP archive (stored or deflated), without ZIP64.
pub(crate) fn write_archive(members: &[(String, Vec<u8>)], deflate: bool) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    let too_big = |what: &str| format!("{what} exceeds 4 GiB, which needs ZIP64 (not written)");
    let u32_of = |v: usize, what: &str| u32::try_from(v).map_err(|_| too_big(what));
    for (name, data) in members {
        let crc = crc32fast::hash(data);
        let (method, payload) = if deflate {
            let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).map_err(|e| e.to_string())?;
            (METHOD_DEFLATED, enc.finish().map_err(|e| e.to_string())?)
        } else {
            (METHOD_STORED, data.clone())
        };
        let name_len = u16::try_from(name.len()).map_err(|_| format!("member name {name:?} is too long"))?;
        let offset = u32_of(out.len(), "archive")?;
        let csize = u32_of(payload.len(), "member")?;
        let usize_ = u32_of(data.len(), "member")?;
        // Bit 11: the name is UTF-8. Date 1980-01-01 00:00 keeps the output reproducible.
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0x0800u16.to_le_bytes());
            v.extend_from_slice(&method.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&0x0021u16.to_le_bytes());
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&csize.to_le_bytes());
            v.extend_from_slice(&usize_.to_le_bytes());
            v.extend_from_slice(&name_len.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&payload);

        central.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk start
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(members.len()).map_err(|_| "more than 65535 members needs ZIP64".to_string())?;
    let cd_offset = u32_of(out.len(), "archive")?;
    let cd_size = u32_of(central.len(), "central directory")?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&EOCD_SIG.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_stored_and_deflated() {
        let members = vec![("a.npy".to_string(), b"hello hello hello".to_vec()), ("b".to_string(), vec![])];
        for deflate in [false, true] {
            let z = write_archive(&members, deflate).unwrap();
            let back = read_archive(&z).unwrap();
            assert_eq!(back.len(), 2);
            assert_eq!(back[0].name, "a.npy");
            assert_eq!(back[0].data, b"hello hello hello");
            assert_eq!(back[1].data, b"");
        }
    }

    #[test]
    fn flipped_byte_fails_crc_or_inflate() {
        let members = vec![("a".to_string(), (0..200u8).collect::<Vec<u8>>())];
        for deflate in [false, true] {
            let mut z = write_archive(&members, deflate).unwrap();
            z[40] ^= 0x55; // inside the first member's data
            assert!(read_archive(&z).is_err());
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let members = vec![("a".to_string(), vec![7u8; 64])];
        let z = write_archive(&members, false).unwrap();
        for n in 0..z.len() {
            assert!(read_archive(&z[..n]).is_err(), "truncated to {n} bytes");
        }
    }
}
