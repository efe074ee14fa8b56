//! IDX (MNIST) files written byte by byte here, plain and gzipped, and broken ones.

use std::io::Write;

use data::idx::{idx_from_bytes, read_idx};
use tensor_core::{DType, Error};

/// An IDX file: magic, big-endian dims, then the already-encoded elements.
fn idx(code: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(body);
    b
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn every_type_code() {
    let t = idx_from_bytes(&idx(0x08, &[2, 2], &[0, 1, 254, 255]), "u8").unwrap();
    assert_eq!((t.dtype(), t.dims()), (DType::U8, &[2usize, 2][..]));
    assert_eq!(t.to_vec::<u8>().unwrap(), vec![0, 1, 254, 255]);

    let t = idx_from_bytes(&idx(0x09, &[3], &[0x80, 0xFF, 0x7F]), "i8").unwrap();
    assert_eq!((t.dtype(), t.to_vec::<i32>().unwrap()), (DType::I32, vec![-128, -1, 127]));

    let body: Vec<u8> = [-300i16, 2, 32767].iter().flat_map(|v| v.to_be_bytes()).collect();
    let t = idx_from_bytes(&idx(0x0B, &[3], &body), "i16").unwrap();
    assert_eq!((t.dtype(), t.to_vec::<i32>().unwrap()), (DType::I32, vec![-300, 2, 32767]));

    let body: Vec<u8> = [-70000i32, 5].iter().flat_map(|v| v.to_be_bytes()).collect();
    let t = idx_from_bytes(&idx(0x0C, &[1, 2], &body), "i32").unwrap();
    assert_eq!(t.to_vec::<i32>().unwrap(), vec![-70000, 5]);

    let body: Vec<u8> = [1.5f32, -0.25].iter().flat_map(|v| v.to_be_bytes()).collect();
    let t = idx_from_bytes(&idx(0x0D, &[2], &body), "f32").unwrap();
    assert_eq!((t.dtype(), t.to_vec::<f32>().unwrap()), (DType::F32, vec![1.5, -0.25]));

    let body: Vec<u8> = [std::f64::consts::PI].iter().flat_map(|v| v.to_be_bytes()).collect();
    let t = idx_from_bytes(&idx(0x0E, &[1, 1, 1], &body), "f64").unwrap();
    assert_eq!(
        (t.dtype(), t.dims(), t.to_vec::<f64>().unwrap()),
        (DType::F64, &[1usize, 1, 1][..], vec![std::f64::consts::PI])
    );

    let t = idx_from_bytes(&idx(0x08, &[], &[9]), "scalar").unwrap();
    assert_eq!((t.rank(), t.to_scalar::<u8>().unwrap()), (0, 9));
    let t = idx_from_bytes(&idx(0x0D, &[0, 28], &[]), "empty").unwrap();
    assert_eq!(t.dims(), &[0, 28]);
}

#[test]
fn gzip_files_are_detected_by_magic() {
    // MNIST-like: 3 images of 2x2 pixels, gzipped, read from a file without a .gz name.
    let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
    let raw = idx(0x08, &[3, 2, 2], &pixels);
    let path = std::env::temp_dir().join(format!("data_idx_test_{}", std::process::id()));
    std::fs::write(&path, gzip(&raw)).unwrap();
    let t = read_idx(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(t.dims(), &[3, 2, 2]);
    assert_eq!(t.to_vec::<u8>().unwrap(), pixels);
}

fn format_msg(r: tensor_core::Result<tensor_core::Tensor>) -> String {
    match r {
        Err(Error::Format { path, msg }) => format!("{path}: {msg}"),
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(t) => panic!("expected an error, got shape {:?}", t.dims()),
    }
}

#[test]
fn corrupt_and_truncated_files_are_errors() {
    let good = idx(0x0C, &[2, 3], &[7; 24]);
    for n in 0..good.len() {
        let m = format_msg(idx_from_bytes(&good[..n], "cut.idx"));
        assert!(m.starts_with("cut.idx: "), "{m}");
    }
    assert!(format_msg(idx_from_bytes(&good[..20], "cut.idx")).contains("truncated: dims [2, 3]"));
    let mut long = good.clone();
    long.push(0);
    assert!(format_msg(idx_from_bytes(&long, "x")).contains("corrupt"));
    assert!(format_msg(idx_from_bytes(&idx(0x0A, &[1], &[0]), "x")).contains("unknown IDX type code 0x0a"));
    assert!(format_msg(idx_from_bytes(&[1, 0, 8, 1, 0, 0, 0, 1, 5], "x")).contains("not an IDX file"));
    // Huge dims must not allocate or overflow.
    assert!(format_msg(idx_from_bytes(&idx(0x0E, &[u32::MAX, u32::MAX, u32::MAX], &[]), "x")).contains("x: "));
    // A gzip stream cut short.
    let gz = gzip(&good);
    assert!(format_msg(idx_from_bytes(&gz[..gz.len() - 10], "g.gz")).contains("gzip"));
    let io = read_idx("/nonexistent/dir/train-images-idx3-ubyte.gz");
    assert!(matches!(io, Err(Error::Io { .. })));
}

#[test]
fn dims_that_cannot_be_addressed_are_errors() {
    // Zero elements, but the strides of the other dims overflow.
    let m = format_msg(idx_from_bytes(&idx(0x08, &[0, u32::MAX, u32::MAX, u32::MAX], &[]), "z.idx"));
    assert!(m.contains("too big to address"), "{m}");
    let m = format_msg(idx_from_bytes(&idx(0x0E, &[u32::MAX, u32::MAX, 2], &[]), "z.idx"));
    assert!(m.contains("too big to address"), "{m}");
    // Addressable zero-size dims load.
    let t = idx_from_bytes(&idx(0x08, &[0, u32::MAX], &[]), "z.idx").unwrap();
    assert_eq!(t.dims(), &[0, u32::MAX as usize]);
}

#[test]
fn gzip_declaring_more_than_it_can_hold_is_an_error_before_inflating() {
    // 2^31 pixels declared in a stream of a few dozen bytes: gzip cannot expand that far.
    let gz = gzip(&idx(0x08, &[1 << 31], &[1, 2, 3]));
    let m = format_msg(idx_from_bytes(&gz, "g.gz"));
    assert!(m.contains("need 2147483648 data bytes, more than") && m.contains("gzipped bytes can hold"), "{m}");
    // A legitimately well-compressed file (1 MiB of zeros in about 1 KiB) loads.
    let zeros = idx(0x08, &[1024, 1024], &vec![0u8; 1 << 20]);
    let gz = gzip(&zeros);
    assert!(gz.len() < 2048, "{}", gz.len());
    assert_eq!(idx_from_bytes(&gz, "z.gz").unwrap().dims(), &[1024, 1024]);
}

#[test]
fn gzip_trailer_and_trailing_data_are_checked() {
    let good = idx(0x0C, &[2, 3], &[7; 24]);
    let gz = gzip(&good);
    // The CRC and length trailer cut off, or its CRC damaged.
    assert!(format_msg(idx_from_bytes(&gz[..gz.len() - 4], "g.gz")).contains("gzip"));
    let mut bad_crc = gz.clone();
    let at = gz.len() - 8;
    bad_crc[at] ^= 1;
    assert!(format_msg(idx_from_bytes(&bad_crc, "g.gz")).contains("gzip"));
    // More data than the dims say, inside the compressed stream.
    let mut long = good.clone();
    long.extend_from_slice(&[1, 2, 3]);
    assert!(format_msg(idx_from_bytes(&gzip(&long), "g.gz")).contains("corrupt: dims [2, 3]"));
    assert_eq!(idx_from_bytes(&gz, "g.gz").unwrap().to_vec::<i32>().unwrap(), vec![0x0707_0707; 6]);
}
