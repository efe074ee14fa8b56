//! The scikit-learn 8x8 handwritten digits data set that ships in `data/`.

use std::io::Read;
use std::path::Path;

use tensor_core::{Error, Generator, Result, Tensor};

/// The 1797 digit images (pixel values scaled to `[0, 1]`) and their labels.
pub struct Digits {
    /// `[n, 64]` f32 pixels in `[0, 1]` (the raw values are 0..16).
    pub images: Tensor,
    /// `[n]` I64 labels 0..9.
    pub labels: Tensor,
}

/// Path of `data/digits.csv.gz`: `$DIGITS_PATH` when set, else this repository's copy
/// (else `data/digits.csv.gz` under the working directory, for binaries moved off the
/// machine that built them).
pub fn default_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("DIGITS_PATH") {
        return p.into();
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits.csv.gz");
    if built.exists() {
        built
    } else {
        Path::new("data/digits.csv.gz").to_path_buf()
    }
}

/// Reads `digits.csv.gz` (gzip CSV: 64 pixel values then the label per row).
pub fn load(path: &Path) -> Result<Digits> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut text).map_err(io)?;
    let mut pixels = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let vals: Vec<&str> = line.split(',').collect();
        let bad =
            |msg: String| Error::Format { path: path.display().to_string(), msg: format!("line {}: {msg}", ln + 1) };
        if vals.len() != 65 {
            return Err(bad(format!("expected 65 comma-separated values, found {}", vals.len())));
        }
        for v in &vals[..64] {
            let x: f32 = v.trim().parse().map_err(|_| bad(format!("not a number: {v:?}")))?;
            pixels.push(x / 16.0);
        }
        let y: f64 = vals[64].trim().parse().map_err(|_| bad(format!("bad label {:?}", vals[64])))?;
        if !(0.0..=9.0).contains(&y) {
            return Err(bad(format!("label {y} outside 0..9")));
        }
        labels.push(y as i64);
    }
    let n = labels.len();
    Ok(Digits { images: Tensor::from_vec(pixels, [n, 64])?, labels: Tensor::from_vec(labels, [n])? })
}

impl Digits {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.dims()[0]
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A seeded shuffle split into `(train, test)` with `test_fraction` held out.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Digits, Digits)> {
        let n = self.len();
        let perm: Vec<i64> = Generator::new(seed).permutation(n).into_iter().map(|i| i as i64).collect();
        let n_test = ((n as f64) * test_fraction).round() as usize;
        let test_idx = Tensor::from_vec(perm[..n_test].to_vec(), [n_test])?;
        let train_idx = Tensor::from_vec(perm[n_test..].to_vec(), [n - n_test])?;
        let pick = |idx: &Tensor| -> Result<Digits> {
            Ok(Digits { images: self.images.index_select(0, idx)?, labels: self.labels.index_select(0, idx)? })
        };
        Ok((pick(&train_idx)?, pick(&test_idx)?))
    }
}
