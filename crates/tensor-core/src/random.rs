//! Seeded random numbers: a counter-based generator, so the same seed gives the same
//! numbers on every run, whatever the thread count, and on every device (values are
//! generated on the host and copied).

use parking_lot::Mutex;
use std::sync::OnceLock;

use crate::{Error, Result};

/// A counter-based random generator: `(seed, counter) -> 64 random bits`.
///
/// Its whole state is two integers, so it can be saved in a checkpoint and restored
/// exactly ([`Generator::state`], [`Generator::set_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generator {
    seed: u64,
    counter: u64,
}

#[inline(always)]
fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Generator {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Generator { seed, counter: 0 }
    }

    /// `(seed, counter)`.
    pub fn state(&self) -> (u64, u64) {
        (self.seed, self.counter)
    }

    /// Restores a state from [`Generator::state`].
    pub fn set_state(&mut self, state: (u64, u64)) {
        self.seed = state.0;
        self.counter = state.1;
    }

    /// Resets to `seed`.
    pub fn manual_seed(&mut self, seed: u64) {
        self.seed = seed;
        self.counter = 0;
    }

    /// Reserves `n` draws and returns the first counter value.
    pub fn advance(&mut self, n: u64) -> u64 {
        let c = self.counter;
        self.counter = self.counter.wrapping_add(n);
        c
    }

    /// The 64 random bits for counter `c` (a pure function of seed and counter).
    #[inline(always)]
    pub fn bits_at(&self, c: u64) -> u64 {
        mix(mix(self.seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(c.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let c = self.advance(1);
        self.bits_at(c)
    }

    /// `n` uniform values in `[0, 1)` with 53 random bits each.
    pub fn uniform_f64(&mut self, n: usize) -> Vec<f64> {
        let c0 = self.advance(n as u64);
        (0..n as u64).map(|i| self.uniform_at(c0 + i)).collect()
    }

    /// [`Generator::uniform_f64`] that reports a failed allocation of the `n` values
    /// as [`Error::OutOfMemory`] (and then draws nothing) instead of aborting.
    pub fn try_uniform_f64(&mut self, n: usize) -> Result<Vec<f64>> {
        let mut out = try_vec(n)?;
        let c0 = self.advance(n as u64);
        out.extend((0..n as u64).map(|i| self.uniform_at(c0 + i)));
        Ok(out)
    }

    #[inline(always)]
    fn uniform_at(&self, c: u64) -> f64 {
        (self.bits_at(c) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `n` standard normal values (Box-Muller on pairs of uniforms).
    pub fn normal_f64(&mut self, n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n.div_ceil(2) * 2);
        self.normal_into(n, &mut out);
        out
    }

    /// [`Generator::normal_f64`] that reports a failed allocation as
    /// [`Error::OutOfMemory`] (and then draws nothing) instead of aborting.
    pub fn try_normal_f64(&mut self, n: usize) -> Result<Vec<f64>> {
        // Room for the pairs: `2 * ceil(n / 2)` values, one more than `n` when odd.
        let mut out = try_vec(n.checked_add(1).ok_or_else(|| oom::<f64>(n))?)?;
        self.normal_into(n, &mut out);
        Ok(out)
    }

    /// Appends `n` standard normal values to `out` (which has room for them).
    fn normal_into(&mut self, n: usize, out: &mut Vec<f64>) {
        let pairs = n.div_ceil(2);
        let c0 = self.advance(2 * pairs as u64);
        for i in 0..pairs as u64 {
            let u1 = ((self.bits_at(c0 + 2 * i) >> 11) as f64 + 1.0) * (1.0 / ((1u64 << 53) as f64 + 1.0));
            let u2 = (self.bits_at(c0 + 2 * i + 1) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            let r = (-2.0 * u1.ln()).sqrt();
            let t = 2.0 * std::f64::consts::PI * u2;
            out.push(r * t.cos());
            out.push(r * t.sin());
        }
        out.truncate(n);
    }

    /// A uniform integer in `[0, n)` (n > 0), without modulo bias worth noticing
    /// (multiply-shift on 64 bits).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }

    /// A random permutation of `0..n` as I64 values (the same draws as
    /// [`Generator::permutation`]); a failed allocation is [`Error::OutOfMemory`]
    /// (and then draws nothing) instead of an abort.
    pub fn try_permutation_i64(&mut self, n: usize) -> Result<Vec<i64>> {
        let mut p = try_vec(n)?;
        p.extend(0..n as i64);
        self.shuffle(&mut p);
        Ok(p)
    }

    /// Fisher-Yates shuffle in place.
    fn shuffle<T>(&mut self, p: &mut [T]) {
        for i in (1..p.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
    }
}

/// The error for a failed host allocation of `n` values of `T`.
fn oom<T>(n: usize) -> Error {
    Error::OutOfMemory { device: "cpu".into(), bytes: n.saturating_mul(std::mem::size_of::<T>()) }
}

/// An empty vector with room for `n` values, or [`Error::OutOfMemory`] when the
/// host cannot provide it (the size overflows or the allocator refuses), so that
/// huge sizes from users fail fast instead of aborting the process.
pub(crate) fn try_vec<T>(n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom::<T>(n))?;
    Ok(v)
}

impl Default for Generator {
    fn default() -> Self {
        Generator::new(0x5eed)
    }
}

fn global() -> &'static Mutex<Generator> {
    static G: OnceLock<Mutex<Generator>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(Generator::default()))
}

/// Seeds the global generator (PyTorch's `torch.manual_seed`).
pub fn manual_seed(seed: u64) {
    global().lock().manual_seed(seed);
}

/// Runs `f` with the global generator locked.
pub fn with_global<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    f(&mut global().lock())
}

/// The global generator's state, for checkpoints.
pub fn global_state() -> (u64, u64) {
    global().lock().state()
}

/// Restores the global generator's state.
pub fn set_global_state(state: (u64, u64)) {
    global().lock().set_state(state);
}
