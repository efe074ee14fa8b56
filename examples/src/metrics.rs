//! Training-loop helpers: a metrics logger that appends CSV rows as training runs and
//! draws their curves into a PNG (plotters), and a progress bar that shows the loss,
//! the throughput and the time left (indicatif).

use std::io::Write;
use std::path::{Path, PathBuf};

use tensor_core::{Error, Result};

/// Appends one CSV row per [`MetricsLogger::log`] call (flushed, so a crashed run keeps
/// its curve) and draws the columns as curves with [`MetricsLogger::plot`].
///
/// ```
/// use examples::metrics::MetricsLogger;
/// let dir = std::env::temp_dir().join(format!("metrics-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let mut log = MetricsLogger::create(dir.join("m.csv"), &["loss", "acc"])?;
/// log.log(1, &[0.9, 0.5])?;
/// log.log(2, &[0.4, 0.8])?;
/// assert_eq!(std::fs::read_to_string(dir.join("m.csv")).unwrap(), "step,loss,acc\n1,0.9,0.5\n2,0.4,0.8\n");
/// log.plot(dir.join("m.png"), &[&["loss"], &["acc"]])?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub struct MetricsLogger {
    path: PathBuf,
    columns: Vec<String>,
    rows: Vec<(u64, Vec<f64>)>,
    file: std::fs::File,
}

impl MetricsLogger {
    /// Creates (truncates) the CSV file at `path` and writes its header
    /// (`step,<columns>`).
    pub fn create(path: impl AsRef<Path>, columns: &[&str]) -> Result<MetricsLogger> {
        let path = path.as_ref().to_path_buf();
        if columns.is_empty() || columns.iter().any(|c| c.is_empty() || c.contains([',', '\n', '"'])) {
            return Err(Error::arg("MetricsLogger", format!("bad column names {columns:?}")));
        }
        let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
        let mut file = std::fs::File::create(&path).map_err(io)?;
        writeln!(file, "step,{}", columns.join(",")).map_err(io)?;
        Ok(MetricsLogger { path, columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new(), file })
    }

    /// Appends a row: one value per column.
    pub fn log(&mut self, step: u64, values: &[f64]) -> Result<()> {
        if values.len() != self.columns.len() {
            return Err(Error::arg(
                "MetricsLogger::log",
                format!("{} values for the {} columns {:?}", values.len(), self.columns.len(), self.columns),
            ));
        }
        let line: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let io = |e: std::io::Error| Error::Io { path: self.path.display().to_string(), source: e };
        writeln!(self.file, "{step},{}", line.join(",")).map_err(io)?;
        self.file.flush().map_err(io)?;
        self.rows.push((step, values.to_vec()));
        Ok(())
    }

    /// The rows logged so far.
    pub fn rows(&self) -> &[(u64, Vec<f64>)] {
        &self.rows
    }

    /// Draws a PNG with one panel per group of columns (e.g. `&[&["loss"], &["train
    /// acc", "test acc"]]`), step on the x axis.
    pub fn plot(&self, png: impl AsRef<Path>, panels: &[&[&str]]) -> Result<()> {
        use plotters::prelude::*;
        let png = png.as_ref();
        let err = |e: String| Error::Io { path: png.display().to_string(), source: std::io::Error::other(e) };
        register_font().map_err(err)?;
        let mut cols = Vec::new();
        for p in panels {
            let mut idx = Vec::new();
            for name in *p {
                let i = self.columns.iter().position(|c| c == name).ok_or_else(|| {
                    Error::arg("MetricsLogger::plot", format!("no column {name:?} in {:?}", self.columns))
                })?;
                idx.push(i);
            }
            cols.push(idx);
        }
        if cols.is_empty() {
            return Err(Error::arg("MetricsLogger::plot", "no panels to draw"));
        }
        let w = 450 * cols.len() as u32;
        let root = BitMapBackend::new(png, (w, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let areas = root.split_evenly((1, cols.len()));
        let x0 = self.rows.first().map_or(0.0, |r| r.0 as f64);
        let x1 = self.rows.last().map_or(1.0, |r| r.0 as f64).max(x0 + 1.0);
        let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
        for (area, (idx, names)) in areas.iter().zip(cols.iter().zip(panels)) {
            let vals = || self.rows.iter().flat_map(|r| idx.iter().map(move |&i| r.1[i])).filter(|v| v.is_finite());
            let lo = vals().fold(f64::INFINITY, f64::min);
            let hi = vals().fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = if lo.is_finite() { (lo.min(0.0), hi.max(lo + 1e-6) * 1.05) } else { (0.0, 1.0) };
            let mut c = ChartBuilder::on(area)
                .caption(names.join(", "), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(x0..x1, lo..hi)
                .map_err(|e| err(e.to_string()))?;
            c.configure_mesh().x_desc("step").draw().map_err(|e| err(e.to_string()))?;
            for (k, (&i, name)) in idx.iter().zip(names.iter()).enumerate() {
                let color = palette[k % palette.len()];
                c.draw_series(LineSeries::new(self.rows.iter().map(|r| (r.0 as f64, r.1[i])), &color))
                    .map_err(|e| err(e.to_string()))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
            }
            c.configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
        Ok(())
    }
}

/// A progress bar for `len` steps that shows the step rate and the time left; set its
/// message to the running loss and accuracy.
pub fn progress_bar(len: u64, prefix: impl Into<String>) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {per_sec:>11} eta {eta:>3} {msg}")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix(prefix.into());
    b
}

/// DejaVu Sans Mono (see `assets/DejaVuSansMono.LICENSE`), compiled in so drawing needs no
/// system fonts or fontconfig: plots work on a bare GPU box.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// Registers [`FONT`] as plotters' "sans-serif" once.
fn register_font() -> std::result::Result<(), String> {
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font is not a valid TrueType font".to_string())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSV holds every row, and the plot (captions and labels drawn with the
    /// embedded font, no system fonts) is a PNG of the requested width.
    #[test]
    fn csv_rows_and_png_plot() {
        let dir = std::env::temp_dir().join(format!("metrics-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = MetricsLogger::create(dir.join("m.csv"), &["loss", "acc"]).unwrap();
        for step in 1..=5u64 {
            log.log(step, &[1.0 / step as f64, 0.5 + 0.1 * step as f64]).unwrap();
        }
        let csv = std::fs::read_to_string(dir.join("m.csv")).unwrap();
        assert_eq!(csv.lines().count(), 6, "{csv}");
        assert!(csv.lines().nth(5).unwrap().starts_with("5,0.2"), "{csv}");
        log.plot(dir.join("c.png"), &[&["loss"], &["acc"]]).unwrap();
        let png = std::fs::read(dir.join("c.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width then height, big endian, at bytes 16..24.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 900);
        assert!(log.plot(dir.join("x.png"), &[&["nope"]]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
