//! Timing of an LSTM forward + backward at a moderate size (ignored by default:
//! `cargo test -p nn --release --test rnn_timing -- --ignored --nocapture`).

use std::time::Instant;

use autograd::Var;
use nn::*;
use tensor_core::{DType, Device, Tensor};

#[test]
#[ignore]
fn lstm_forward_backward_time() {
    for &(t, n, i, h) in &[(50usize, 16usize, 128usize, 256usize), (200, 16, 128, 256)] {
        let m = LSTM::new(i, h, LstmConfig { num_layers: 2, ..Default::default() }).unwrap();
        let x = Var::from(Tensor::randn([t, n, i], DType::F32, &Device::cpu()).unwrap());
        for rep in 0..2 {
            let t0 = Instant::now();
            let (out, s) = m.forward_with(&x, None, None).unwrap();
            let t1 = Instant::now();
            out.sum_all().unwrap().add(&s.c.sum_all().unwrap()).unwrap().backward().unwrap();
            let t2 = Instant::now();
            println!("T={t} N={n} in={i} H={h} 2 layers rep {rep}: forward {:?}, backward {:?}", t1 - t0, t2 - t1);
        }
    }
}
