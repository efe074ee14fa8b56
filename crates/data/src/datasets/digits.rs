//! The "Optical Recognition of Handwritten Digits" data set (UCI; E. Alpaydin and C.
//! Kaynak, 1998, CC BY 4.0) as scikit-learn packages it, `digits.csv.gz`: 1797 rows,
//! each 64 pixel values of an 8x8 image (integers 0..16, row-major) then the class
//! label 0..9. This repository ships a copy in `data/digits.csv.gz` (its attribution
//! in `data/README.md`); scikit-learn has it at `sklearn/datasets/data/digits.csv.gz`.
//!
//! ```no_run
//! use data::datasets::digits;
//!
//! let all = digits::load("data/digits.csv.gz")?;
//! assert_eq!((all.len(), all.images.dims()), (1797, &[1797, 64][..]));
//! let (train, test) = all.split(0.2, 0)?; // seeded shuffle, 20% held out
//! assert_eq!((train.len(), test.len()), (1438, 359));
//! # Ok::<(), tensor_core::Error>(())
//! ```

use std::io::Read;
use std::path::Path;

use tensor_core::{Error, Generator, Result, Tensor};

/// Digit images (pixel values scaled to `[0, 1]`) and their labels.
#[derive(Clone, Debug)]
pub struct Digits {
    /// `[n, 64]` f32 pixels in `[0, 1]` (the raw values 0..16 divided by 16).
    pub images: Tensor,
    /// `[n]` I64 labels 0..9.
    pub labels: Tensor,
}

/// Reads a digits file: gzip-compressed CSV, 64 pixel values then the label per row.
///
/// A missing file is an [`Error::Io`], a malformed one an [`Error::Format`] naming
/// the line.
///
/// ```
/// use std::io::Write;
/// use data::datasets::digits;
///
/// // Two rows in the file's format: 64 pixels (0..16), then the label.
/// let row = |v: u32, label: u32| format!("{},{label}\n", vec![v.to_string(); 64].join(","));
/// let path = std::env::temp_dir().join(format!("digits-doc-{}.csv.gz", std::process::id()));
/// let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
/// gz.write_all((row(16, 7) + &row(0, 3)).as_bytes()).unwrap();
/// gz.finish().unwrap();
///
/// let d = digits::load(&path)?;
/// assert_eq!(d.images.dims(), &[2, 64]);
/// assert_eq!(d.images.to_vec2::<f32>()?[0][0], 1.0); // 16 / 16
/// assert_eq!(d.labels.to_vec::<i64>()?, vec![7, 3]);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn load(path: impl AsRef<Path>) -> Result<Digits> {
    let path = path.as_ref();
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
        if !(0.0..=9.0).contains(&y) || y.fract() != 0.0 {
            return Err(bad(format!("label {y} is not one of 0..9")));
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

    /// A seeded shuffle split into `(train, test)` with `test_fraction` (rounded to
    /// whole images) held out; the same seed gives the same split.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Digits, Digits)> {
        if !(0.0..=1.0).contains(&test_fraction) {
            return Err(Error::arg("Digits::split", format!("test fraction {test_fraction} outside [0, 1]")));
        }
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

    /// The pair as a [`TensorDataset`](crate::TensorDataset) of `[images, labels]`
    /// rows, for a [`DataLoader`](crate::DataLoader).
    pub fn to_dataset(&self) -> Result<crate::TensorDataset> {
        crate::TensorDataset::new(vec![self.images.clone(), self.labels.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_gz(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("data-digits-{name}-{}.csv.gz", std::process::id()));
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), Default::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
        p
    }

    fn rows(n: usize) -> String {
        (0..n)
            .map(|i| {
                let px: Vec<String> = (0..64).map(|j| ((i + j) % 17).to_string()).collect();
                format!("{},{}\n", px.join(","), i % 10)
            })
            .collect()
    }

    #[test]
    fn loads_scales_and_splits() {
        let p = write_gz("ok", &rows(20));
        let d = load(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(d.len(), 20);
        assert_eq!(d.images.dims(), &[20, 64]);
        let px = d.images.to_vec2::<f32>().unwrap();
        assert_eq!(px[1][..3], [1.0 / 16.0, 2.0 / 16.0, 3.0 / 16.0]);
        assert_eq!(px[0][16], 1.0);
        assert_eq!(d.labels.to_vec::<i64>().unwrap()[..12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);

        let (train, test) = d.split(0.25, 7).unwrap();
        assert_eq!((train.len(), test.len()), (15, 5));
        let (train2, _) = d.split(0.25, 7).unwrap();
        assert_eq!(train.labels.to_vec::<i64>().unwrap(), train2.labels.to_vec::<i64>().unwrap());
        // Every image lands in exactly one side: the label multiset is preserved.
        let mut all: Vec<i64> = train.labels.to_vec::<i64>().unwrap();
        all.extend(test.labels.to_vec::<i64>().unwrap());
        all.sort();
        let mut want = d.labels.to_vec::<i64>().unwrap();
        want.sort();
        assert_eq!(all, want);
        assert!(d.split(1.5, 0).is_err());
        use crate::Dataset;
        assert_eq!(d.to_dataset().unwrap().len(), 20);
    }

    #[test]
    fn malformed_and_missing_files_are_errors() {
        for (name, text) in [
            ("short", "1,2,3\n".to_string()),
            ("label", rows(1).replace(",0\n", ",12\n")),
            ("nan", rows(1).replacen('1', "x", 1)),
        ] {
            let p = write_gz(name, &text);
            let e = load(&p).unwrap_err();
            std::fs::remove_file(&p).unwrap();
            assert!(matches!(e, Error::Format { .. }), "{name}: {e}");
            assert!(e.to_string().contains("line 1"), "{name}: {e}");
        }
        assert!(matches!(load("/nonexistent/digits.csv.gz"), Err(Error::Io { .. })));
    }
}
