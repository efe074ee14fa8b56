//! Runnable examples for the stack: where the digits data set lives, a small training
//! loop shared by the `digits` example and its test, the inference path of the
//! `predict` example, the character-level GPT of `char_lm`, and the guide
//! (`docs/guide.md`) and the README, whose code blocks run as this crate's doctests
//! against the umbrella crate `torch_rs`. Metrics logging and plots come from
//! `data::metrics`, the digits loader from `data::datasets::digits`.
#![warn(missing_docs)]

pub mod char_lm;
pub mod digits;
pub mod predict;
pub mod train;

/// A device from the command line: `cpu`, `cuda` or `cuda:N` (the examples' `--device`).
pub fn parse_device(s: &str) -> Result<tensor_core::Device, String> {
    use tensor_cuda::CudaDeviceExt;
    let ordinal = match s {
        "cpu" => return Ok(tensor_core::Device::cpu()),
        "cuda" => 0,
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(format!("unknown device {s:?} (cpu, cuda or cuda:N)")),
        },
    };
    tensor_core::Device::cuda(ordinal).map_err(|e| format!("cannot open {s}: {e}"))
}

#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}

#[doc = include_str!("../../README.md")]
pub mod readme {}
