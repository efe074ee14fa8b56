//! A shortened char_lm run must learn more than character frequencies: its validation
//! loss has to end well below the entropy of the validation text's unigram
//! distribution (computed here in f64), which is what a model that ignores context
//! would get at best.

use examples::char_lm::{self, CharData, Gpt, GptConfig, LmConfig, Split};
use nn::Module;
use tensor_core::Generator;

/// Entropy (nats) of the token frequencies of `tokens`.
fn unigram_entropy(tokens: &[i64], vocab: usize) -> f64 {
    let mut counts = vec![0f64; vocab];
    for &t in tokens {
        counts[t as usize] += 1.0;
    }
    let n = tokens.len() as f64;
    counts.iter().filter(|&&c| c > 0.0).map(|&c| -(c / n) * (c / n).ln()).sum()
}

#[test]
fn short_gpt_run_learns_more_than_unigrams() -> tensor_core::Result<()> {
    let data = CharData::load(&char_lm::default_path())?;
    assert_eq!(data.vocab_size(), 65);
    assert_eq!(data.train.len() + data.val.len(), 1_115_394);
    let h_val = unigram_entropy(&data.val, data.vocab_size());
    let cfg = LmConfig {
        iters: 300,
        context: 32,
        n_layer: 2,
        n_head: 4,
        n_embd: 64,
        eval_interval: 300,
        eval_batches: 8,
        seed: 3,
        ..Default::default()
    };
    tensor_core::manual_seed(cfg.seed);
    let model = Gpt::new(cfg.gpt_config(data.vocab_size()))?;
    let hist = char_lm::train(&model, &data, &cfg)?;
    let (_, _, first_val) = hist.evals[0];
    let last_val = hist.final_val_loss().expect("an evaluation after the last step");
    eprintln!("val loss {first_val:.4} -> {last_val:.4} (unigram entropy {h_val:.4})");
    // At initialisation the logits are near zero: the loss is about ln(65).
    assert!((first_val - 65f64.ln()).abs() < 0.1, "initial val loss {first_val}");
    assert!(last_val < h_val - 0.7, "val loss {last_val} after 300 steps vs unigram entropy {h_val}");
    // The model samples valid tokens, and the sample is reproducible from the seed.
    let prompt = data.encode("\n")?;
    let opts = char_lm::SampleOptions { temperature: 0.8, top_k: 40 };
    let a = char_lm::sample(&model, &prompt, 20, cfg.context, opts, &mut Generator::new(7))?;
    let b = char_lm::sample(&model, &prompt, 20, cfg.context, opts, &mut Generator::new(7))?;
    assert_eq!(a, b);
    assert!(a.len() == 21 && a.iter().all(|&t| (0..65).contains(&t)));
    // The weights round-trip through safetensors.
    let dir = std::env::temp_dir().join(format!("char_lm_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| tensor_core::Error::Io { path: dir.display().to_string(), source: e })?;
    let path = dir.join("model.safetensors");
    model.state_dict().save(&path)?;
    let loaded = nn::StateDict::load(&path)?;
    assert!(loaded.get("transformer.h.1.attn.c_attn.weight").is_some());
    let _ = std::fs::remove_dir_all(&dir);
    let (x, _) = data.batch(Split::Val, 2, cfg.context, &mut Generator::new(0))?;
    assert_eq!(x.dims(), &[2, 32]);
    Ok(())
}

#[test]
fn bad_inputs_are_errors() -> tensor_core::Result<()> {
    let data = CharData::from_text(b"abcabc")?;
    assert!(data.batch(Split::Train, 1, 8, &mut Generator::new(0)).is_err());
    assert!(data.encode("z").is_err());
    assert!(char_lm::CharData::load(std::path::Path::new("/nonexistent.gz")).is_err());
    let cfg = GptConfig { vocab_size: 3, block_size: 4, n_layer: 1, n_head: 3, n_embd: 8 };
    assert!(Gpt::new(cfg).is_err());
    Ok(())
}
