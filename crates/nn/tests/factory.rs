//! Layers built in a chosen dtype and device ([`nn::Factory`], PyTorch's `dtype=` and
//! `device=` arguments).

use autograd::Var;
use nn::{
    BatchNorm2d, Embedding, Factory, Forward, Linear, LstmConfig, Module, TransformerConfig, TransformerEncoderLayer,
    LSTM,
};
use tensor_core::{DType, Device, Tensor};

type R = tensor_core::Result<()>;

fn all_f64(m: &dyn Module) -> tensor_core::Result<Vec<(String, DType)>> {
    Ok(m.named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.tensor().dtype()))
        .filter(|(_, d)| *d != DType::F64)
        .collect())
}

/// Draws happen in F32 on the CPU, so the F64 build is the F32 build converted.
#[test]
fn an_f64_linear_holds_the_f32_linears_values_seeded_alike() -> R {
    tensor_core::manual_seed(7);
    let a = Linear::new(5, 4, true)?;
    tensor_core::manual_seed(7);
    let b = Factory::new().dtype(DType::F64).build(|| Linear::new(5, 4, true))?;
    for (pa, pb) in a.parameters().iter().zip(b.parameters()) {
        assert_eq!(pb.dtype(), DType::F64);
        let want: Vec<f64> = pa.tensor().to_vec::<f32>()?.into_iter().map(f64::from).collect();
        assert_eq!(pb.tensor().to_vec::<f64>()?, want);
    }
    Ok(())
}

#[test]
fn batch_norm_buffers_follow_the_factory_but_its_counter_stays_i64() -> R {
    let bn = Factory::new().dtype(DType::F64).device(&Device::cpu()).build(|| BatchNorm2d::new(3))?;
    assert!(all_f64(&bn)?.is_empty());
    let named: Vec<(String, DType)> = bn.named_buffers().into_iter().map(|(n, b)| (n, b.tensor().dtype())).collect();
    for (n, d) in &named {
        let want = if n == "num_batches_tracked" { DType::I64 } else { DType::F64 };
        assert_eq!(*d, want, "{n}");
    }
    assert_eq!(named.len(), 3);
    Ok(())
}

#[test]
fn whole_models_build_in_f64_and_run_on_f64_inputs() -> R {
    let f = Factory::new().dtype(DType::F64);
    let enc = f.build(|| {
        TransformerEncoderLayer::new(
            8,
            2,
            TransformerConfig { dim_feedforward: 16, dropout: 0.0, ..Default::default() },
        )
    })?;
    assert!(all_f64(&enc)?.is_empty(), "{:?}", all_f64(&enc)?);
    let x = Var::from(Tensor::randn([3, 2, 8], DType::F64, &Device::cpu())?);
    assert_eq!(enc.forward(&x)?.dtype(), DType::F64);
    let lstm = f.build(|| LSTM::new(4, 3, LstmConfig { num_layers: 2, ..Default::default() }))?;
    assert!(all_f64(&lstm)?.is_empty());
    let y = lstm.forward(&Var::from(Tensor::randn([5, 2, 4], DType::F64, &Device::cpu())?))?;
    assert_eq!((y.dtype(), y.dims()), (DType::F64, &[5usize, 2, 3][..]));
    let emb = f.build(|| Embedding::new(6, 3, Some(2)))?;
    let w = emb.weight.tensor();
    assert_eq!(w.dtype(), DType::F64);
    assert_eq!(w.narrow(0, 2, 1)?.to_vec::<f64>()?, vec![0.0; 3]);
    Ok(())
}

#[test]
fn scopes_nest_and_are_restored_even_when_the_builder_fails() -> R {
    let outer = Factory::new().dtype(DType::F64);
    let (inner_dtype, after_inner) = outer.build(|| {
        let half = Factory::new().dtype(DType::F16).build(|| Linear::new(2, 2, false))?;
        let after = Linear::new(2, 2, false)?;
        Ok((half.weight.tensor().dtype(), after.weight.tensor().dtype()))
    })?;
    assert_eq!((inner_dtype, after_inner), (DType::F16, DType::F64));
    // The device comes from the outer scope when the inner one sets only the dtype.
    let r: tensor_core::Result<()> = outer.build(|| Err(tensor_core::Error::arg("test", "builder failed")));
    assert!(r.is_err());
    assert_eq!(Factory::current(), (DType::F32, Device::cpu()));
    assert_eq!(Linear::new(2, 2, false)?.weight.tensor().dtype(), DType::F32);
    Ok(())
}

#[test]
fn a_non_float_factory_dtype_is_refused_by_name() {
    let e = Factory::new().dtype(DType::I32).build(|| Linear::new(2, 2, false)).unwrap_err().to_string();
    assert!(e.contains("Factory::build") && e.contains("int32"), "{e}");
}
