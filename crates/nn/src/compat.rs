//! Stand-ins for `Var` ops that autograd does not provide yet. Inherent `Var`
//! methods of the same name take precedence over these trait methods, so each
//! stand-in is shadowed (and this trait's import reported unused) as soon as the real
//! op lands; then it is deleted.

use autograd::Var;
use tensor_core::{DType, Error, Result, Tensor};

#[allow(dead_code)]
pub(crate) trait VarNnCompat {
    fn softmax(&self, dim: isize) -> Result<Var>;
    fn log_softmax(&self, dim: isize) -> Result<Var>;
    fn embedding(&self, indices: &Tensor) -> Result<Var>;
    fn conv1d(&self, w: &Var, b: Option<&Var>, s: usize, p: usize, d: usize, g: usize) -> Result<Var>;
    #[allow(clippy::too_many_arguments)]
    fn conv2d(&self, w: &Var, b: Option<&Var>, s: [usize; 2], p: [usize; 2], d: [usize; 2], g: usize) -> Result<Var>;
    #[allow(clippy::too_many_arguments)]
    fn conv_transpose2d(
        &self,
        w: &Var,
        b: Option<&Var>,
        s: [usize; 2],
        p: [usize; 2],
        op: [usize; 2],
        d: [usize; 2],
        g: usize,
    ) -> Result<Var>;
    fn max_pool2d(&self, k: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2], ceil: bool) -> Result<Var>;
    fn avg_pool2d(&self, k: [usize; 2], s: [usize; 2], p: [usize; 2], ceil: bool, cip: bool) -> Result<Var>;
    fn adaptive_avg_pool2d(&self, out: [usize; 2]) -> Result<Var>;
}

fn missing(op: &'static str) -> Error {
    Error::Autograd(format!("{op}: not available on Var yet"))
}

impl VarNnCompat for Var {
    fn softmax(&self, dim: isize) -> Result<Var> {
        self.log_softmax(dim)?.exp()
    }
    fn log_softmax(&self, dim: isize) -> Result<Var> {
        let m = Var::from(self.tensor().amax(&[dim], true)?);
        let z = self.sub(&m)?;
        z.sub(&z.exp()?.sum(&[dim], true)?.log()?)
    }
    fn embedding(&self, indices: &Tensor) -> Result<Var> {
        let (num, dim) = (self.dims()[0], self.dims()[1]);
        let idx = indices.to_dtype(DType::I64)?.to_vec::<i64>()?;
        let mut oh = vec![0.0; idx.len() * num];
        for (r, &i) in idx.iter().enumerate() {
            if i < 0 || i as usize >= num {
                return Err(Error::IndexOutOfRange { op: "embedding", index: i, dim: 0, size: num });
            }
            oh[r * num + i as usize] = 1.0;
        }
        let oh = Tensor::from_vec(oh, [idx.len(), num])?.to_dtype(self.dtype())?;
        let mut shape: Vec<isize> = indices.dims().iter().map(|&d| d as isize).collect();
        shape.push(dim as isize);
        Var::from(oh).matmul(self)?.reshape(&shape)
    }
    fn conv1d(&self, _: &Var, _: Option<&Var>, _: usize, _: usize, _: usize, _: usize) -> Result<Var> {
        Err(missing("conv1d"))
    }
    fn conv2d(&self, _: &Var, _: Option<&Var>, _: [usize; 2], _: [usize; 2], _: [usize; 2], _: usize) -> Result<Var> {
        Err(missing("conv2d"))
    }
    fn conv_transpose2d(
        &self,
        _: &Var,
        _: Option<&Var>,
        _: [usize; 2],
        _: [usize; 2],
        _: [usize; 2],
        _: [usize; 2],
        _: usize,
    ) -> Result<Var> {
        Err(missing("conv_transpose2d"))
    }
    fn max_pool2d(&self, _: [usize; 2], _: [usize; 2], _: [usize; 2], _: [usize; 2], _: bool) -> Result<Var> {
        Err(missing("max_pool2d"))
    }
    fn avg_pool2d(&self, _: [usize; 2], _: [usize; 2], _: [usize; 2], _: bool, _: bool) -> Result<Var> {
        Err(missing("avg_pool2d"))
    }
    fn adaptive_avg_pool2d(&self, _: [usize; 2]) -> Result<Var> {
        Err(missing("adaptive_avg_pool2d"))
    }
}
