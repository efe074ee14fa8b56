//! Fuzzing the `.npy`, `.npz` and IDX readers: valid files, mutated (bit flips, cuts,
//! inserted and deleted bytes, overwritten headers, huge length fields, huge numbers
//! in the header text), must load to a usable tensor or fail with a clean `Err`:
//! never a panic, a hang or an allocation out of proportion to the file.
//!
//! The inputs come from a fixed seed (`PROPTEST_RNG_SEED` picks another,
//! `PROPTEST_CASES` sets how many per format); run with `--nocapture` to see how many
//! inputs each format tried.

mod fuzz_support;

use std::io::Write;
use std::time::Duration;

use data::idx::idx_from_bytes;
use data::npy::{npy_from_bytes, npy_to_bytes, npz_from_bytes, npz_to_bytes};
use fuzz_support::fuzz;
use tensor_core::{DType, Error, Result, Tensor};

#[global_allocator]
static ALLOC: fuzz_support::Probe = fuzz_support::Probe;

/// Generous for a debug build on a loaded CI machine: the loads take microseconds.
const MAX_TIME: Duration = Duration::from_secs(2);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn sample(dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| (i % 5) as f64).collect::<Vec<_>>(), shape.to_vec())
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Reads every element of a loaded tensor, so a tensor whose shape and data disagree
/// (or that tensor ops cannot handle) fails here rather than in a user's program.
fn usable(t: &Tensor) -> bool {
    let v = t.to_vec_f64().expect("a loaded tensor is readable");
    assert_eq!(v.len(), t.numel());
    assert_eq!(t.contiguous().expect("contiguous").dims(), t.dims());
    true
}

/// An error from a reader must be a format error naming the input.
fn clean(r: Result<bool>, name: &str) -> bool {
    match r {
        Ok(loaded) => loaded,
        Err(Error::Format { path, .. }) => {
            assert!(path.starts_with(name), "error names {path:?}, not {name:?}");
            false
        }
        Err(e) => panic!("expected a format error, got {e:?}"),
    }
}

#[test]
fn fuzz_npy() {
    let mut bases: Vec<Vec<u8>> = [
        (DType::F32, &[2usize, 3][..]),
        (DType::Bool, &[5]),
        (DType::I64, &[]),
        (DType::U8, &[0, 3]),
        (DType::BF16, &[2, 1, 2]),
        (DType::F16, &[3]),
    ]
    .iter()
    .map(|(d, s)| npy_to_bytes(&sample(*d, s)).unwrap())
    .collect();
    for f in ["f8_fortran.npy", "i4_big.npy", "i4_v2.npy", "i4_v3.npy", "u1.npy"] {
        bases.push(fixture(f));
    }
    let t = fuzz(
        "npy",
        &bases,
        20000,
        |len| 8 * len + (1 << 20),
        MAX_TIME,
        |_, b| clean(npy_from_bytes(b, "f.npy").map(|t| usable(&t)), "f.npy"),
    );
    assert!(t.loaded > 0 && t.errors > 0, "{t:?}");
}

#[test]
fn fuzz_npz() {
    let x = sample(DType::F32, &[2, 3]);
    let y = sample(DType::I32, &[40]);
    let mut bases = vec![
        npz_to_bytes(&[("x", &x), ("y", &y)], false).unwrap(),
        npz_to_bytes(&[("x", &x), ("y", &y)], true).unwrap(),
    ];
    for f in ["two.npz", "two_compressed.npz"] {
        bases.push(fixture(f));
    }
    // Deflate legitimately expands up to about 1032:1, so a mutated compressed member
    // may inflate to that much, never more.
    let t = fuzz(
        "npz",
        &bases,
        20000,
        |len| 1100 * len + (1 << 20),
        MAX_TIME,
        |_, b| clean(npz_from_bytes(b, "f.npz").map(|v| v.iter().all(|(_, t)| usable(t))), "f.npz"),
    );
    assert!(t.loaded > 0 && t.errors > 0, "{t:?}");
}

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
fn fuzz_idx() {
    let pixels: Vec<u8> = (0..48).map(|i| i * 5).collect();
    let floats: Vec<u8> = [1.5f32, -2.0, 0.25].iter().flat_map(|v| v.to_be_bytes()).collect();
    let shorts: Vec<u8> = [-300i16, 7].iter().flat_map(|v| v.to_be_bytes()).collect();
    let plain = vec![
        idx(0x08, &[3, 4, 4], &pixels),
        idx(0x0D, &[3], &floats),
        idx(0x0B, &[1, 2], &shorts),
        idx(0x08, &[], &[9]),
        idx(0x0E, &[0, 28], &[]),
    ];
    let mut bases = plain.clone();
    bases.extend(plain.iter().map(|b| gzip(b)));
    let t = fuzz(
        "idx",
        &bases,
        20000,
        |len| 1100 * len + (1 << 20),
        MAX_TIME,
        |_, b| clean(idx_from_bytes(b, "f.idx").map(|t| usable(&t)), "f.idx"),
    );
    assert!(t.loaded > 0 && t.errors > 0, "{t:?}");
}

#[test]
fn npz_deflate_bomb_reads_only_what_the_npy_header_declares() {
    use std::io::Cursor;
    // A member whose .npy header and directory entry both say 64 data bytes, but
    // whose deflate stream goes on to inflate to 64 MiB more.
    let npy = npy_to_bytes(&sample(DType::U8, &[64])).unwrap();
    let mut payload = npy.clone();
    payload.resize(npy.len() + (64 << 20), 0);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::DEFAULT.compression_method(zip::CompressionMethod::Deflated);
    w.start_file("t.npy", options).unwrap();
    w.write_all(&payload).unwrap();
    let mut z = w.finish().unwrap().into_inner();
    drop(payload);
    // Patch the central entry's uncompressed size (no ZIP64 here) to the honest .npy length.
    let eocd = z.len() - 22;
    let cd = u32::from_le_bytes(z[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    z[cd + 24..cd + 28].copy_from_slice(&(npy.len() as u32).to_le_bytes());
    assert!(z.len() < 1 << 20, "the bomb is small: {} bytes", z.len());

    let (r, peak, took) = fuzz_support::measure(|| npz_from_bytes(&z, "bomb.npz").map(|v| v.len()));
    match r {
        Err(Error::Format { path, msg }) => {
            assert!(path == "bomb.npz" && msg.contains("member \"t.npy\"") && msg.contains("runs past"), "{msg}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // The reader stops at the declared end: no allocation near the 64 MiB it would inflate to.
    assert!(peak < 2 << 20, "largest allocation {peak} bytes");
    assert!(took < MAX_TIME, "took {took:?}");

    // The same member with its true size declared but a .npy header of 64 bytes:
    // refused from the header, before the data is inflated.
    let mut z2 = z.clone();
    z2[cd + 24..cd + 28].copy_from_slice(&((npy.len() + (64 << 20)) as u32).to_le_bytes());
    let (r, peak, _) = fuzz_support::measure(|| npz_from_bytes(&z2, "bomb2.npz").map(|v| v.len()));
    match r {
        Err(Error::Format { path, msg }) => {
            assert!(path == "bomb2.npz:t.npy" && msg.contains("unexpected bytes"), "{msg}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(peak < 2 << 20, "largest allocation {peak} bytes");
}
