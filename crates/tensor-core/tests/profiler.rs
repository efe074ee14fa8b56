//! The profiler records every primitive and composite op with shapes, nests
//! composites over their primitives, sums self and total times consistently, and
//! records nothing when off.

use tensor_core::{profiler, Conv2dOptions, DType, Device, Tensor};

#[test]
fn records_ops_with_shapes_nesting_and_consistent_times() -> tensor_core::Result<()> {
    let dev = Device::cpu();
    let x = Tensor::randn([2, 3, 8, 8], DType::F32, &dev)?;
    let w = Tensor::randn([4, 3, 3, 3], DType::F32, &dev)?;
    let (y, prof) = profiler::profile(|| -> tensor_core::Result<Tensor> {
        let y = x.conv2d(&w, None, Conv2dOptions { padding: [1, 1], ..Default::default() })?;
        (&y.relu()? + 1.0)?.softmax(-1)
    });
    let y = y?;
    assert_eq!(y.dims(), [2, 4, 8, 8]);
    let ev = prof.events();
    let conv = ev.iter().find(|e| e.name == "conv2d").expect("conv2d recorded");
    assert_eq!(conv.shapes, vec![vec![2, 3, 8, 8], vec![4, 3, 3, 3]]);
    assert_eq!((conv.device.as_str(), conv.depth), ("cpu", 0));
    // The fused kernel that conv2d runs is recorded inside it.
    let mm = ev.iter().find(|e| e.name == "fused.conv2d").expect("fused.conv2d recorded");
    assert!(mm.depth == 1 && mm.start_ns >= conv.start_ns && mm.start_ns + mm.dur_ns <= conv.start_ns + conv.dur_ns);
    assert!(conv.child_ns >= mm.dur_ns && conv.child_ns <= conv.dur_ns);
    assert!(ev.iter().any(|e| e.name == "unary.relu" && e.shapes == vec![vec![2, 4, 8, 8]]));
    assert!(ev.iter().any(|e| e.name == "softmax"));
    // Self times add up to the outermost ops' total time.
    let outer: u64 = ev.iter().filter(|e| e.depth == 0).map(|e| e.dur_ns).sum();
    let selfs: u64 = prof.key_averages().iter().map(|s| s.self_ns).sum();
    assert_eq!(outer, selfs);
    let conv_row = prof.key_averages().into_iter().find(|s| s.name == "conv2d").expect("row");
    assert_eq!(conv_row.calls, 1);
    let table = prof.table();
    assert!(table.contains("conv2d") && table.contains("Self %"), "{table}");
    // The Chrome trace is JSON with one complete event per op.
    let trace = prof.chrome_trace();
    assert_eq!(trace.matches("\"ph\":\"X\"").count(), ev.len());
    assert!(trace.contains("\"shapes\":\"[2,3,8,8] [4,3,3,3]\""), "{trace}");
    Ok(())
}

#[test]
fn nothing_is_recorded_outside_a_profile() -> tensor_core::Result<()> {
    let a = Tensor::ones([4], DType::F32, &Device::cpu())?;
    let ((), prof) = profiler::profile(|| ());
    assert!(prof.events().is_empty());
    // Ops after the profile ended do not leak into it, and the switch is off again
    // (other test threads may be profiling, so only this thread's view is checked).
    let _ = (&a + &a)?;
    assert!(prof.events().is_empty());
    Ok(())
}
