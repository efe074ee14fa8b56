//! `.npy` / `.npz`: round trips for every dtype and odd shapes, NumPy-written fixtures
//! (see tools/fixtures/make_npy_fixtures.py), and corrupt or truncated input.

use std::path::PathBuf;

use data::npy::{
    npy_from_bytes, npy_to_bytes, npz_from_bytes, npz_to_bytes, read_npy, read_npz, write_npy, write_npz,
    write_npz_compressed,
};
use tensor_core::{DType, Device, Error, Tensor, ALL_DTYPES};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("data_npy_test_{}_{name}", std::process::id()))
}

/// Values that every dtype represents exactly (bool: nonzero -> true).
fn sample(dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let vals: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64 - if dtype == DType::U8 { 0.0 } else { 3.0 }).collect();
    Tensor::from_vec(vals, shape.to_vec()).unwrap().to_dtype(dtype).unwrap()
}

fn assert_same(a: &Tensor, b: &Tensor) {
    assert_eq!(a.dtype(), b.dtype());
    assert_eq!(a.dims(), b.dims());
    assert_eq!(a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
}

#[test]
fn round_trip_every_dtype_and_shape() {
    let shapes: [&[usize]; 7] = [&[], &[0], &[1], &[5], &[2, 3], &[2, 0, 3], &[2, 3, 4]];
    for dtype in ALL_DTYPES {
        for shape in shapes {
            let t = sample(dtype, shape);
            let bytes = npy_to_bytes(&t).unwrap();
            // NumPy's alignment: preamble + header is a multiple of 64 and ends in '\n'.
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            assert_eq!(bytes[10 + hlen - 1], b'\n');
            assert_eq!(bytes.len(), 10 + hlen + t.numel() * dtype.size_in_bytes());
            let back = npy_from_bytes(&bytes, "mem.npy").unwrap();
            assert_same(&t, &back);
        }
    }
}

#[test]
fn round_trip_through_files() {
    let p = tmp("file.npy");
    let t = sample(DType::F64, &[3, 2]);
    write_npy(&p, &t).unwrap();
    assert_same(&t, &read_npy(&p).unwrap());
    std::fs::remove_file(&p).ok();
}

#[test]
fn non_contiguous_views_are_written_in_logical_order() {
    let base = Tensor::arange(0.0, 24.0, 1.0, DType::I64, &Device::cpu()).unwrap().reshape(&[2, 3, 4]).unwrap();
    let views = [
        base.permute(&[2, 0, 1]).unwrap(),
        base.narrow(2, 1, 2).unwrap(),
        base.slice(1, Some(0), None, 2).unwrap(),
        base.select(1, 2).unwrap(),
        Tensor::new(&[1i64, 2, 3]).reshape(&[3, 1]).unwrap().expand(&[3, 4]).unwrap(),
    ];
    for v in views {
        assert!(!v.is_contiguous());
        let back = npy_from_bytes(&npy_to_bytes(&v).unwrap(), "view.npy").unwrap();
        assert!(back.is_contiguous());
        assert_eq!(back.dims(), v.dims());
        assert_eq!(back.to_vec::<i64>().unwrap(), v.to_vec::<i64>().unwrap());
    }
}

#[test]
fn bf16_is_written_as_two_byte_void() {
    let t = Tensor::from_vec(vec![1.5f32, -2.0, 3.25], [3]).unwrap().to_dtype(DType::BF16).unwrap();
    let bytes = npy_to_bytes(&t).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..]);
    assert!(header.contains("'descr': '<V2'"), "{header}");
    // The raw bits of 1.5 in bfloat16 are 0x3FC0, stored little-endian after the header.
    let data = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(&bytes[data..data + 2], &[0xC0, 0x3F]);
    assert_same(&t, &npy_from_bytes(&bytes, "bf16.npy").unwrap());
}

#[test]
fn long_headers_switch_to_version_2() {
    let shape = vec![1usize; 22_000]; // "1, " * 22000 does not fit 1.0's 16-bit header length
    let t = Tensor::zeros(shape.clone(), DType::U8, &Device::cpu()).unwrap();
    let bytes = npy_to_bytes(&t).unwrap();
    assert_eq!(&bytes[6..8], &[2, 0]);
    let hlen = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    assert_eq!((12 + hlen) % 64, 0);
    assert_eq!(npy_from_bytes(&bytes, "long.npy").unwrap().dims(), &shape[..]);
}

#[test]
fn numpy_f4_c_order() {
    let t = read_npy(fixture("f4_c.npy")).unwrap();
    assert_eq!((t.dtype(), t.dims()), (DType::F32, &[2usize, 3, 4][..]));
    let want: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    assert_eq!(t.to_vec::<f32>().unwrap(), want);
}

#[test]
fn numpy_f8_fortran_order() {
    let t = read_npy(fixture("f8_fortran.npy")).unwrap();
    assert_eq!((t.dtype(), t.dims()), (DType::F64, &[3usize, 4][..]));
    assert!(!t.is_contiguous(), "a Fortran array comes back as a column-major view");
    let rows = t.to_vec2::<f64>().unwrap();
    for (r, row) in rows.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            assert_eq!(v, 10.0 * r as f64 + c as f64 + 0.25);
        }
    }
}

#[test]
fn numpy_big_endian_i4() {
    let t = read_npy(fixture("i4_big.npy")).unwrap();
    assert_eq!(t.dtype(), DType::I32);
    assert_eq!(t.to_vec::<i32>().unwrap(), vec![-2, -1, 0, 1, 70000]);
}

#[test]
fn numpy_bool_u1_f2_scalar_empty() {
    let b = read_npy(fixture("bool.npy")).unwrap();
    assert_eq!(b.dims(), &[2, 3]);
    assert_eq!(b.to_vec::<bool>().unwrap(), (0..6).map(|i| i % 3 == 0).collect::<Vec<_>>());
    let u = read_npy(fixture("u1.npy")).unwrap();
    assert_eq!(u.to_vec::<u8>().unwrap(), vec![0, 1, 128, 255]);
    let h = read_npy(fixture("f2.npy")).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(h.to_vec_f64().unwrap(), vec![0.5, -1.0, 65504.0, 2f64.powi(-10)]);
    let s = read_npy(fixture("i8_scalar.npy")).unwrap();
    assert_eq!((s.rank(), s.to_scalar::<i64>().unwrap()), (0, 42));
    let e = read_npy(fixture("f4_empty.npy")).unwrap();
    assert_eq!((e.dtype(), e.dims()), (DType::F32, &[0usize, 3][..]));
}

#[test]
fn numpy_format_versions_2_and_3() {
    for v in [2, 3] {
        let bytes = std::fs::read(fixture(&format!("i4_v{v}.npy"))).unwrap();
        assert_eq!(bytes[6], v);
        let t = npy_from_bytes(&bytes, "v.npy").unwrap();
        assert_eq!(t.to_vec::<i32>().unwrap(), vec![7, -8, 9]);
    }
}

#[test]
fn numpy_npz_stored_and_compressed() {
    for name in ["two.npz", "two_compressed.npz"] {
        let arrays = read_npz(fixture(name)).unwrap();
        let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..2], ["x", "y"], "{name}");
        assert_eq!(arrays[0].1.to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
        assert_eq!(arrays[1].1.to_vec::<i64>().unwrap(), vec![1, 2, 3]);
    }
    let arrays = read_npz(fixture("two_compressed.npz")).unwrap();
    let big = &arrays[2];
    assert_eq!(big.0, "big");
    assert_eq!(big.1.to_vec::<i32>().unwrap(), (0..1000).map(|i| i % 7).collect::<Vec<i32>>());
}

#[test]
fn npz_round_trip_both_ways() {
    let a = sample(DType::F16, &[2, 2]);
    let b = sample(DType::Bool, &[3]);
    let c = sample(DType::I64, &[]);
    for compress in [false, true] {
        let p = tmp(&format!("rt_{compress}.npz"));
        let arrays = [("a", &a), ("b", &b), ("c", &c)];
        if compress {
            write_npz_compressed(&p, &arrays).unwrap();
        } else {
            write_npz(&p, &arrays).unwrap();
        }
        let back = read_npz(&p).unwrap();
        assert_eq!(back.len(), 3);
        for ((name, t), (bn, bt)) in arrays.iter().zip(&back) {
            assert_eq!(name, bn);
            assert_same(t, bt);
        }
        std::fs::remove_file(&p).ok();
    }
    let dup = npz_to_bytes(&[("a", &a), ("a", &b)], false);
    assert!(matches!(dup, Err(Error::InvalidArgument { .. })));
}

fn format_msg(r: Result<Tensor, Error>) -> String {
    match r {
        Err(Error::Format { path, msg }) => format!("{path}: {msg}"),
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.dims()),
    }
}

#[test]
fn corrupt_npy_is_an_error_naming_the_file() {
    let good = npy_to_bytes(&sample(DType::F32, &[2, 3])).unwrap();
    // Every truncation fails, and says which file.
    for n in 0..good.len() {
        let m = format_msg(npy_from_bytes(&good[..n], "cut.npy"));
        assert!(m.starts_with("cut.npy: "), "{m}");
    }
    let m = format_msg(npy_from_bytes(&good[..good.len() - 1], "cut.npy"));
    assert!(m.contains("truncated") && m.contains("24 data bytes"), "{m}");

    let mut extra = good.clone();
    extra.push(0);
    assert!(format_msg(npy_from_bytes(&extra, "x.npy")).contains("unexpected bytes"));

    let mut bad_magic = good.clone();
    bad_magic[1] = b'X';
    assert!(format_msg(npy_from_bytes(&bad_magic, "x.npy")).contains("magic"));

    let mut bad_version = good.clone();
    bad_version[6] = 9;
    assert!(format_msg(npy_from_bytes(&bad_version, "x.npy")).contains("version 9.0"));

    let swap = |from: &str, to: &str| {
        assert_eq!(from.len(), to.len());
        let at = good.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
        let mut b = good.clone();
        b[at..at + to.len()].copy_from_slice(to.as_bytes());
        b
    };
    // Same-length edits keep the header length valid.
    let m = format_msg(npy_from_bytes(&swap("'<f4'", "'<c8'"), "x.npy"));
    assert!(m.contains("'<c8' is not supported"), "{m}");
    let m = format_msg(npy_from_bytes(&swap("'<f4'", "'<u8'"), "x.npy"));
    assert!(m.contains("uint64"), "{m}");
    let m = format_msg(npy_from_bytes(&swap("'shape'", "'shope'"), "x.npy"));
    assert!(m.contains("bad header"), "{m}");
    let m = format_msg(npy_from_bytes(&swap("(2, 3)", "(2, 9)"), "x.npy"));
    assert!(m.contains("truncated"), "{m}");

    let io = read_npy(tmp("does_not_exist.npy"));
    assert!(matches!(io, Err(Error::Io { ref path, .. }) if path.ends_with("does_not_exist.npy")));
}

#[test]
fn corrupt_npz_is_an_error_naming_the_file_and_member() {
    let t = sample(DType::I32, &[4]);
    let good = npz_to_bytes(&[("t", &t)], false).unwrap();
    for n in 0..good.len() {
        let r = npz_from_bytes(&good[..n], "cut.npz");
        assert!(matches!(r, Err(Error::Format { ref path, .. }) if path.starts_with("cut.npz")), "cut at {n}");
    }
    // Flip a byte inside the member's data: the CRC check catches it.
    let mut flipped = good.clone();
    let at = good.len() - 22 - 46 - 5 - 3; // inside the last data bytes, before the directory
    flipped[at] ^= 1;
    match npz_from_bytes(&flipped, "f.npz") {
        Err(Error::Format { path, msg }) => assert!(path == "f.npz" && msg.contains("CRC"), "{path}: {msg}"),
        other => panic!("expected a CRC error, got {:?}", other.map(|v| v.len())),
    }
    // A member that is not a .npy file (written by Python's zipfile) names the member.
    match read_npz(fixture("bad_member.npz")) {
        Err(Error::Format { path, msg }) => {
            assert!(path.ends_with("bad_member.npz:bad.npy") && msg.contains("magic"), "{path}: {msg}")
        }
        other => panic!("expected a format error, got {:?}", other.map(|v| v.len())),
    }
    let empty = npz_to_bytes::<&str, Tensor>(&[], false).unwrap();
    assert!(npz_from_bytes(&empty, "empty.npz").unwrap().is_empty());
    assert!(matches!(npz_from_bytes(b"PK\x03\x04garbage", "g.npz"), Err(Error::Format { .. })));
}

/// A `.npy` file with this header text (padded like NumPy's) in format `version`.
fn npy_with_header(version: u8, header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = header.to_vec();
    let preamble = if version == 1 { 10 } else { 12 };
    while (preamble + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut b = b"\x93NUMPY".to_vec();
    b.extend_from_slice(&[version, 0]);
    if version == 1 {
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(&h);
    b.extend_from_slice(data);
    b
}

#[test]
fn multibyte_characters_in_descr_are_an_error_not_a_panic() {
    // Format 1.0 headers are latin-1: byte 0xE9 is 'é', two bytes once decoded.
    let cases: [(u8, &[u8]); 5] = [
        (1, b"{'descr': '<\xe9', 'fortran_order': False, 'shape': (1,), }"),
        (1, b"{'descr': '\xe94', 'fortran_order': False, 'shape': (1,), }"),
        (1, b"{'descr': '<f\xe9', 'fortran_order': False, 'shape': (1,), }"),
        // Format 3.0 headers are UTF-8.
        (3, "{'descr': '<é4', 'fortran_order': False, 'shape': (1,), }".as_bytes()),
        (3, "{'descr': '<f４', 'fortran_order': False, 'shape': (1,), }".as_bytes()),
    ];
    for (version, header) in cases {
        let bytes = npy_with_header(version, header, &[0; 4]);
        let m = format_msg(npy_from_bytes(&bytes, "mb.npy"));
        assert!(m.starts_with("mb.npy: unsupported dtype descriptor"), "{m}");
    }
    // The same file with an ASCII descriptor loads.
    let ok = npy_with_header(3, b"{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", &7i32.to_le_bytes());
    assert_eq!(npy_from_bytes(&ok, "ok.npy").unwrap().to_vec::<i32>().unwrap(), vec![7]);
}

#[test]
fn shapes_that_cannot_be_addressed_are_errors() {
    let f = |shape: &str, data: &[u8]| {
        let header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
        npy_from_bytes(&npy_with_header(1, header.as_bytes(), data), "big.npy")
    };
    // Zero elements, but the other sizes overflow their strides (NumPy refuses these too).
    for shape in ["(0, 9223372036854775807, 4)", "(4294967296, 4294967296, 0)", "(0, 18446744073709551615)"] {
        let m = format_msg(f(shape, &[]));
        assert!(m.contains("too big to address"), "{shape}: {m}");
    }
    // Elements that overflow the byte count, or a count no file can hold.
    for shape in ["(2305843009213693952,)", "(4294967296, 4294967296)"] {
        let m = format_msg(f(shape, &[0; 8]));
        assert!(m.contains("too big to address"), "{shape}: {m}");
    }
    // A huge shape in a tiny file is an error before any allocation (checked against
    // the file's length), and so is a header length past the end of a 20-byte file.
    let m = format_msg(f("(1099511627776,)", &[0; 8]));
    assert!(m.contains("truncated") && m.contains("8796093022208 data bytes"), "{m}");
    let mut tiny = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
    tiny.resize(20, b' ');
    assert!(format_msg(npy_from_bytes(&tiny, "tiny.npy")).contains("truncated: the header needs 4294967295 bytes"));
    // Zero-size shapes whose other sizes are addressable still load.
    let t = f("(0, 1048576, 3)", &[]).unwrap();
    assert_eq!(t.dims(), &[0, 1048576, 3]);
}

#[test]
fn a_huge_corrupt_header_is_quoted_only_in_part() {
    let header =
        format!("{{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'junk': '{}'}}", "x".repeat(100_000));
    let m = format_msg(npy_from_bytes(&npy_with_header(2, header.as_bytes(), &[0; 8]), "junk.npy"));
    assert!(m.contains("unexpected key \"junk\"") && m.len() < 1000, "{} bytes: {}", m.len(), &m[..300]);
}

/// The offsets of the central directory entries of a zip archive written by
/// `npz_to_bytes` (no archive comment, no ZIP64).
fn central_entries(z: &[u8]) -> Vec<usize> {
    let eocd = z.len() - 22;
    let count = u16::from_le_bytes([z[eocd + 10], z[eocd + 11]]) as usize;
    let mut at = u32::from_le_bytes(z[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(at);
        let name_len = u16::from_le_bytes([z[at + 28], z[at + 29]]) as usize;
        at += 46 + name_len;
    }
    out
}

#[test]
fn npz_members_sharing_bytes_are_an_error() {
    // Two central entries naming the same local member (same CRC and sizes, so each
    // one alone is valid): the "overlapping" zip bomb, where a small archive inflates
    // to many times its size.
    let t = sample(DType::F32, &[64]);
    let mut z = npz_to_bytes(&[("a", &t), ("b", &t)], true).unwrap();
    let e = central_entries(&z);
    let first = z[e[0] + 16..e[0] + 28].to_vec(); // CRC, compressed and uncompressed sizes
    z[e[1] + 16..e[1] + 28].copy_from_slice(&first);
    z[e[1] + 42..e[1] + 46].copy_from_slice(&0u32.to_le_bytes()); // local header offset
    match npz_from_bytes(&z, "bomb.npz") {
        Err(Error::Format { msg, .. }) => assert!(msg.contains("overlaps member \"a.npy\""), "{msg}"),
        other => panic!("expected an overlap error, got {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn npz_declared_sizes_deflate_cannot_reach_are_errors_before_inflating() {
    let t = sample(DType::U8, &[100]);
    let mut z = npz_to_bytes(&[("a", &t)], true).unwrap();
    let e = central_entries(&z)[0];
    let csize = u32::from_le_bytes(z[e + 20..e + 24].try_into().unwrap()) as u64;
    z[e + 24..e + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    match npz_from_bytes(&z, "big.npz") {
        Err(Error::Format { msg, .. }) => {
            let want = format!("cannot come from {csize} bytes of deflate data");
            assert!(msg.contains("declared size 4294967280") && msg.contains(&want), "{msg}")
        }
        other => panic!("expected a size error, got {:?}", other.map(|v| v.len())),
    }
}
