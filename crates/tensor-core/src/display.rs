//! `Display` and `Debug` for tensors, formatted like PyTorch's `print(t)`.

use std::fmt;

use crate::{DType, Tensor};

const SUMMARY_THRESHOLD: usize = 1000;
const EDGE: usize = 3;

fn fmt_val(v: f64, dtype: DType, width: usize) -> String {
    let s = if dtype == DType::Bool {
        if v != 0.0 {
            "True".to_string()
        } else {
            "False".to_string()
        }
    } else if dtype.is_float() {
        if v.is_nan() {
            "nan".into()
        } else if v.is_infinite() {
            if v > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        } else {
            format!("{v:.4}")
        }
    } else {
        format!("{}", v as i64)
    };
    format!("{s:>width$}")
}

fn rec(
    out: &mut String,
    data: &[f64],
    dims: &[usize],
    strides: &[usize],
    base: usize,
    depth: usize,
    summarize: bool,
    dtype: DType,
    width: usize,
) {
    if dims.is_empty() {
        out.push_str(&fmt_val(data[base], dtype, width));
        return;
    }
    out.push('[');
    let n = dims[0];
    let idxs: Vec<Option<usize>> = if summarize && n > 2 * EDGE {
        (0..EDGE).map(Some).chain(std::iter::once(None)).chain((n - EDGE..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    for (k, i) in idxs.iter().enumerate() {
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
            Some(i) => {
                rec(out, data, &dims[1..], &strides[1..], base + i * strides[0], depth + 1, summarize, dtype, width)
            }
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
        let width = data.iter().map(|&v| fmt_val(v, self.dtype(), 0).len()).max().unwrap_or(1);
        let strides = self.shape().contiguous_strides();
        let mut s = String::from("tensor(");
        if self.numel() == 0 {
            s.push_str(&format!("[], size={:?}", self.dims()));
        } else {
            rec(&mut s, &data, self.dims(), &strides, 0, 0, summarize, self.dtype(), width);
        }
        if self.dtype() != DType::F32 && self.dtype() != DType::I64 && self.dtype() != DType::Bool {
            s.push_str(&format!(", dtype={}", self.dtype()));
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
