//! Charts of a training run, drawn with plotters to PNG and SVG: loss and
//! accuracy per epoch, kept units per layer, the final score histogram, and
//! accuracy against step time for a sweep. Input is the JSON-lines metrics
//! file that `train --metrics` writes. Text uses the DejaVu Sans font bundled
//! with the `dejavu` crate, so no system fonts are needed.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};

/// One line of a metrics file (epoch lines and the summary line share it).
/// Numbers a run could not produce are null in the file and NaN here.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Record {
    pub phase: String,
    pub epoch: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_acc: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_acc: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub step_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub samples_per_s: f64,
    pub kept: Vec<usize>,
    pub polarized: Option<f64>,
    // Summary line only.
    pub params: usize,
    pub dense_params: usize,
    pub score_hist: Vec<usize>,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl From<&crate::train::EpochStats> for Record {
    fn from(s: &crate::train::EpochStats) -> Record {
        Record {
            phase: s.phase.into(),
            epoch: s.epoch,
            lr: s.lr as f64,
            loss: s.loss,
            train_acc: s.train_acc,
            test_acc: s.test_acc,
            step_ms: s.step_ms,
            samples_per_s: s.samples_per_s,
            kept: s.kept.clone(),
            polarized: s.polarized,
            ..Record::default()
        }
    }
}

/// A parsed metrics file: epoch records in order, and the summary if any.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub epochs: Vec<Record>,
    pub summary: Option<Record>,
}

impl Metrics {
    /// What looks wrong in the file: accuracies outside [0, 1] (they are
    /// fractions; the charts show percent) and non-finite losses. The charts
    /// clip accuracies to [0, 100] %.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let records = self.epochs.iter().chain(&self.summary);
        for r in records {
            for (name, v) in [("train_acc", r.train_acc), ("test_acc", r.test_acc)] {
                if v.is_finite() && !(0.0..=1.0).contains(&v) {
                    out.push(format!(
                        "{} epoch {}: {name} {v} is not a fraction in [0, 1]; the chart clips it to [0, 100] %",
                        r.phase, r.epoch
                    ));
                }
            }
        }
        out
    }
}

pub fn read_metrics(path: &Path) -> Result<Metrics> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io { path: path.into(), error })?;
    let mut m = Metrics::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: Record = serde_json::from_str(line)
            .map_err(|e| Error::InvalidArgument(format!("{}:{}: not a metrics line ({e})", path.display(), i + 1)))?;
        if r.phase == "summary" {
            m.summary = Some(r);
        } else {
            m.epochs.push(r);
        }
    }
    if m.epochs.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: no epoch lines to plot", path.display())));
    }
    Ok(m)
}

fn font_ready() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bundled font always parses; if it ever did not, text would be
        // missing, not the chart.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

fn plot_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("drawing {what}: {e}"))
}

const SIZE: (u32, u32) = (900, 560);

type DrawResult = std::result::Result<(), String>;

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A chart body, generic over the backend so one function serves PNG and SVG.
trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// Draws `chart` to `dir/name.png` and `dir/name.svg`.
fn render<C: Chart>(dir: &Path, name: &str, chart: &C) -> Result<Vec<PathBuf>> {
    font_ready();
    std::fs::create_dir_all(dir).map_err(|error| Error::Io { path: dir.into(), error })?;
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
        chart.draw(&root).map_err(|e| plot_err(name, e))?;
        root.present().map_err(|e| plot_err(name, e))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(name, e))?;
        chart.draw(&root).map_err(|e| plot_err(name, e))?;
        root.present().map_err(|e| plot_err(name, e))?;
    }
    Ok(vec![png, svg])
}

fn legend_box<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(position)
        .draw()
        .map_err(e2s)
}

/// Epoch axes show whole epochs only.
fn epoch_label(x: &f64) -> String {
    if x.fract() == 0.0 { format!("{x:.0}") } else { String::new() }
}

/// x positions of epoch records: training epochs, then fine-tuning epochs
/// continuing the count.
fn xs(epochs: &[Record]) -> Vec<f64> {
    (1..=epochs.len()).map(|i| i as f64).collect()
}

fn x_desc(epochs: &[Record]) -> String {
    let ft = epochs.iter().filter(|r| r.phase == "finetune").count();
    if ft > 0 { format!("epoch (the last {ft} fine-tune the chosen mask)") } else { "epoch".into() }
}

struct Curves<'a> {
    epochs: &'a [Record],
    accuracy: bool,
}

impl Chart for Curves<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let x = xs(self.epochs);
        let n = x.len() as f64;
        let series: Vec<(&str, Vec<f64>, RGBColor)> = if self.accuracy {
            vec![
                ("train accuracy", self.epochs.iter().map(|r| 100.0 * r.train_acc.clamp(0.0, 1.0)).collect(), BLUE),
                ("test accuracy", self.epochs.iter().map(|r| 100.0 * r.test_acc.clamp(0.0, 1.0)).collect(), RED),
            ]
        } else {
            vec![("training loss", self.epochs.iter().map(|r| r.loss).collect(), BLUE)]
        };
        let finite = series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.08).max(1e-3);
        let (lo, hi) =
            if self.accuracy { ((lo - pad).max(0.0), (hi + pad).min(100.0)) } else { ((lo - pad).max(0.0), hi + pad) };
        let title = if self.accuracy { "Accuracy per epoch" } else { "Training loss per epoch" };
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 26))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.5..n + 0.5, lo..hi)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc(x_desc(self.epochs))
            .x_label_formatter(&epoch_label)
            .y_desc(if self.accuracy { "accuracy (%)" } else { "mean cross-entropy" })
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(e2s)?;
        for (label, ys, color) in series {
            let pts: Vec<(f64, f64)> = x.iter().copied().zip(ys).filter(|p| p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                .map_err(e2s)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(e2s)?;
        }
        // Accuracy rises and loss falls: keep the legend off the curves.
        let pos = if self.accuracy { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight };
        legend_box(&mut chart, pos)
    }
}

struct Kept<'a> {
    epochs: &'a [Record],
}

impl Chart for Kept<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let x = xs(self.epochs);
        let layers = self.epochs.iter().map(|r| r.kept.len()).max().unwrap_or(0);
        let hi = self.epochs.iter().flat_map(|r| r.kept.iter()).copied().max().unwrap_or(1) as f64 * 1.15;
        let mut chart = ChartBuilder::on(root)
            .caption("Kept units per prunable layer", ("sans-serif", 26))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.5..x.len() as f64 + 0.5, 0.0..hi.max(1.0))
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc(x_desc(self.epochs))
            .x_label_formatter(&epoch_label)
            .y_desc("kept units (last mask of the epoch)")
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(e2s)?;
        for l in 0..layers {
            let color = Palette99::pick(l).to_rgba();
            let pts: Vec<(f64, f64)> =
                x.iter().zip(self.epochs).filter_map(|(&xv, r)| r.kept.get(l).map(|&k| (xv, k as f64))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                .map_err(e2s)?
                .label(format!("prunable layer {}", l + 1))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(e2s)?;
        }
        legend_box(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

struct ScoreHistogram<'a> {
    bins: &'a [usize],
}

impl Chart for ScoreHistogram<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.bins.len().max(1);
        let total: usize = self.bins.iter().sum();
        let hi = self.bins.iter().copied().max().unwrap_or(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Final scores of {total} units"), ("sans-serif", 26))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, 0.0..hi.max(1.0))
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("score s (keep probability)")
            .y_desc("units")
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(e2s)?;
        let w = 1.0 / n as f64;
        chart
            .draw_series(self.bins.iter().enumerate().map(|(i, &c)| {
                let x0 = i as f64 * w;
                Rectangle::new([(x0 + 0.1 * w, 0.0), (x0 + 0.9 * w, c as f64)], BLUE.mix(0.7).filled())
            }))
            .map_err(e2s)?;
        Ok(())
    }
}

/// One run of a sweep.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    pub label: String,
    pub step_ms: f64,
    pub test_acc: f64,
}

struct Sweep<'a> {
    points: &'a [SweepPoint],
}

impl Chart for Sweep<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let max_ms = self.points.iter().map(|p| p.step_ms).fold(0.0, f64::max) * 1.15;
        let accs = self.points.iter().map(|p| 100.0 * p.test_acc);
        let (lo, hi) = accs.fold((100.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((hi - lo) * 0.15).max(0.5);
        let mut chart = ChartBuilder::on(root)
            .caption("Test accuracy against training step time", ("sans-serif", 26))
            .margin(18)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_ms.max(1e-3), (lo - pad).max(0.0)..(hi + pad).min(100.0))
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("step time (ms)")
            .y_desc("test accuracy (%)")
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(self.points.iter().map(|p| {
                EmptyElement::at((p.step_ms, 100.0 * p.test_acc))
                    + Circle::new((0, 0), 6, RED.filled())
                    + Text::new(p.label.clone(), (8, -18), ("sans-serif", 16))
            }))
            .map_err(e2s)?;
        Ok(())
    }
}

/// Writes loss, accuracy, kept-units and (when the summary has them) score
/// histogram charts for a run; returns the files written.
pub fn plot_run(m: &Metrics, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = render(dir, "loss", &Curves { epochs: &m.epochs, accuracy: false })?;
    files.extend(render(dir, "accuracy", &Curves { epochs: &m.epochs, accuracy: true })?);
    if m.epochs.iter().any(|r| !r.kept.is_empty()) {
        files.extend(render(dir, "kept_units", &Kept { epochs: &m.epochs })?);
    }
    if let Some(s) = m.summary.as_ref().filter(|s| !s.score_hist.is_empty()) {
        files.extend(render(dir, "score_histogram", &ScoreHistogram { bins: &s.score_hist })?);
    }
    Ok(files)
}

/// Writes the accuracy-against-step-time chart of a sweep.
pub fn plot_sweep(points: &[SweepPoint], dir: &Path) -> Result<Vec<PathBuf>> {
    if points.is_empty() {
        return Err(Error::InvalidArgument("a sweep chart needs at least one run".into()));
    }
    render(dir, "accuracy_vs_step_time", &Sweep { points })
}
