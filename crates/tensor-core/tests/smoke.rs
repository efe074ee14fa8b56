use tensor_core::{DType, Device, Tensor};

#[test]
fn smoke() -> tensor_core::Result<()> {
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3])?;
    let b = Tensor::new(&[10.0f32, 20.0, 30.0]);
    let c = (&a + &b)?;
    assert_eq!(c.to_vec::<f32>()?, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    let t = a.t()?;
    assert_eq!(t.contiguous()?.to_vec::<f32>()?, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let i = Tensor::new(&[1i64, 2, 3]);
    let d = (&i / 2.0)?;
    assert_eq!(d.dtype(), DType::F32);
    let z = Tensor::zeros([3], DType::F64, &Device::cpu())?;
    assert_eq!((&z + &b)?.dtype(), DType::F64);
    println!("{c}");
    let big = Tensor::arange(0.0, 100000.0, 1.0, DType::F32, &Device::cpu())?;
    let s = big.relu()?.to_vec::<f32>()?;
    assert_eq!(s[99999], 99999.0);
    Ok(())
}
