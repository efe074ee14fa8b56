//! The IDX format of MNIST and Fashion-MNIST: a 4-byte magic (two zero bytes, a type
//! code, the number of dims), the dims as big-endian `u32`s, then the elements,
//! big-endian, row-major. Files may be gzip-compressed (detected by the gzip magic,
//! not the file name).
//!
//! | code | element | tensor dtype |
//! |---|---|---|
//! | `0x08` | u8 | `U8` |
//! | `0x09` | i8 | `I32` (widened) |
//! | `0x0B` | i16 | `I32` (widened) |
//! | `0x0C` | i32 | `I32` |
//! | `0x0D` | f32 | `F32` |
//! | `0x0E` | f64 | `F64` |
//!
//! ```
//! use data::idx::idx_from_bytes;
//! use tensor_core::DType;
//!
//! // A 2x3 u8 array: magic 0x00000803, dims 2 and 3, then six bytes.
//! let mut bytes = vec![0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3];
//! bytes.extend_from_slice(&[1, 2, 3, 4, 5, 255]);
//! let t = idx_from_bytes(&bytes, "tiny.idx")?;
//! assert_eq!((t.dims(), t.dtype()), (&[2usize, 3][..], DType::U8));
//! assert_eq!(t.to_vec::<u8>()?, vec![1, 2, 3, 4, 5, 255]);
//! # Ok::<(), tensor_core::Error>(())
//! ```

use std::io::Read;
use std::path::Path;

use tensor_core::HostBuffer;
use tensor_core::{Error, Result, Tensor};

use crate::npy::checked_numel;

fn format_err(name: &str, msg: impl Into<String>) -> Error {
    Error::Format { path: name.to_string(), msg: msg.into() }
}

/// Reads an IDX file (plain or gzip-compressed) into a CPU tensor.
///
/// ```no_run
/// let images = data::idx::read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")?;
/// assert_eq!(images.dims(), &[10000, 28, 28]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
    idx_from_bytes(&bytes, &path.display().to_string())
}

/// Parses the bytes of an IDX file, gunzipping first when they start with the gzip
/// magic; `name` is used in error messages.
pub fn idx_from_bytes(bytes: &[u8], name: &str) -> Result<Tensor> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return parse(&gunzip(bytes, name)?, name);
    }
    parse(bytes, name)
}

/// Gzip cannot expand data by more than about 1032:1 (deflate's limit); a header
/// that declares more data than that is rejected before inflating it.
const MAX_GZIP_RATIO: usize = 1032;

/// Inflates a gzipped IDX file, reading no more than its header declares (plus one
/// byte, to notice trailing data), so a corrupt size cannot make it allocate more
/// than the stream really holds.
fn gunzip(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let corrupt = |e: std::io::Error| format_err(name, format!("corrupt gzip stream: {e}"));
    let mut dec = flate2::read::MultiGzDecoder::new(bytes);
    // The magic, then the dims: at most 4 + 4 * 255 bytes.
    let mut raw = Vec::new();
    (&mut dec).take(4).read_to_end(&mut raw).map_err(corrupt)?;
    if raw.len() == 4 {
        let rank = raw[3] as usize;
        (&mut dec).take(4 * rank as u64).read_to_end(&mut raw).map_err(corrupt)?;
    }
    let Ok(layout) = header(&raw, name) else {
        // Not even a header: `parse` says what is wrong with it.
        return Ok(raw);
    };
    let most = bytes.len().saturating_mul(MAX_GZIP_RATIO);
    if layout.nbytes > most {
        return Err(format_err(
            name,
            format!(
                "corrupt: dims {:?} need {} data bytes, more than {} gzipped bytes can hold",
                layout.dims,
                layout.nbytes,
                bytes.len()
            ),
        ));
    }
    dec.take(layout.nbytes as u64 + 1).read_to_end(&mut raw).map_err(corrupt)?;
    Ok(raw)
}

/// What an IDX header declares.
struct Header {
    code: u8,
    dims: Vec<usize>,
    /// The header's length in bytes.
    len: usize,
    /// The data's length in bytes.
    nbytes: usize,
}

/// Parses and checks the magic and dims (not the data).
fn header(b: &[u8], name: &str) -> Result<Header> {
    if b.len() < 4 {
        return Err(format_err(name, format!("truncated: {} bytes is shorter than the 4-byte magic", b.len())));
    }
    if b[0] != 0 || b[1] != 0 {
        return Err(format_err(
            name,
            format!(
                "not an IDX file: magic {:02x}{:02x}{:02x}{:02x} does not start with two zero bytes",
                b[0], b[1], b[2], b[3]
            ),
        ));
    }
    let (code, rank) = (b[2], b[3] as usize);
    let size: usize = match code {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        c => return Err(format_err(name, format!("unknown IDX type code {c:#04x}"))),
    };
    let len = 4 + 4 * rank;
    if b.len() < len {
        return Err(format_err(
            name,
            format!("truncated: {rank} dims need a {len}-byte header, the file has {}", b.len()),
        ));
    }
    let dims: Vec<usize> =
        b[4..len].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let nbytes = checked_numel(&dims)
        .and_then(|n| n.checked_mul(size))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| format_err(name, format!("dims {dims:?} are too big to address")))?;
    Ok(Header { code, dims, len, nbytes })
}

fn parse(b: &[u8], name: &str) -> Result<Tensor> {
    let Header { code, dims, len, nbytes } = header(b, name)?;
    let data = &b[len..];
    if data.len() != nbytes {
        let what = if data.len() < nbytes { "truncated" } else { "corrupt" };
        return Err(format_err(
            name,
            format!("{what}: dims {dims:?} of type {code:#04x} need {nbytes} data bytes, the file has {}", data.len()),
        ));
    }
    macro_rules! be {
        ($t:ty, $n:literal) => {
            data.chunks_exact($n)
                .map(|c| <$t>::from_be_bytes(c.try_into().expect("chunks_exact yields chunks of the asked size")))
        };
    }
    let buf = match code {
        0x08 => HostBuffer::U8(data.to_vec()),
        0x09 => HostBuffer::I32(data.iter().map(|&x| x as i8 as i32).collect()),
        0x0B => HostBuffer::I32(be!(i16, 2).map(i32::from).collect()),
        0x0C => HostBuffer::I32(be!(i32, 4).collect()),
        0x0D => HostBuffer::F32(be!(f32, 4).collect()),
        _ => HostBuffer::F64(be!(f64, 8).collect()),
    };
    Tensor::from_cpu_buffer(buf, dims)
}
