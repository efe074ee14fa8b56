//! Training metrics: a logger that appends one CSV row per step or epoch as training
//! runs (flushed, so a crashed run keeps its curve), the same table read back from the
//! CSV or written as JSON, and — with the cargo features of the same names —
//! [`Metrics::plot`] (feature `plot`: the curves drawn into a PNG with plotters, a font
//! compiled in, so no system fonts are needed) and [`progress_bar`] (feature
//! `progress`: a terminal progress bar with the rate and the time left, indicatif).
//!
//! ```
//! use data::metrics::{Metrics, MetricsLogger};
//!
//! let dir = std::env::temp_dir().join(format!("metrics-mod-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let mut log = MetricsLogger::create(dir.join("metrics.csv"), &["loss", "acc"])?;
//! for epoch in 1..=3u64 {
//!     let loss = 1.0 / epoch as f64; // your training loop's numbers
//!     log.log(epoch, &[loss, 1.0 - loss / 2.0])?;
//! }
//! // Read back later (another process, a notebook): the same table.
//! let m = Metrics::read_csv(dir.join("metrics.csv"))?;
//! assert_eq!(m.steps(), vec![1, 2, 3]);
//! assert_eq!(m.column("acc").unwrap(), vec![0.5, 0.75, 1.0 - 1.0 / 6.0]);
//! m.save_json(dir.join("metrics.json"))?; // {"step":[1,2,3],"loss":[..],"acc":[..]}
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), tensor_core::Error>(())
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use tensor_core::{Error, Result};

/// A table of metrics: a step number and one value per column on each row.
///
/// Built by [`MetricsLogger`] as training runs, or read back from its CSV with
/// [`Metrics::read_csv`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    columns: Vec<String>,
    rows: Vec<(u64, Vec<f64>)>,
}

fn check_columns(columns: &[&str]) -> Result<()> {
    let bad = |c: &&str| c.is_empty() || *c == "step" || c.contains([',', '\n', '\r', '"', '\\']);
    if columns.is_empty() || columns.iter().any(bad) {
        return Err(Error::arg(
            "Metrics",
            format!("bad column names {columns:?} (need at least one; none empty, named \"step\", or with , \" \\ or a newline)"),
        ));
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].contains(c) {
            return Err(Error::arg("Metrics", format!("column {c:?} appears twice in {columns:?}")));
        }
    }
    Ok(())
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io { path: path.display().to_string(), source: e }
}

impl Metrics {
    /// An empty table with these columns (not `step`, which every row has).
    ///
    /// ```
    /// use data::metrics::Metrics;
    /// let mut m = Metrics::new(&["loss"])?;
    /// m.push(10, &[0.5])?;
    /// assert_eq!(m.column("loss"), Some(vec![0.5]));
    /// assert!(Metrics::new(&["step"]).is_err());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn new(columns: &[&str]) -> Result<Metrics> {
        check_columns(columns)?;
        Ok(Metrics { columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new() })
    }

    /// Adds a row: the step and one value per column.
    pub fn push(&mut self, step: u64, values: &[f64]) -> Result<()> {
        if values.len() != self.columns.len() {
            return Err(Error::arg(
                "Metrics::push",
                format!("{} values for the {} columns {:?}", values.len(), self.columns.len(), self.columns),
            ));
        }
        self.rows.push((step, values.to_vec()));
        Ok(())
    }

    /// The column names (without `step`).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The rows: `(step, one value per column)`.
    pub fn rows(&self) -> &[(u64, Vec<f64>)] {
        &self.rows
    }

    /// The step of every row.
    pub fn steps(&self) -> Vec<u64> {
        self.rows.iter().map(|r| r.0).collect()
    }

    /// The values of one column, `None` when there is no such column.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let i = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r.1[i]).collect())
    }

    /// The CSV text [`MetricsLogger`] writes: a `step,<columns>` header, then one row
    /// per line.
    pub fn to_csv(&self) -> String {
        let mut s = format!("step,{}\n", self.columns.join(","));
        for (step, vals) in &self.rows {
            s.push_str(&csv_row(*step, vals));
        }
        s
    }

    /// Parses the CSV text of [`Metrics::to_csv`] (`path` names the source in errors).
    fn parse_csv(text: &str, path: &str) -> Result<Metrics> {
        let bad = |ln: usize, msg: String| Error::Format { path: path.to_string(), msg: format!("line {ln}: {msg}") };
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| bad(1, "empty file, expected a `step,...` header".into()))?;
        let names: Vec<&str> = header.trim().split(',').collect();
        if names[0] != "step" {
            return Err(bad(1, format!("the header {header:?} does not start with `step`")));
        }
        let mut m = Metrics::new(&names[1..]).map_err(|e| bad(1, e.to_string()))?;
        for (i, line) in lines {
            let ln = i + 1;
            let cells: Vec<&str> = line.trim().split(',').collect();
            if cells.len() != names.len() {
                return Err(bad(ln, format!("{} values, the header has {}", cells.len(), names.len())));
            }
            let step = cells[0].trim().parse::<u64>().map_err(|_| bad(ln, format!("bad step {:?}", cells[0])))?;
            let vals = cells[1..]
                .iter()
                .map(|c| c.trim().parse::<f64>().map_err(|_| bad(ln, format!("not a number: {c:?}"))))
                .collect::<Result<Vec<f64>>>()?;
            m.rows.push((step, vals));
        }
        Ok(m)
    }

    /// Reads a metrics CSV (as [`MetricsLogger`] writes it) back into a table.
    pub fn read_csv(path: impl AsRef<Path>) -> Result<Metrics> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Metrics::parse_csv(&text, &path.display().to_string())
    }

    /// The table as a JSON object of columns, `{"step": [..], "<column>": [..], ..}`
    /// (what `pandas.DataFrame(json.load(f))` reads); NaN and infinities are `null`.
    ///
    /// ```
    /// use data::metrics::Metrics;
    /// let mut m = Metrics::new(&["loss", "acc"])?;
    /// m.push(1, &[0.5, 0.25])?;
    /// m.push(2, &[f64::NAN, 1.0])?;
    /// assert_eq!(m.to_json(), r#"{"step":[1,2],"loss":[0.5,null],"acc":[0.25,1]}"#);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn to_json(&self) -> String {
        let steps: Vec<String> = self.rows.iter().map(|r| r.0.to_string()).collect();
        let mut s = format!("{{\"step\":[{}]", steps.join(","));
        for (i, name) in self.columns.iter().enumerate() {
            let vals: Vec<String> = self
                .rows
                .iter()
                .map(|r| if r.1[i].is_finite() { r.1[i].to_string() } else { "null".to_string() })
                .collect();
            // Column names hold no `"`, `\` or control characters (checked on creation).
            s.push_str(&format!(",\"{name}\":[{}]", vals.join(",")));
        }
        s.push('}');
        s
    }

    /// Writes [`Metrics::to_json`] to `path`.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json() + "\n").map_err(io_err(path))
    }

    /// Draws a PNG with one panel per group of columns (e.g. `&[&["loss"], &["train
    /// acc", "test acc"]]`, 450x400 pixels each, side by side), step on the x axis.
    ///
    /// ```
    /// use data::metrics::Metrics;
    /// let mut m = Metrics::new(&["train_loss", "val_loss", "acc"])?;
    /// for step in 1..=20u64 {
    ///     let s = step as f64;
    ///     m.push(step, &[1.0 / s, 1.2 / s, 1.0 - 0.5 / s])?;
    /// }
    /// let png = std::env::temp_dir().join(format!("metrics-plot-doc-{}.png", std::process::id()));
    /// m.plot(&png, &[&["train_loss", "val_loss"], &["acc"]])?;
    /// assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    /// # std::fs::remove_file(&png).ok();
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    #[cfg(feature = "plot")]
    pub fn plot(&self, png: impl AsRef<Path>, panels: &[&[&str]]) -> Result<()> {
        use plotters::prelude::*;
        let png = png.as_ref();
        let err = |e: String| Error::Io { path: png.display().to_string(), source: std::io::Error::other(e) };
        register_font().map_err(err)?;
        let mut cols = Vec::new();
        for p in panels {
            let mut idx = Vec::new();
            for name in *p {
                let i =
                    self.columns.iter().position(|c| c == name).ok_or_else(|| {
                        Error::arg("Metrics::plot", format!("no column {name:?} in {:?}", self.columns))
                    })?;
                idx.push(i);
            }
            cols.push(idx);
        }
        if cols.is_empty() || cols.iter().any(Vec::is_empty) {
            return Err(Error::arg("Metrics::plot", "no panels, or an empty panel, to draw"));
        }
        let w = 450 * cols.len() as u32;
        let root = BitMapBackend::new(png, (w, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let areas = root.split_evenly((1, cols.len()));
        let x0 = self.rows.iter().map(|r| r.0).min().map_or(0.0, |s| s as f64);
        let x1 = self.rows.iter().map(|r| r.0).max().map_or(1.0, |s| s as f64).max(x0 + 1.0);
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
                let points = self.rows.iter().map(|r| (r.0 as f64, r.1[i])).filter(|p| p.1.is_finite());
                c.draw_series(LineSeries::new(points, &color))
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

fn csv_row(step: u64, values: &[f64]) -> String {
    let cells: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("{step},{}\n", cells.join(","))
}

/// Appends one CSV row per [`MetricsLogger::log`] call to a file (flushed, so a
/// crashed run keeps its curve) and keeps the table in memory for
/// [`Metrics::plot`] and [`Metrics::save_json`].
///
/// ```
/// use data::metrics::MetricsLogger;
/// let dir = std::env::temp_dir().join(format!("metrics-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let mut log = MetricsLogger::create(dir.join("m.csv"), &["loss", "acc"])?;
/// log.log(1, &[0.9, 0.5])?;
/// log.log(2, &[0.4, 0.8])?;
/// assert_eq!(std::fs::read_to_string(dir.join("m.csv")).unwrap(), "step,loss,acc\n1,0.9,0.5\n2,0.4,0.8\n");
/// assert_eq!(log.metrics().column("loss"), Some(vec![0.9, 0.4]));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Debug)]
pub struct MetricsLogger {
    path: PathBuf,
    metrics: Metrics,
    file: std::fs::File,
}

impl MetricsLogger {
    /// Creates (truncates) the CSV file at `path` and writes its header
    /// (`step,<columns>`).
    pub fn create(path: impl AsRef<Path>, columns: &[&str]) -> Result<MetricsLogger> {
        let path = path.as_ref().to_path_buf();
        let metrics = Metrics::new(columns)?;
        let mut file = std::fs::File::create(&path).map_err(io_err(&path))?;
        writeln!(file, "step,{}", columns.join(",")).map_err(io_err(&path))?;
        Ok(MetricsLogger { path, metrics, file })
    }

    /// Appends a row: the step and one value per column.
    pub fn log(&mut self, step: u64, values: &[f64]) -> Result<()> {
        self.metrics.push(step, values)?;
        let io = io_err(&self.path);
        self.file.write_all(csv_row(step, values).as_bytes()).map_err(&io)?;
        self.file.flush().map_err(io)
    }

    /// The table logged so far.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The CSV file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rows logged so far (`metrics().rows()`).
    pub fn rows(&self) -> &[(u64, Vec<f64>)] {
        self.metrics.rows()
    }

    /// Draws the curves logged so far: [`Metrics::plot`].
    #[cfg(feature = "plot")]
    pub fn plot(&self, png: impl AsRef<Path>, panels: &[&[&str]]) -> Result<()> {
        self.metrics.plot(png, panels)
    }
}

/// A progress bar for `len` steps that shows the step rate and the time left; set its
/// message to the running loss and accuracy. Hidden when stderr is not a terminal.
///
/// ```
/// let bar = data::metrics::progress_bar(100, "epoch 1");
/// for _ in 0..100 {
///     bar.inc(1);
/// }
/// bar.finish_with_message("loss 0.1234");
/// assert_eq!(bar.position(), 100);
/// ```
#[cfg(feature = "progress")]
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

/// DejaVu Sans Mono (see `assets/DejaVuSansMono.LICENSE`), compiled in so drawing needs
/// no system fonts or fontconfig: plots work on a bare GPU box.
#[cfg(feature = "plot")]
static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// Registers [`FONT`] as plotters' "sans-serif" once.
#[cfg(feature = "plot")]
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

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("data-metrics-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The CSV holds every row as written and reads back into the same table.
    #[test]
    fn csv_written_and_read_back() {
        let dir = tmp("csv");
        let mut log = MetricsLogger::create(dir.join("m.csv"), &["loss", "acc"]).unwrap();
        for step in 1..=5u64 {
            log.log(step * 10, &[1.0 / step as f64, 0.5 + 0.1 * step as f64]).unwrap();
        }
        log.log(60, &[f64::NAN, f64::INFINITY]).unwrap();
        let csv = std::fs::read_to_string(dir.join("m.csv")).unwrap();
        assert_eq!(csv.lines().count(), 7, "{csv}");
        assert_eq!(csv.lines().next(), Some("step,loss,acc"));
        assert_eq!(csv.lines().nth(5), Some("50,0.2,1"));
        assert_eq!(csv.lines().nth(6), Some("60,NaN,inf"));
        assert_eq!(csv, log.metrics().to_csv());
        let back = Metrics::read_csv(dir.join("m.csv")).unwrap();
        assert_eq!(back.columns(), ["loss", "acc"]);
        assert_eq!(back.steps(), vec![10, 20, 30, 40, 50, 60]);
        let loss = back.column("loss").unwrap();
        assert_eq!(loss[..5], [1.0, 0.5, 1.0 / 3.0, 0.25, 0.2]);
        assert!(loss[5].is_nan());
        assert_eq!(back.column("acc").unwrap()[5], f64::INFINITY);
        assert_eq!(back.column("nope"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The JSON is one object of equally long columns, step first.
    #[test]
    fn json_written_and_read_back() {
        let dir = tmp("json");
        let mut m = Metrics::new(&["train_loss", "val_loss"]).unwrap();
        m.push(1, &[2.5, 3.5]).unwrap();
        m.push(2, &[1.25, f64::NEG_INFINITY]).unwrap();
        m.push(3, &[1e-9, 0.5]).unwrap();
        m.save_json(dir.join("m.json")).unwrap();
        let text = std::fs::read_to_string(dir.join("m.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["step"], serde_json::json!([1, 2, 3]));
        assert_eq!(v["train_loss"], serde_json::json!([2.5, 1.25, 1e-9]));
        assert_eq!(v["val_loss"], serde_json::json!([3.5, null, 0.5]));
        assert_eq!(v.as_object().unwrap().len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_columns_rows_and_files_are_errors() {
        for cols in [&[][..], &["a,b"], &["step"], &[""], &["x", "x"], &["q\"uote"]] {
            assert!(Metrics::new(cols).is_err(), "{cols:?}");
        }
        let mut m = Metrics::new(&["a", "b"]).unwrap();
        assert!(m.push(1, &[1.0]).is_err());
        assert!(m.rows().is_empty());
        let dir = tmp("bad");
        for (name, text) in [
            ("empty.csv", ""),
            ("header.csv", "epoch,a\n1,2\n"),
            ("short.csv", "step,a,b\n1,2\n"),
            ("nan-step.csv", "step,a\nx,2\n"),
            ("word.csv", "step,a\n1,abc\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
            let e = Metrics::read_csv(dir.join(name)).unwrap_err();
            assert!(matches!(e, Error::Format { .. }), "{name}: {e}");
        }
        assert!(matches!(Metrics::read_csv(dir.join("missing.csv")), Err(Error::Io { .. })));
        assert!(MetricsLogger::create(dir.join("no/such/dir/m.csv"), &["a"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The plot (captions and labels drawn with the embedded font, no system fonts) is
    /// a PNG 450 pixels wide per panel and 400 high.
    #[cfg(feature = "plot")]
    #[test]
    fn png_plot_has_the_right_size() {
        let dir = tmp("png");
        let mut log = MetricsLogger::create(dir.join("m.csv"), &["loss", "train_acc", "test_acc"]).unwrap();
        for step in 1..=5u64 {
            let s = step as f64;
            log.log(step, &[1.0 / s, 0.5 + 0.1 * s, 0.45 + 0.1 * s]).unwrap();
        }
        for (panels, width) in [(&[&["loss"][..], &["train_acc", "test_acc"]][..], 900), (&[&["loss"][..]][..], 450)] {
            log.plot(dir.join("c.png"), panels).unwrap();
            let png = std::fs::read(dir.join("c.png")).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            // The IHDR chunk first: width then height, big endian, at bytes 16..24.
            assert_eq!(&png[12..16], b"IHDR");
            assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), width);
            assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 400);
        }
        assert!(log.plot(dir.join("x.png"), &[&["nope"]]).is_err());
        assert!(log.plot(dir.join("x.png"), &[]).is_err());
        assert!(!dir.join("x.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
