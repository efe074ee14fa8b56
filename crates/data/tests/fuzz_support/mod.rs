//! Shared by the fuzz tests of the file loaders (data's `fuzz.rs`, nn's
//! `fuzz_safetensors.rs`, optim's `fuzz_checkpoint.rs`, which include this file with
//! `#[path]`): byte-level mutations of valid files as a proptest strategy, a
//! fixed-seed runner that counts what it tried, and an allocator that records the
//! largest single allocation a thread asks for (and refuses absurd ones), so a
//! loader that sizes a buffer from a corrupt length field fails the test instead of
//! taking the machine's memory.
//!
//! Each including test binary installs the allocator:
//! `#[global_allocator] static ALLOC: fuzz_support::Probe = fuzz_support::Probe;`

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// No single allocation made while a load runs may be larger than this: past it the
/// allocator returns null, which aborts the test binary with "memory allocation of N
/// bytes failed" (an abort, because an allocator must not unwind).
pub const HARD_LIMIT: usize = 256 << 20;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A global allocator that forwards to [`System`] and, per thread, records the largest
/// request and refuses requests over the thread's limit.
pub struct Probe;

fn admit(size: usize) -> bool {
    let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
    LIMIT.try_with(|l| size <= l.get()).unwrap_or(true)
}

// SAFETY: every call forwards to `System` with the caller's arguments, or returns null
// (allowed: it reports an allocation failure).
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if admit(layout.size()) {
            unsafe { System.alloc(layout) }
        } else {
            std::ptr::null_mut()
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if admit(layout.size()) {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            std::ptr::null_mut()
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if admit(new_size) {
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            std::ptr::null_mut()
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Puts the thread's allocation limit back even when the measured code panics.
struct Reset;
impl Drop for Reset {
    fn drop(&mut self) {
        let _ = LIMIT.try_with(|l| l.set(usize::MAX));
    }
}

/// Runs `f` under [`HARD_LIMIT`]; returns its result, the largest single allocation
/// it asked for, and how long it took.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize, Duration) {
    PEAK.with(|p| p.set(0));
    LIMIT.with(|l| l.set(HARD_LIMIT));
    let _reset = Reset;
    let t0 = Instant::now();
    let r = f();
    let took = t0.elapsed();
    (r, PEAK.with(Cell::get), took)
}

/// Values written over length fields: zero, sign boundaries, all ones, powers of two.
const HUGE: [u64; 11] =
    [0, 1, 0x7F, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32, 1 << 40, 0x7FFF_FFFF_FFFF_FFFF, u64::MAX];

/// Text written over a number in a textual header (npy's dict, safetensors' JSON).
const NUMBERS: [&str; 9] = [
    "0",
    "1",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "99999999999999999999999",
    "-1",
    "1e308",
    "3.5",
];

/// One edit of a file's bytes. Positions are [`Index`]es, scaled to the file's length
/// when applied.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flips one bit.
    FlipBit(Index, u8),
    /// Cuts the file at a position.
    Truncate(Index),
    /// Inserts bytes at a position.
    Insert(Index, Vec<u8>),
    /// Overwrites bytes at a position.
    Overwrite(Index, Vec<u8>),
    /// Overwrites bytes within the first 64 (where headers live).
    OverwriteHead(u8, Vec<u8>),
    /// Deletes up to 16 bytes at a position.
    Delete(Index, u8),
    /// Writes a 4- or 8-byte integer from [`HUGE`] (little- or big-endian) at a position.
    LengthField(Index, bool, bool, u8),
    /// Replaces the n-th run of ASCII digits with one of [`NUMBERS`].
    Number(Index, u8),
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        // Bytes that mean something in the formats' headers.
        prop::collection::vec(
            prop::sample::select(&b"\x00\xff\x80'\":,{}()[]\\ \n0123456789<>|=fiubVLTFe.-PK"[..]),
            1..6
        ),
    ]
}

/// One random [`Mutation`].
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0..8u8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), bytes()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), bytes()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        3 => (0..64u8, bytes()).prop_map(|(i, b)| Mutation::OverwriteHead(i, b)),
        1 => (any::<Index>(), 1..16u8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        3 => (any::<Index>(), any::<bool>(), any::<bool>(), 0..HUGE.len() as u8)
            .prop_map(|(i, w, be, v)| Mutation::LengthField(i, w, be, v)),
        2 => (any::<Index>(), 0..NUMBERS.len() as u8).prop_map(|(i, n)| Mutation::Number(i, n)),
    ]
}

fn splice(b: &mut Vec<u8>, at: usize, new: &[u8]) {
    let at = at.min(b.len());
    let end = (at + new.len()).min(b.len());
    b.splice(at..end, new.iter().copied());
}

/// Applies the mutations in order.
pub fn apply(base: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = base.to_vec();
    for m in muts {
        let n = b.len();
        let pos = |i: &Index| if n == 0 { 0 } else { i.index(n) };
        match m {
            Mutation::FlipBit(i, bit) => {
                if n > 0 {
                    let at = pos(i);
                    b[at] ^= 1 << bit;
                }
            }
            Mutation::Truncate(i) => b.truncate(pos(i)),
            Mutation::Insert(i, new) => {
                let at = pos(i);
                b.splice(at..at, new.iter().copied());
            }
            Mutation::Overwrite(i, new) => splice(&mut b, pos(i), new),
            Mutation::OverwriteHead(at, new) => splice(&mut b, *at as usize, new),
            Mutation::Delete(i, len) => {
                let at = pos(i);
                b.drain(at..(at + *len as usize).min(n));
            }
            Mutation::LengthField(i, wide, big_endian, v) => {
                let v = HUGE[*v as usize];
                let field: Vec<u8> = match (wide, big_endian) {
                    (true, false) => v.to_le_bytes().to_vec(),
                    (true, true) => v.to_be_bytes().to_vec(),
                    (false, false) => (v as u32).to_le_bytes().to_vec(),
                    (false, true) => (v as u32).to_be_bytes().to_vec(),
                };
                splice(&mut b, pos(i), &field);
            }
            Mutation::Number(i, which) => {
                let runs: Vec<(usize, usize)> = digit_runs(&b);
                if !runs.is_empty() {
                    let (s, e) = runs[i.index(runs.len())];
                    b.splice(s..e, NUMBERS[*which as usize].bytes());
                }
            }
        }
    }
    b
}

fn digit_runs(b: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((s, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// A fixed seed so CI runs the same inputs every time; set `PROPTEST_RNG_SEED` to
/// explore others, and `PROPTEST_CASES` to try more.
pub fn config(default_cases: u32) -> Config {
    let seed = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026);
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default_cases);
    Config { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..Config::default() }
}

/// What a fuzz run tried.
#[derive(Debug, Default)]
pub struct Tally {
    /// Mutated inputs loaded (shrinking steps after a failure included).
    pub tried: usize,
    /// Loads that returned a value.
    pub loaded: usize,
    /// Loads that returned an error.
    pub errors: usize,
    /// The largest single allocation of any load, in bytes.
    pub peak_alloc: usize,
    /// The slowest load.
    pub slowest: Duration,
}

/// Loads mutations of each base input with `load` (given the base's index and the
/// mutated bytes; it returns whether it loaded a value, or panics on a broken
/// property). Fails the test when a load panics, takes
/// longer than `max_time`, or asks for a single allocation over `max_alloc(input
/// length)` bytes.
pub fn fuzz(
    format: &str,
    bases: &[Vec<u8>],
    cases: u32,
    max_alloc: impl Fn(usize) -> usize,
    max_time: Duration,
    load: impl Fn(usize, &[u8]) -> bool,
) -> Tally {
    let tally = std::cell::RefCell::new(Tally::default());
    let strategy = (0..bases.len(), prop::collection::vec(mutation(), 1..=3));
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |(which, muts)| {
        let input = apply(&bases[which], &muts);
        let (loaded, peak, took) = measure(|| load(which, &input));
        let mut t = tally.borrow_mut();
        t.tried += 1;
        if loaded {
            t.loaded += 1;
        } else {
            t.errors += 1;
        }
        t.peak_alloc = t.peak_alloc.max(peak);
        t.slowest = t.slowest.max(took);
        let limit = max_alloc(input.len());
        if peak > limit {
            return Err(TestCaseError::fail(format!(
                "{format}: a {}-byte input made a {peak}-byte allocation (limit {limit})",
                input.len()
            )));
        }
        if took > max_time {
            return Err(TestCaseError::fail(format!("{format}: a {}-byte input took {took:?}", input.len())));
        }
        Ok(())
    });
    let t = tally.into_inner();
    eprintln!(
        "fuzz {format}: {} inputs tried, {} loaded, {} errors; largest allocation {} bytes; slowest load {:?}",
        t.tried, t.loaded, t.errors, t.peak_alloc, t.slowest
    );
    if let Err(e) = result {
        panic!("fuzz {format}: {e}");
    }
    t
}
