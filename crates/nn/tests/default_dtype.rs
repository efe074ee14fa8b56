//! `tensor_core::set_default_dtype` (PyTorch's `torch.set_default_dtype`) changes the
//! dtype new layers are built in. One test in its own binary: the default is
//! process-wide, so no other test may run beside it.

use nn::{Conv2d, Conv2dConfig, Factory, Linear, Module};
use tensor_core::{default_dtype, set_default_dtype, DType};

#[test]
fn the_default_dtype_is_what_new_layers_use_until_reset() -> tensor_core::Result<()> {
    assert_eq!(default_dtype(), DType::F32);
    let before = set_default_dtype(DType::F64)?;
    assert_eq!(before, DType::F32);
    let fc = Linear::new(3, 2, true)?;
    let conv = Conv2d::new(1, 2, [3, 3], Conv2dConfig::default())?;
    // An explicit factory dtype still wins over the default.
    let half = Factory::new().dtype(DType::BF16).build(|| Linear::new(3, 2, true))?;
    assert_eq!(set_default_dtype(before)?, DType::F64);
    for p in fc.parameters().iter().chain(conv.parameters().iter()) {
        assert_eq!(p.dtype(), DType::F64);
    }
    assert!(half.parameters().iter().all(|p| p.dtype() == DType::BF16));
    assert_eq!(Linear::new(3, 2, true)?.weight.tensor().dtype(), DType::F32);
    let e = set_default_dtype(DType::U8).unwrap_err().to_string();
    assert!(e.contains("set_default_dtype") && e.contains("uint8"), "{e}");
    assert_eq!(default_dtype(), DType::F32);
    Ok(())
}
