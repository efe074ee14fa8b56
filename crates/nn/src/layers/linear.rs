//! Linear and Bilinear layers.

use autograd::Var;
use tensor_core::{Error, Result};

use super::{inv_sqrt, uniform_param};
use crate::module::{Forward, Module, Param, Visitor};

/// `y = x W^T + b` over the last dim: `[*, in] -> [*, out]`.
///
/// Weights and bias start as `U(-1/sqrt(in), 1/sqrt(in))`, like PyTorch.
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, Linear, Module};
/// use tensor_core::{DType, Device, Tensor};
/// let fc = Linear::new(3, 2, true)?;
/// let y = fc.forward(&Var::from(Tensor::ones([4, 3], DType::F32, &Device::cpu())?))?;
/// assert_eq!(y.dims(), &[4, 2]);
/// assert_eq!(fc.named_parameters()[0].0, "weight");
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Param,
    /// `[out_features]`, when the layer has a bias.
    pub bias: Option<Param>,
}

impl Linear {
    /// A layer from `in_features` to `out_features`, with or without a bias.
    pub fn new(in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        let b = inv_sqrt(in_features);
        Ok(Linear {
            weight: uniform_param(&[out_features, in_features], b)?,
            bias: if bias { Some(uniform_param(&[out_features], b)?) } else { None },
        })
    }

    /// Number of input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Number of output features.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Linear {
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
    }
}

impl Forward for Linear {
    fn forward(&self, x: &Var) -> Result<Var> {
        let w = self.weight.var();
        if x.rank() == 0 || x.dims()[x.rank() - 1] != w.dims()[1] {
            return Err(Error::shape(
                "Linear",
                x.dims(),
                w.dims(),
                format!("expected an input whose last dim is in_features={}", w.dims()[1]),
            ));
        }
        let y = x.matmul(&w.t()?)?;
        match &self.bias {
            Some(b) => y.add(&b.var()),
            None => Ok(y),
        }
    }
}

/// `y_k = x1^T W_k x2 + b_k`: `([*, in1], [*, in2]) -> [*, out]`.
///
/// Weights and bias start as `U(-1/sqrt(in1), 1/sqrt(in1))`, like PyTorch. It takes
/// two inputs, so it has [`Bilinear::forward2`] instead of [`Forward`].
#[derive(Clone, Debug)]
pub struct Bilinear {
    /// `[out, in1, in2]`.
    pub weight: Param,
    /// `[out]`, when the layer has a bias.
    pub bias: Option<Param>,
}

impl Bilinear {
    /// A layer mapping `in1` and `in2` features to `out`.
    pub fn new(in1: usize, in2: usize, out: usize, bias: bool) -> Result<Bilinear> {
        let b = inv_sqrt(in1);
        Ok(Bilinear {
            weight: uniform_param(&[out, in1, in2], b)?,
            bias: if bias { Some(uniform_param(&[out], b)?) } else { None },
        })
    }

    /// Applies the layer to a pair of inputs with equal leading dims.
    pub fn forward2(&self, x1: &Var, x2: &Var) -> Result<Var> {
        let w = self.weight.var();
        let (o, i1, i2) = (w.dims()[0], w.dims()[1], w.dims()[2]);
        let bad = x1.rank() == 0
            || x2.rank() == 0
            || x1.dims()[x1.rank() - 1] != i1
            || x2.dims()[x2.rank() - 1] != i2
            || x1.dims()[..x1.rank() - 1] != x2.dims()[..x2.rank() - 1];
        if bad {
            return Err(Error::shape(
                "Bilinear",
                x1.dims(),
                x2.dims(),
                format!("expected inputs [*, {i1}] and [*, {i2}] with the same leading dims"),
            ));
        }
        let lead = x1.dims()[..x1.rank() - 1].to_vec();
        let n: usize = lead.iter().product();
        let a = x1.reshape(&[n as isize, i1 as isize])?;
        let b = x2.reshape(&[n as isize, 1, i2 as isize])?;
        // [n, in1] x [in1, out*in2] -> [n, out, in2], then contract in2 with x2.
        let wm = w.permute(&[1, 0, 2])?.reshape(&[i1 as isize, (o * i2) as isize])?;
        let t = a.matmul(&wm)?.reshape(&[n as isize, o as isize, i2 as isize])?;
        let mut y = t.mul(&b)?.sum(&[-1], false)?;
        if let Some(bias) = &self.bias {
            y = y.add(&bias.var())?;
        }
        let mut shape: Vec<isize> = lead.iter().map(|&d| d as isize).collect();
        shape.push(o as isize);
        y.reshape(&shape)
    }
}

impl Module for Bilinear {
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
    }
}
