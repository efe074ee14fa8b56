//! `Display` and `Debug` for tensors, formatted like PyTorch's `print(t)`.

use std::fmt;

use crate::{DType, Tensor};

const SUMMARY_THRESHOLD: usize = 1000;
const EDGE: usize = 3;
const PRECISION: usize = 4;

/// How float elements are written (PyTorch's `_Formatter` modes).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Integers and bools: the plain value.
    Plain,
    /// Floats that are all integral: `3.`
    IntFloat,
    /// `3.1416`
    Fixed,
    /// `3.1416e+00`
    Sci,
}

/// Python's `'{:.4e}'` (exponent with a sign and at least two digits).
fn sci(v: f64) -> String {
    let s = format!("{v:.PRECISION$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let exp: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
        }
        None => s,
    }
}

struct Formatter {
    dtype: DType,
    mode: Mode,
    width: usize,
}

impl Formatter {
    /// Picks the mode and the column width from the values that will be printed.
    fn new(dtype: DType, shown: &[f64]) -> Self {
        let mut f = Formatter { dtype, mode: Mode::Plain, width: 1 };
        if !dtype.is_float() {
            f.width = shown.iter().map(|&v| f.raw(v).len()).max().unwrap_or(1);
            return f;
        }
        f.mode = Mode::IntFloat;
        let nz: Vec<f64> = shown.iter().filter(|v| v.is_finite() && **v != 0.0).copied().collect();
        if nz.is_empty() {
            return f;
        }
        let max = nz.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let min = nz.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
        let int = nz.iter().all(|v| v.fract() == 0.0);
        let wide = max / min > 1000.0 || max > 1.0e8;
        f.mode = match (int, wide || min < 1.0e-4) {
            (true, _) if wide => Mode::Sci,
            (true, _) => Mode::IntFloat,
            (false, true) => Mode::Sci,
            (false, false) => Mode::Fixed,
        };
        f.width = nz.iter().map(|&v| f.raw(v).len()).max().unwrap_or(1);
        f
    }

    /// The value without padding.
    fn raw(&self, v: f64) -> String {
        if self.dtype == DType::Bool {
            return if v != 0.0 { "True" } else { "False" }.to_string();
        }
        if !self.dtype.is_float() {
            return format!("{}", v as i64);
        }
        if v.is_nan() {
            return "nan".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "inf" } else { "-inf" }.into();
        }
        match self.mode {
            Mode::Sci => sci(v),
            Mode::IntFloat => format!("{v:.0}."),
            _ => format!("{v:.PRECISION$}"),
        }
    }

    fn fmt(&self, v: f64) -> String {
        format!("{:>w$}", self.raw(v), w = self.width)
    }
}

/// The indices printed along a dim of size `n`; `None` marks the `...`.
fn shown(n: usize, summarize: bool) -> Vec<Option<usize>> {
    if summarize && n > 2 * EDGE {
        (0..EDGE).map(Some).chain(std::iter::once(None)).chain((n - EDGE..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    }
}

/// Collects the values that will be printed (the formatter looks only at those).
fn collect(out: &mut Vec<f64>, data: &[f64], dims: &[usize], strides: &[usize], base: usize, summarize: bool) {
    if dims.is_empty() {
        out.push(data[base]);
        return;
    }
    for i in shown(dims[0], summarize).into_iter().flatten() {
        collect(out, data, &dims[1..], &strides[1..], base + i * strides[0], summarize);
    }
}

#[allow(clippy::too_many_arguments)]
fn rec(
    out: &mut String,
    data: &[f64],
    dims: &[usize],
    strides: &[usize],
    base: usize,
    depth: usize,
    summarize: bool,
    f: &Formatter,
) {
    if dims.is_empty() {
        out.push_str(&f.fmt(data[base]));
        return;
    }
    out.push('[');
    for (k, i) in shown(dims[0], summarize).iter().enumerate() {
        if k > 0 {
            if dims.len() > 1 {
                out.push(',');
                out.push_str(&"\n".repeat(dims.len() - 1));
                out.push_str(&" ".repeat(depth + 8));
            } else {
                out.push_str(", ");
            }
        }
        match i {
            Some(i) => rec(out, data, &dims[1..], &strides[1..], base + i * strides[0], depth + 1, summarize, f),
            // PyTorch writes " ..." among scalars and "..." among rows.
            None if dims.len() == 1 => out.push_str(" ..."),
            None => out.push_str("..."),
        }
    }
    out.push(']');
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = match self.to_vec_f64() {
            Ok(d) => d,
            Err(e) => return write!(f, "tensor(<unreadable: {e}>)"),
        };
        let summarize = self.numel() > SUMMARY_THRESHOLD;
        let strides = self.shape().contiguous_strides();
        let mut s = String::from("tensor(");
        if self.numel() == 0 {
            s.push_str("[]");
            if self.rank() != 1 {
                let dims: Vec<String> = self.dims().iter().map(|d| d.to_string()).collect();
                let comma = if dims.len() == 1 { "," } else { "" };
                s.push_str(&format!(", size=({}{comma})", dims.join(", ")));
            }
        } else {
            let mut vals = Vec::new();
            collect(&mut vals, &data, self.dims(), &strides, 0, summarize);
            let fm = Formatter::new(self.dtype(), &vals);
            rec(&mut s, &data, self.dims(), &strides, 0, 0, summarize, &fm);
        }
        if self.dtype() != DType::F32 && self.dtype() != DType::I64 && self.dtype() != DType::Bool {
            s.push_str(&format!(", dtype=torch.{}", self.dtype()));
        }
        if !self.device().is_cpu() {
            s.push_str(&format!(", device='{}'", self.device()));
        }
        s.push(')');
        f.write_str(&s)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor[dims {:?}, strides {:?}, offset {}, {}, {}]",
            self.dims(),
            self.strides(),
            self.layout().offset(),
            self.dtype(),
            self.device()
        )
    }
}
