//! `.npy` / `.npz`: round trips for every dtype and odd shapes, NumPy-written fixtures
//! (see tools/fixtures/make_npy_fixtures.py), and corrupt or truncated input.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use data::npy::{
    npy_from_bytes, npy_to_bytes, npz_from_bytes, npz_to_bytes, read_npy, read_npz, write_npy, write_npz,
    write_npz_compressed, NpzReader,
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
    let p = tmp("dup.npz");
    assert!(matches!(write_npz(&p, &[("a", &a), ("a", &b)]), Err(Error::InvalidArgument { .. })));
    assert!(!p.exists(), "no file is left for a refused archive");
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
    flipped[central_directory_offset(&good) - 3] ^= 1; // inside the last data bytes
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
    while !(preamble + h.len() + 1).is_multiple_of(64) {
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

fn u16_at(z: &[u8], at: usize) -> usize {
    u16::from_le_bytes([z[at], z[at + 1]]) as usize
}

fn u64_at(z: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(z[at..at + 8].try_into().unwrap())
}

/// Where the central directory of an archive without a comment starts.
fn central_directory_offset(z: &[u8]) -> usize {
    let eocd = z.len() - 22;
    assert_eq!(&z[eocd..eocd + 4], b"PK\x05\x06");
    u32::from_le_bytes(z[eocd + 16..eocd + 20].try_into().unwrap()) as usize
}

/// A central directory entry of an archive written by `npz_to_bytes`.
struct Central {
    /// Where the entry starts.
    at: usize,
    /// Where the body of its ZIP64 extra field starts: the uncompressed size (u64),
    /// then the compressed size (u64). `npz_to_bytes` writes one on every member.
    zip64: usize,
}

/// The central directory entries of an archive without a comment.
fn central_entries(z: &[u8]) -> Vec<Central> {
    let count = u16_at(z, z.len() - 22 + 10);
    let mut at = central_directory_offset(z);
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(&z[at..at + 4], b"PK\x01\x02");
        let (name_len, extra_len, comment_len) = (u16_at(z, at + 28), u16_at(z, at + 30), u16_at(z, at + 32));
        let extra = at + 46 + name_len;
        let (mut e, mut zip64) = (extra, None);
        while e + 4 <= extra + extra_len {
            if u16_at(z, e) == 1 {
                zip64 = Some(e + 4);
            }
            e += 4 + u16_at(z, e + 2);
        }
        out.push(Central { at, zip64: zip64.expect("a ZIP64 extra field") });
        at = extra + extra_len + comment_len;
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
    let crc = z[e[0].at + 16..e[0].at + 20].to_vec();
    let sizes = z[e[0].zip64..e[0].zip64 + 16].to_vec(); // the ZIP64 sizes
    z[e[1].at + 16..e[1].at + 20].copy_from_slice(&crc);
    z[e[1].zip64..e[1].zip64 + 16].copy_from_slice(&sizes);
    z[e[1].at + 42..e[1].at + 46].copy_from_slice(&0u32.to_le_bytes()); // local header offset
    match npz_from_bytes(&z, "bomb.npz") {
        Err(Error::Format { msg, .. }) => assert!(msg.contains("overlaps member \"a.npy\""), "{msg}"),
        other => panic!("expected an overlap error, got {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn npz_declared_sizes_deflate_cannot_reach_are_errors_before_inflating() {
    let t = sample(DType::U8, &[100]);
    let mut z = npz_to_bytes(&[("a", &t)], true).unwrap();
    let e = &central_entries(&z)[0];
    let csize = u64_at(&z, e.zip64 + 8);
    // A ZIP64 size of 1 TiB: no buffer of that size is asked for.
    z[e.zip64..e.zip64 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    match npz_from_bytes(&z, "big.npz") {
        Err(Error::Format { path, msg }) => {
            let want = format!("cannot come from {csize} bytes of deflate data");
            assert!(path == "big.npz" && msg.contains("member \"a.npy\""), "{path}: {msg}");
            assert!(msg.contains("declared size 1099511627776") && msg.contains(&want), "{msg}")
        }
        other => panic!("expected a size error, got {:?}", other.map(|v| v.len())),
    }
}

fn member_names(r: &NpzReader<impl std::io::Read + std::io::Seek>) -> Vec<&str> {
    r.names().iter().map(String::as_str).collect()
}

#[test]
fn npz_round_trip_every_dtype_lazy_and_full() {
    let shapes: [&[usize]; 4] = [&[], &[0, 2], &[5], &[2, 3, 4]];
    let mut arrays: Vec<(String, Tensor)> = Vec::new();
    for dtype in ALL_DTYPES {
        for (i, shape) in shapes.iter().enumerate() {
            arrays.push((format!("{dtype:?}_{i}"), sample(dtype, shape)));
        }
    }
    for compress in [false, true] {
        let z = npz_to_bytes(&arrays, compress).unwrap();
        let mut npz = NpzReader::new(Cursor::new(&z), "rt.npz").unwrap();
        assert_eq!(npz.len(), arrays.len());
        assert_eq!(member_names(&npz), arrays.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
        // One member at a time, in reverse order, by array name and by stored name.
        for (name, t) in arrays.iter().rev() {
            assert!(npz.contains(name) && npz.contains(&format!("{name}.npy")));
            assert_same(t, &npz.load(name).unwrap());
            assert_same(t, &npz.load(&format!("{name}.npy")).unwrap());
        }
        // Every array loaded lazily equals the same array from the full load.
        let all = npz.load_all().unwrap();
        let full = npz_from_bytes(&z, "rt.npz").unwrap();
        for (((name, t), (an, at)), (fname, ft)) in arrays.iter().zip(&all).zip(&full) {
            assert_eq!((name, name), (an, fname));
            assert_same(t, at);
            assert_same(&npz.load(name).unwrap(), ft);
        }
    }
}

#[test]
fn npz_reader_opens_files_and_reads_only_the_member_it_loads() {
    let a = sample(DType::F32, &[3, 4]);
    let b = sample(DType::I64, &[50]);
    let p = tmp("lazy.npz");
    write_npz(&p, &[("a", &a), ("b", &b)]).unwrap();
    let mut npz = NpzReader::open(&p).unwrap();
    assert_eq!(member_names(&npz), ["a", "b"]);
    assert_same(&b, &npz.load("b").unwrap());

    // Corrupt b's data: a still loads (b's bytes are never read), b and the full
    // load fail on b's CRC.
    let mut z = std::fs::read(&p).unwrap();
    let at = central_directory_offset(&z) - 5;
    z[at] ^= 0x40;
    std::fs::write(&p, &z).unwrap();
    let mut npz = NpzReader::open(&p).unwrap();
    assert_same(&a, &npz.load("a").unwrap());
    let path = p.display().to_string();
    for r in [npz.load("b").map(|_| ()), read_npz(&p).map(|_| ())] {
        match r {
            Err(Error::Format { path: at, msg }) => {
                assert!(at == path && msg.contains("member \"b.npy\"") && msg.contains("CRC mismatch"), "{at}: {msg}")
            }
            other => panic!("expected a CRC error, got {other:?}"),
        }
    }
    std::fs::remove_file(&p).ok();
}

#[test]
fn npz_reader_unknown_name_is_an_error_naming_the_archive() {
    let z = npz_to_bytes(&[("x", sample(DType::U8, &[2])), ("y.npy", sample(DType::U8, &[1]))], false).unwrap();
    let mut npz = NpzReader::new(Cursor::new(z), "named.npz").unwrap();
    assert_eq!(member_names(&npz), ["x", "y.npy"]); // only one ".npy" comes off, as in NumPy
    assert!(npz.load("y.npy").is_ok() && npz.load("y.npy.npy").is_ok());
    for missing in ["z", "X", "x.np", ""] {
        match npz.load(missing) {
            Err(Error::InvalidArgument { op, msg }) => {
                assert_eq!(op, "NpzReader::load");
                let want = format!("named.npz has no array named {missing:?}");
                assert!(msg.contains(&want) && msg.contains("[\"x\", \"y.npy\"]"), "{msg}");
            }
            other => panic!("expected an unknown-name error, got {other:?}"),
        }
    }
    assert!(!npz.contains("z"));
    let io = NpzReader::open(tmp("no_such.npz"));
    assert!(matches!(io, Err(Error::Io { ref path, .. }) if path.ends_with("no_such.npz")));
}

#[test]
fn numpy_npz_loaded_one_array_at_a_time() {
    let mut npz = NpzReader::open(fixture("two_compressed.npz")).unwrap();
    assert_eq!(member_names(&npz), ["x", "y", "big"]);
    assert_eq!(npz.load("big").unwrap().to_vec::<i32>().unwrap(), (0..1000).map(|i| i % 7).collect::<Vec<i32>>());
    assert_eq!(npz.load("y").unwrap().to_vec::<i64>().unwrap(), vec![1, 2, 3]);
    let mut npz = NpzReader::open(fixture("two.npz")).unwrap();
    assert_eq!(member_names(&npz), ["x", "y"]);
    assert_eq!(npz.load("x").unwrap().to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
    // A member that is not a .npy file is listed, and loading it names it.
    let mut bad = NpzReader::open(fixture("bad_member.npz")).unwrap();
    assert_eq!(member_names(&bad), ["bad"]);
    match bad.load("bad") {
        Err(Error::Format { path, msg }) => assert!(path.ends_with("bad_member.npz:bad.npy") && msg.contains("magic")),
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn python_zip64_npz_with_zip64_end_records() {
    // zip64.npz (tools/fixtures/make_npy_fixtures.py): ZIP64 sizes and offsets in
    // every header, a ZIP64 end record and locator; one stored, one deflated member.
    let bytes = std::fs::read(fixture("zip64.npz")).unwrap();
    assert!(bytes.windows(4).any(|w| w == b"PK\x06\x06") && bytes.windows(4).any(|w| w == b"PK\x06\x07"));
    let a_want: Vec<f64> = (0..6).map(|i| i as f64 * 1.5 - 2.0).collect();
    let b_want: Vec<i32> = (0..300).map(|i| (i * 37) % 1000 - 500).collect();
    let mut npz = NpzReader::open(fixture("zip64.npz")).unwrap();
    assert_eq!(member_names(&npz), ["a", "b"]);
    let b = npz.load("b").unwrap();
    assert_eq!((b.dtype(), b.to_vec::<i32>().unwrap()), (DType::I32, b_want)); // i2 widens to I32
    let all = npz_from_bytes(&bytes, "zip64.npz").unwrap();
    assert_eq!((all[0].1.dims(), all[0].1.to_vec_f64().unwrap()), (&[2usize, 3][..], a_want));
    assert_same(&all[1].1, &b);
    for n in 0..bytes.len() {
        let r = npz_from_bytes(&bytes[..n], "cut.npz");
        assert!(matches!(r, Err(Error::Format { ref path, .. }) if path.starts_with("cut.npz")), "cut at {n}");
    }
}

#[test]
fn npz_writes_zip64_sizes_like_numpy() {
    // Every member carries ZIP64 sizes (NumPy's force_zip64), in its local header
    // and its central entry, so no array is too big for the format.
    let a = sample(DType::F64, &[7, 3]);
    let b = sample(DType::Bool, &[0]);
    for compress in [false, true] {
        let z = npz_to_bytes(&[("a", &a), ("b", &b)], compress).unwrap();
        for (e, t) in central_entries(&z).iter().zip([&a, &b]) {
            assert_eq!(u16_at(&z, e.at + 6), 45, "version needed to extract: 4.5, ZIP64");
            assert_eq!(&z[e.at + 20..e.at + 28], &[0xFF; 8], "both 32-bit sizes defer to the ZIP64 field");
            assert_eq!(u64_at(&z, e.zip64), npy_to_bytes(t).unwrap().len() as u64);
            let local = u32::from_le_bytes(z[e.at + 42..e.at + 46].try_into().unwrap()) as usize;
            assert_eq!(&z[local..local + 4], b"PK\x03\x04");
            let name_len = u16_at(&z, local + 26);
            assert_eq!(u16_at(&z, local + 30 + name_len), 1, "a ZIP64 field in the local header too");
        }
        let back = npz_from_bytes(&z, "z64.npz").unwrap();
        assert_same(&a, &back[0].1);
        assert_same(&b, &back[1].1);
    }
}

#[test]
fn npz_flipped_bytes_and_cuts_are_errors_stored_and_deflated() {
    let t = sample(DType::U8, &[200]);
    for compress in [false, true] {
        let good = npz_to_bytes(&[("t", &t)], compress).unwrap();
        let data_end = central_directory_offset(&good);
        // Every byte of the member's data (past the local header) flipped in turn.
        for at in data_end - 40..data_end {
            let mut z = good.clone();
            z[at] ^= 0x55;
            let r = npz_from_bytes(&z, "flip.npz");
            assert!(matches!(r, Err(Error::Format { ref path, .. }) if path.starts_with("flip.npz")), "byte {at}");
        }
        for n in 0..good.len() {
            let r = npz_from_bytes(&good[..n], "cut.npz");
            assert!(matches!(r, Err(Error::Format { ref path, .. }) if path.starts_with("cut.npz")), "cut at {n}");
        }
    }
}

/// An archive of one member named `name` holding `bytes` as they are.
fn zip_of(name: &str, bytes: &[u8], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::DEFAULT.compression_method(method)).unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn npz_member_whose_size_disagrees_with_its_npy_header_is_an_error() {
    let npy = npy_to_bytes(&sample(DType::I32, &[4])).unwrap(); // 16 data bytes
    for method in [zip::CompressionMethod::Stored, zip::CompressionMethod::Deflated] {
        let short = zip_of("t.npy", &npy[..npy.len() - 4], method);
        let mut npz = NpzReader::new(Cursor::new(short), "s.npz").unwrap();
        match npz.load("t") {
            Err(Error::Format { path, msg }) => {
                assert!(path == "s.npz:t.npy" && msg.contains("needs 16 data bytes but the file has 12"), "{msg}")
            }
            other => panic!("expected a truncation error, got {other:?}"),
        }
        let mut long = npy.clone();
        long.extend_from_slice(&[0; 3]);
        let mut npz = NpzReader::new(Cursor::new(zip_of("t.npy", &long, method)), "l.npz").unwrap();
        match npz.load("t") {
            Err(Error::Format { path, msg }) => assert!(path == "l.npz:t.npy" && msg.contains("3 unexpected bytes")),
            other => panic!("expected a trailing-bytes error, got {other:?}"),
        }
        // A format 1.0 header of 0 bytes: the 12 bytes read for the preamble reach
        // into the data (found by fuzz_npz).
        let tiny = zip_of("t.npy", b"\x93NUMPY\x01\x00\x00\x00ab", method);
        match NpzReader::new(Cursor::new(tiny), "t.npz").unwrap().load("t") {
            Err(Error::Format { path, msg }) => assert!(path == "t.npz:t.npy" && msg.contains("bad header"), "{msg}"),
            other => panic!("expected a header error, got {other:?}"),
        }
        // A header length past the member's end.
        let mut npz = NpzReader::new(Cursor::new(zip_of("t.npy", &npy[..40], method)), "h.npz").unwrap();
        match npz.load("t") {
            Err(Error::Format { path, msg }) => {
                assert!(path == "h.npz:t.npy" && msg.contains("truncated: the header needs"), "{msg}")
            }
            other => panic!("expected a header error, got {other:?}"),
        }
    }
}

#[test]
fn npz_stored_member_claiming_more_bytes_than_the_file_is_an_error_on_open() {
    let t = sample(DType::U8, &[8]);
    let mut z = npz_to_bytes(&[("t", &t)], false).unwrap();
    let e = &central_entries(&z)[0];
    for v in [e.zip64, e.zip64 + 8] {
        z[v..v + 8].copy_from_slice(&(1u64 << 40).to_le_bytes()); // both sizes: 1 TiB
    }
    match NpzReader::new(Cursor::new(&z), "huge.npz") {
        Err(Error::Format { path, msg }) => {
            assert!(path == "huge.npz" && msg.contains("member \"t.npy\"") && msg.contains("past the end"), "{msg}")
        }
        other => panic!("expected a size error, got {other:?}"),
    }
}
