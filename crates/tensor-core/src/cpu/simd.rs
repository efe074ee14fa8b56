//! Run-time dispatch to the widest vector instruction set the CPU has.
//!
//! The crate is compiled for the baseline of its target (SSE2 on x86-64), so a loop
//! the compiler vectorises uses 128-bit registers unless told more. Hot kernels are
//! written once, as plain loops over slices, inside `multiversion!`, which compiles
//! the body three times: for the baseline, for AVX2 + FMA and for AVX-512
//! (F/VL/BW/DQ), and picks one with the [`Isa`] the caller passes.
//!
//! Every version computes the same bits: rustc never contracts `a * b + c` into a
//! fused multiply-add on its own, and the kernels fix their accumulation order (lanes
//! of a fixed count, independent of the register width), so the choice changes the
//! speed only. The tests run each kernel at every level this CPU supports
//! ([`Isa::supported`]) and compare the results.
//!
//! [`Isa::best`] is the widest level the CPU supports, capped by the environment
//! variable `TORCH_RS_CPU_ISA` (`baseline`, `avx2` or `avx512`), read once; an
//! unknown value is ignored. [`cpu_isa`](crate::cpu_isa) reports the level in use.

use std::fmt;
use std::sync::OnceLock;

/// A vector instruction-set level of the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuIsa {
    /// The target's baseline (SSE2 on x86-64; every other architecture).
    Baseline,
    /// x86-64 with AVX2 and FMA (256-bit vectors).
    Avx2,
    /// x86-64 with AVX-512 F, VL, BW and DQ (512-bit vectors).
    Avx512,
}

impl CpuIsa {
    /// The level's name as `TORCH_RS_CPU_ISA` takes it.
    pub fn name(self) -> &'static str {
        match self {
            CpuIsa::Baseline => "baseline",
            CpuIsa::Avx2 => "avx2",
            CpuIsa::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<CpuIsa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "baseline" | "scalar" | "sse2" => Some(CpuIsa::Baseline),
            "avx2" => Some(CpuIsa::Avx2),
            "avx512" => Some(CpuIsa::Avx512),
            _ => None,
        }
    }

    /// True when this CPU can run code compiled for the level.
    fn runs_here(self) -> bool {
        match self {
            CpuIsa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx512 => {
                CpuIsa::Avx2.runs_here()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512dq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

impl fmt::Display for CpuIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A level this CPU supports: only [`Isa::best`] and [`Isa::supported`] make one, so
/// holding an `Isa` is the proof `multiversion!` needs to call the level's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(CpuIsa);

impl Isa {
    /// The level.
    pub fn level(self) -> CpuIsa {
        self.0
    }

    /// Every level this CPU supports, narrowest first.
    pub fn supported() -> Vec<Isa> {
        [CpuIsa::Baseline, CpuIsa::Avx2, CpuIsa::Avx512].into_iter().filter(|l| l.runs_here()).map(Isa).collect()
    }

    /// The widest supported level, capped by `TORCH_RS_CPU_ISA`; detected once.
    #[inline]
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = std::env::var("TORCH_RS_CPU_ISA").ok().and_then(|v| CpuIsa::parse(&v));
            let all = Isa::supported();
            let fit = all.iter().rev().find(|i| cap.is_none_or(|c| i.0 <= c));
            fit.copied().unwrap_or(Isa(CpuIsa::Baseline))
        })
    }
}

/// Defines `fn name(isa: Isa, args..) -> R` that runs `body` compiled for `isa`'s
/// level (see the module docs). The body is a plain function body; it may call
/// `#[inline(always)]` helpers, which are compiled into each version.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(isa: $crate::cpu::simd::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx,avx2,fma,avx512f,avx512vl,avx512bw,avx512dq")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                generic($($arg),*)
            }
            match isa.level() {
                // SAFETY: an `Isa` is only made for a level the CPU supports.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::simd::CpuIsa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::simd::CpuIsa::Avx2 => unsafe { avx2($($arg),*) },
                _ => generic($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            let mut lanes = [0f32; 16];
            for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
                for k in 0..16 {
                    lanes[k] += x[k] * y[k];
                }
            }
            lanes.iter().sum()
        }
    }

    #[test]
    fn every_supported_level_gives_the_same_bits_as_an_f64_reference() {
        let a: Vec<f32> = (0..4096).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let b: Vec<f32> = (0..4096).map(|i| ((i * 53 % 97) as f32 - 48.0) / 5.0).collect();
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let levels = Isa::supported();
        assert_eq!(levels[0].level(), CpuIsa::Baseline);
        let first = dot(levels[0], &a, &b);
        assert!((first as f64 - exact).abs() <= 1e-5 * exact.abs().max(1.0), "{first} vs {exact}");
        for &l in &levels {
            assert_eq!(dot(l, &a, &b).to_bits(), first.to_bits(), "level {}", l.level());
        }
        assert!(levels.contains(&Isa::best()));
    }

    #[test]
    fn levels_parse_and_print() {
        for l in [CpuIsa::Baseline, CpuIsa::Avx2, CpuIsa::Avx512] {
            assert_eq!(CpuIsa::parse(&l.to_string()), Some(l));
        }
        assert_eq!(CpuIsa::parse(" AVX2 "), Some(CpuIsa::Avx2));
        assert_eq!(CpuIsa::parse("neon"), None);
        assert!(CpuIsa::Baseline < CpuIsa::Avx2 && CpuIsa::Avx2 < CpuIsa::Avx512);
    }
}
