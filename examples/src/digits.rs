//! Where the examples find the digits data set that ships in `data/` (the loader is
//! `data::datasets::digits`, re-exported here).

use std::path::Path;

pub use data::datasets::digits::{load, Digits};

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
