//! NumPy's `.npy` and `.npz` files.
//!
//! # Reading
//! Format versions 1.0, 2.0 and 3.0; C and Fortran order (a Fortran-order array
//! comes back as a column-major *view* with the right values, like NumPy keeps it;
//! call [`Tensor::contiguous`] for row-major storage); little-, big- and
//! no-endian descriptors. Element types map to tensor dtypes as follows:
//!
//! | NumPy descr | dtype |
//! |---|---|
//! | `b1` (bool) | `Bool` |
//! | `u1` | `U8` |
//! | `i4` | `I32` |
//! | `i8` | `I64` |
//! | `f2` | `F16` |
//! | `f4` | `F32` |
//! | `f8` | `F64` |
//! | `V2` (2-byte void) | `BF16` (see below) |
//! | `i1`, `i2`, `u2` | `I32` (widened, exact) |
//! | `u4` | `I64` (widened, exact) |
//!
//! Anything else (`u8`, complex, strings, objects, structured arrays) is an error,
//! never a lossy conversion.
//!
//! # Writing
//! C order, little-endian, format 1.0 (2.0 when the header would not fit 1.0's
//! 16-bit length), header padded to 64 bytes like NumPy's. Non-contiguous views are
//! written in their logical (row-major) order.
//!
//! # `.npz` archives
//! [`read_npz`] and [`write_npz`] / [`write_npz_compressed`] handle whole archives
//! (NumPy's `np.savez` / `np.savez_compressed`); [`NpzReader`] is NumPy's lazy
//! `np.load`: it lists the arrays and loads one by name without reading the others.
//! Members are stored or deflated; archives and arrays over 4 GiB (ZIP64) are read
//! and written, every member carrying ZIP64 sizes as NumPy writes them. Encrypted
//! members and other compression methods are errors.
//!
//! # bfloat16
//! NumPy has no bfloat16. The `ml_dtypes` package (what JAX and TensorFlow use)
//! saves its `bfloat16` arrays with the descriptor `'<V2'`, a 2-byte opaque type,
//! and this module does the same: BF16 tensors are written as `'<V2'` holding the
//! raw little-endian bits, and `'<V2'`/`'|V2'` arrays are read back as BF16. In
//! NumPy, `np.load(f).view(ml_dtypes.bfloat16)` recovers the values.
//!
//! ```
//! use data::npy::{npy_from_bytes, npy_to_bytes};
//! use tensor_core::Tensor;
//!
//! let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
//! let bytes = npy_to_bytes(&t.t()?)?;                  // a transposed view, written as [3, 2]
//! assert_eq!(&bytes[..6], b"\x93NUMPY");
//! let back = npy_from_bytes(&bytes, "example.npy")?;
//! assert_eq!(back.to_vec2::<f32>()?, vec![vec![1.0, 4.0], vec![2.0, 5.0], vec![3.0, 6.0]]);
//! # Ok::<(), tensor_core::Error>(())
//! ```

use std::path::Path;

use half::{bf16, f16};
use tensor_core::HostBuffer;
use tensor_core::{DType, Error, Result, Tensor};

pub use crate::npz::{npz_from_bytes, npz_to_bytes, read_npz, write_npz, write_npz_compressed, NpzReader};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy pads the preamble plus header to a multiple of this.
const ALIGN: usize = 64;

pub(crate) fn format_err(name: &str, msg: impl Into<String>) -> Error {
    Error::Format { path: name.to_string(), msg: msg.into() }
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source: e }
}

/// Reads a `.npy` file into a CPU tensor.
///
/// Errors name the file and what is wrong (bad magic, unsupported dtype, truncated
/// data, ...). See the [module docs](self) for the dtype mapping.
///
/// ```
/// use data::npy::{read_npy, write_npy};
/// use tensor_core::Tensor;
///
/// let path = std::env::temp_dir().join(format!("read_npy_doc_{}.npy", std::process::id()));
/// write_npy(&path, &Tensor::from_vec(vec![1i64, -2, 3], [3])?)?;
/// assert_eq!(read_npy(&path)?.to_vec::<i64>()?, vec![1, -2, 3]);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    npy_from_bytes(&bytes, &path.display().to_string())
}

/// Writes a tensor (any device, any layout) as a `.npy` file.
///
/// ```
/// use data::npy::{read_npy, write_npy};
/// use tensor_core::{DType, Device, Tensor};
///
/// let path = std::env::temp_dir().join(format!("write_npy_doc_{}.npy", std::process::id()));
/// let t = Tensor::arange(0.0, 6.0, 1.0, DType::F64, &Device::cpu())?.reshape(&[2, 3])?;
/// write_npy(&path, &t)?;
/// let back = read_npy(&path)?;
/// assert_eq!((back.dims(), back.dtype()), (&[2usize, 3][..], DType::F64));
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let bytes = npy_to_bytes(tensor)?;
    std::fs::write(path, bytes).map_err(|e| io_err(path, e))
}

/// Parses the bytes of a `.npy` file; `name` is used in error messages.
pub fn npy_from_bytes(bytes: &[u8], name: &str) -> Result<Tensor> {
    let pre = parse_preamble(bytes, name)?;
    let end = pre.start.saturating_add(pre.header_len);
    if bytes.len() < end {
        return Err(pre.header_cut_off(bytes.len(), name));
    }
    let layout = parse_layout(&bytes[pre.start..end], pre.utf8, name)?;
    let data = &bytes[end..];
    layout.check_data_len(data.len(), name)?;
    layout.tensor(data)
}

/// The fixed start of a `.npy` file: where the header text starts, its length and
/// its encoding.
pub(crate) struct Preamble {
    /// The offset of the header text (10 for format 1.0, 12 for 2.0 and 3.0).
    pub start: usize,
    /// The length of the header text, padding included.
    pub header_len: usize,
    /// Format 3.0: the header is UTF-8 (else latin-1).
    pub utf8: bool,
}

impl Preamble {
    /// The most bytes [`parse_preamble`] looks at.
    pub const MAX_LEN: usize = 12;

    /// The error for a file of `total` bytes that ends inside the header.
    pub fn header_cut_off(&self, total: usize, name: &str) -> Error {
        format_err(
            name,
            format!(
                "truncated: the header needs {} bytes but only {} remain",
                self.header_len,
                total.saturating_sub(self.start)
            ),
        )
    }
}

/// Checks the magic and version at the start of a `.npy` file (`bytes` holds at
/// least the first [`Preamble::MAX_LEN`] bytes, or the whole file if it is shorter).
pub(crate) fn parse_preamble(bytes: &[u8], name: &str) -> Result<Preamble> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err(format_err(name, "not a .npy file (missing the \\x93NUMPY magic)"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(format_err(name, format!("unsupported .npy format version {major}.{minor}"))),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err(format_err(name, "truncated: the header length is cut off"));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    Ok(Preamble { start, header_len, utf8 })
}

/// What a `.npy` header says about the data that follows it.
pub(crate) struct Layout {
    header: Header,
    descr: Descr,
    /// The exact number of data bytes (checked: fits an `isize`).
    pub nbytes: usize,
}

/// Decodes and parses the header text (`raw`, padding included) and sizes the data.
pub(crate) fn parse_layout(raw: &[u8], utf8: bool, name: &str) -> Result<Layout> {
    let text = if utf8 {
        std::str::from_utf8(raw).map_err(|e| format_err(name, format!("header is not UTF-8: {e}")))?.to_string()
    } else {
        raw.iter().map(|&b| b as char).collect() // latin-1
    };
    let h = parse_header(&text).map_err(|m| format_err(name, format!("bad header {}: {m}", excerpt(&text))))?;
    let descr = Descr::parse(&h.descr).map_err(|m| format_err(name, m))?;
    let too_big = || format_err(name, format!("shape {:?} of '{}' is too big to address", h.shape, h.descr));
    let numel = checked_numel(&h.shape).ok_or_else(too_big)?;
    let nbytes = numel.checked_mul(descr.size).filter(|&b| b <= isize::MAX as usize).ok_or_else(too_big)?;
    Ok(Layout { header: h, descr, nbytes })
}

impl Layout {
    /// Checks that `have` data bytes are exactly what the header asks for.
    pub fn check_data_len(&self, have: usize, name: &str) -> Result<()> {
        let (shape, descr, nbytes) = (&self.header.shape, &self.header.descr, self.nbytes);
        if have < nbytes {
            return Err(format_err(
                name,
                format!("truncated: shape {shape:?} of '{descr}' needs {nbytes} data bytes but the file has {have}"),
            ));
        }
        if have > nbytes {
            return Err(format_err(
                name,
                format!("{} unexpected bytes after the data of shape {shape:?} '{descr}'", have - nbytes),
            ));
        }
        Ok(())
    }

    /// The tensor of exactly [`Layout::nbytes`] bytes of data.
    pub fn tensor(&self, data: &[u8]) -> Result<Tensor> {
        debug_assert_eq!(data.len(), self.nbytes);
        let buf = self.descr.decode(data);
        let shape = &self.header.shape;
        if self.header.fortran_order && shape.len() > 1 {
            // Column-major data is row-major data of the reversed shape, transposed.
            let rev: Vec<usize> = shape.iter().rev().copied().collect();
            let perm: Vec<isize> = (0..shape.len() as isize).rev().collect();
            Tensor::from_cpu_buffer(buf, rev)?.permute(&perm)
        } else {
            Tensor::from_cpu_buffer(buf, shape.clone())
        }
    }
}

/// Serializes a tensor as the bytes of a `.npy` file (C order, little-endian).
pub fn npy_to_bytes(tensor: &Tensor) -> Result<Vec<u8>> {
    let buf = tensor.to_cpu_buffer()?;
    let descr = match tensor.dtype() {
        DType::Bool => "|b1",
        DType::U8 => "|u1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::F16 => "<f2",
        DType::BF16 => "<V2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
    };
    let shape = match tensor.dims() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        ds => format!("({})", ds.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Version 1.0 has a 2-byte header length and a 10-byte preamble; 2.0 has 4 and 12.
    // The stored header length includes the padding and the closing newline.
    let padded_len = |preamble: usize| (preamble + header.len() + 1).div_ceil(ALIGN) * ALIGN - preamble;
    let (version, preamble) = if padded_len(10) <= u16::MAX as usize { (1u8, 10) } else { (2u8, 12) };
    let total = preamble + padded_len(preamble);
    let pad = total - preamble - header.len() - 1;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let mut out = Vec::with_capacity(total + buf.len() * tensor.dtype().size_in_bytes());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        let len = u32::try_from(header.len())
            .map_err(|_| Error::arg("write_npy", format!("header of {} bytes is too long", header.len())))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    encode(&buf, &mut out);
    Ok(out)
}

/// The start of a header, quoted, for error messages (a corrupt header may be huge).
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 200;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

/// The number of elements of `shape`, or `None` when the shape cannot be addressed:
/// like NumPy, the product of the nonzero sizes must fit in an `isize`, also when
/// another size is zero (the strides of such a shape are still computed).
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |a, &d| a.checked_mul(d).filter(|&p| p <= isize::MAX as usize))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

/// The three keys of a `.npy` header.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of a `.npy` header.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err("structured dtypes are not supported".into());
                }
                descr = Some(p.string()?);
            }
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            k => return Err(format!("unexpected key {k:?}")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the dict at offset {}", p.i));
    }
    Ok(Header {
        descr: descr.ok_or("missing 'descr'")?,
        fortran_order: fortran.ok_or("missing 'fortran_order'")?,
        shape: shape.ok_or("missing 'shape'")?,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at offset {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at offset {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|c| c != q) {
            self.i += 1;
        }
        let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.expect(q)?;
        Ok(s)
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        if self.s[self.i..].starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if self.s[self.i..].starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            Err(format!("expected True or False at offset {}", self.i))
        }
    }
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut v = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(v);
            }
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            if start == self.i {
                return Err(format!("expected a non-negative integer at offset {}", self.i));
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            v.push(digits.parse::<usize>().map_err(|e| format!("dimension {digits}: {e}"))?);
            self.eat(b'L'); // Python 2 longs
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(v);
            }
        }
    }
}

/// An element type descriptor such as `'<f4'`.
struct Descr {
    kind: u8,
    size: usize,
    big_endian: bool,
}

impl Descr {
    fn parse(d: &str) -> std::result::Result<Descr, String> {
        let b = d.as_bytes();
        // Every descriptor this reader knows is ASCII: a byte-order mark, a kind letter
        // and a decimal size. Checking that first also keeps the slicing below on
        // character boundaries whatever the header holds.
        if b.len() < 3 || !b[2..].iter().all(u8::is_ascii_digit) || !d.is_ascii() {
            return Err(format!("unsupported dtype descriptor {d:?}"));
        }
        let big_endian = match b[0] {
            b'<' | b'|' | b'=' => false, // '=' is native; NumPy never writes it, and we are little-endian
            b'>' => true,
            _ => return Err(format!("unsupported dtype descriptor '{d}' (bad byte-order mark)")),
        };
        let size: usize = d[2..].parse().map_err(|_| format!("unsupported dtype descriptor '{d}'"))?;
        let descr = Descr { kind: b[1], size, big_endian };
        match (descr.kind, size) {
            (b'b', 1) | (b'u', 1 | 2 | 4) | (b'i', 1 | 2 | 4 | 8) | (b'f', 2 | 4 | 8) | (b'V', 2) => Ok(descr),
            (b'u', 8) => Err(format!("dtype '{d}' (uint64) is not supported: no tensor dtype holds it exactly")),
            _ => Err(format!("dtype '{d}' is not supported")),
        }
    }

    /// Decodes exactly `numel * size` bytes.
    fn decode(&self, data: &[u8]) -> HostBuffer {
        macro_rules! dec {
            ($t:ty, $n:literal) => {
                data.chunks_exact($n).map(|c| {
                    let a: [u8; $n] = c.try_into().expect("chunks_exact yields chunks of the asked size");
                    if self.big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                })
            };
        }
        match (self.kind, self.size) {
            (b'b', _) => HostBuffer::Bool(data.iter().map(|&b| b != 0).collect()),
            (b'u', 1) => HostBuffer::U8(data.to_vec()),
            (b'i', 1) => HostBuffer::I32(data.iter().map(|&b| b as i8 as i32).collect()),
            (b'i', 2) => HostBuffer::I32(dec!(i16, 2).map(i32::from).collect()),
            (b'u', 2) => HostBuffer::I32(dec!(u16, 2).map(i32::from).collect()),
            (b'i', 4) => HostBuffer::I32(dec!(i32, 4).collect()),
            (b'u', 4) => HostBuffer::I64(dec!(u32, 4).map(i64::from).collect()),
            (b'i', 8) => HostBuffer::I64(dec!(i64, 8).collect()),
            (b'f', 2) => HostBuffer::F16(dec!(u16, 2).map(f16::from_bits).collect()),
            (b'V', 2) => HostBuffer::BF16(dec!(u16, 2).map(bf16::from_bits).collect()),
            (b'f', 4) => HostBuffer::F32(dec!(f32, 4).collect()),
            _ => HostBuffer::F64(dec!(f64, 8).collect()),
        }
    }
}

/// Appends the little-endian bytes of every element.
fn encode(buf: &HostBuffer, out: &mut Vec<u8>) {
    match buf {
        HostBuffer::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        HostBuffer::U8(v) => out.extend_from_slice(v),
        HostBuffer::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        HostBuffer::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        HostBuffer::F16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        HostBuffer::BF16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        HostBuffer::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        HostBuffer::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parser_accepts_numpy_variants() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }   \n").unwrap();
        assert_eq!((h.descr.as_str(), h.fortran_order, h.shape), ("<f4", false, vec![3, 4]));
        let h = parse_header("{\"shape\": (7L,), \"fortran_order\": True, \"descr\": \">i8\"}").unwrap();
        assert_eq!((h.descr.as_str(), h.fortran_order, h.shape), (">i8", true, vec![7]));
        let h = parse_header("{'descr': '|b1', 'fortran_order': False, 'shape': ()}").unwrap();
        assert!(h.shape.is_empty());
    }

    #[test]
    fn header_parser_rejects_garbage() {
        for bad in [
            "",
            "{",
            "{'descr': '<f4'}",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': ()}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}",
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': ()} trailing",
            "{'descr': '<f4, 'fortran_order': False, 'shape': ()}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn descr_parser() {
        for ok in ["<f4", ">f8", "|b1", "|u1", "<i2", ">u4", "<V2", "|V2", "=i8"] {
            assert!(Descr::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["<u8", "<c8", "|O", "<U3", "<f16", "f4", "<V4", "?f4", "<fx"] {
            assert!(Descr::parse(bad).is_err(), "{bad}");
        }
    }
}
