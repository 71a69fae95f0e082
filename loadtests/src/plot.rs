//! The `loadplot` binary's library part: reading `loadgen --json` sweep
//! output (JSON lines), turning it into plot series, and drawing them as SVG
//! with `plotters` (SVG backend only, so no system libraries or fonts are
//! needed; text is emitted as SVG `<text>` and laid out by the viewer).
//!
//! * [`parse_jsonl`] keeps every line that starts with `{` (so a file holding
//!   human summaries as well still works) and rejects malformed ones;
//! * [`group_by_scenario`] splits rows by their `scenario` field;
//! * [`figure`] builds the two panels of a scenario: throughput against load
//!   and tail latency against load (see [`Figure`]);
//! * [`render_svg`] draws a [`Figure`] into an SVG file.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// Parses JSON lines: every line starting with `{` (after leading blanks)
/// must be a JSON object; other lines (human summaries, tables) are skipped.
pub fn parse_jsonl(text: &str) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("line {}: not a valid JSON object", i + 1))?;
        rows.push(v);
    }
    Ok(rows)
}

/// Splits rows by their `scenario` string, in order of first appearance.
pub fn group_by_scenario(rows: Vec<Value>) -> Result<Vec<(String, Vec<Value>)>> {
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let Some(name) = row.get("scenario").and_then(Value::as_str) else {
            bail!("JSON row {} has no \"scenario\" string", i + 1);
        };
        let name = name.to_string();
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, g)) => g.push(row),
            None => groups.push((name, vec![row])),
        }
    }
    Ok(groups)
}

/// The number at `path` (nested object keys) of `v`, if it is one.
pub fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_f64().filter(|x| x.is_finite())
}

/// One line of a plot: `(x, y)` points sorted by `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// The points `(x_path, y_path · scale)` of the rows that have both.
    pub fn from_rows(
        name: &str,
        rows: &[Value],
        x_path: &[&str],
        y_path: &[&str],
        scale: f64,
    ) -> Self {
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((num(r, x_path)?, num(r, y_path)? * scale)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        Series {
            name: name.to_string(),
            points,
        }
    }
}

/// One panel: axes, series, and horizontal reference lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// `(y, legend label)` drawn across the whole panel.
    pub hlines: Vec<(f64, String)>,
    /// Write each point's value next to it (first series only).
    pub value_labels: bool,
    /// Let the y axis start at 0 on a linear scale (throughput).
    pub y_from_zero: bool,
}

/// A scenario's plot: a throughput panel above a latency panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub title: String,
    /// Extra lines under the title (failures, errors, settings).
    pub notes: Vec<String>,
    pub panels: Vec<Panel>,
}

/// Settings for [`figure`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotOptions {
    /// Audio seconds per `transcribe` request (turns req/s into audio
    /// seconds per wall second).
    pub audio_seconds: Option<f64>,
    /// The interim-lag target line of `stream` plots, ms.
    pub lag_target_ms: f64,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            audio_seconds: None,
            lag_target_ms: 50.0,
        }
    }
}

fn first_str<'a>(rows: &'a [Value], key: &str) -> Option<&'a str> {
    rows.iter().find_map(|r| r.get(key).and_then(Value::as_str))
}

/// Levels where something went wrong, e.g. `"errors at 64: 12"`.
fn problems(rows: &[Value], x_key: &str, checks: &[(&str, &str)]) -> Vec<String> {
    let mut notes = Vec::new();
    for (key, what) in checks {
        let bad: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let n = num(r, &[key])?;
                (n > 0.0).then(|| format!("{} at {}", n, num(r, &[x_key]).unwrap_or(f64::NAN)))
            })
            .collect();
        if !bad.is_empty() {
            notes.push(format!("{what}: {}", bad.join(", ")));
        }
    }
    notes
}

/// Responses that were not 2xx, per level (`status` map).
fn non_2xx(rows: &[Value]) -> Option<String> {
    let bad: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let status = r.get("status")?.as_object()?;
            let n: f64 = status
                .iter()
                .filter(|(code, _)| !code.starts_with('2'))
                .filter_map(|(_, n)| n.as_f64())
                .sum();
            (n > 0.0).then(|| format!("{n} at {}", num(r, &["connections"]).unwrap_or(f64::NAN)))
        })
        .collect();
    (!bad.is_empty()).then(|| format!("non-2xx responses: {}", bad.join(", ")))
}

/// Builds the figure of one scenario's rows (`health`, `transcribe` or
/// `stream`); other scenarios have no load axis and are an error.
pub fn figure(scenario: &str, rows: &[Value], opts: &PlotOptions) -> Result<Figure> {
    if rows.is_empty() {
        bail!("no rows for scenario {scenario}");
    }
    let levels = rows.len();
    match scenario {
        "health" | "transcribe" => {
            let x = ["connections"];
            let mode = first_str(rows, "mode").unwrap_or("closed");
            let secs = num(&rows[0], &["duration_s"]).unwrap_or(f64::NAN);
            let (what, throughput) = if scenario == "health" {
                (
                    "GET /v1/health",
                    Panel {
                        title: "Throughput".into(),
                        x_label: "concurrent connections".into(),
                        y_label: "requests per second (req/s)".into(),
                        series: vec![Series::from_rows("req/s", rows, &x, &["rps"], 1.0)],
                        hlines: Vec::new(),
                        value_labels: true,
                        y_from_zero: true,
                    },
                )
            } else {
                let panel = match opts.audio_seconds {
                    Some(a) => Panel {
                        title: format!("Throughput ({a} s of audio per request)"),
                        x_label: "concurrent connections".into(),
                        y_label: "audio seconds per wall second (× real time)".into(),
                        series: vec![Series::from_rows(
                            "audio × real time (req/s × audio s)",
                            rows,
                            &x,
                            &["rps"],
                            a,
                        )],
                        hlines: Vec::new(),
                        value_labels: true,
                        y_from_zero: true,
                    },
                    None => Panel {
                        title: "Throughput (pass --audio-seconds for audio × real time)".into(),
                        x_label: "concurrent connections".into(),
                        y_label: "requests per second (req/s)".into(),
                        series: vec![Series::from_rows("req/s", rows, &x, &["rps"], 1.0)],
                        hlines: Vec::new(),
                        value_labels: true,
                        y_from_zero: true,
                    },
                };
                ("POST /v1/transcribe", panel)
            };
            let latency = Panel {
                title: "Latency (all responses)".into(),
                x_label: "concurrent connections".into(),
                y_label: "latency (ms)".into(),
                series: vec![
                    Series::from_rows("p99", rows, &x, &["latency_ms", "p99"], 1.0),
                    Series::from_rows("p50", rows, &x, &["latency_ms", "p50"], 1.0),
                ],
                hlines: Vec::new(),
                value_labels: false,
                y_from_zero: false,
            };
            let mut notes = vec![format!(
                "{mode} loop, {secs} s measured per level, {levels} levels"
            )];
            notes.extend(problems(rows, "connections", &[("errors", "errors")]));
            notes.extend(non_2xx(rows));
            Ok(Figure {
                title: format!("{scenario}: {what} against concurrency"),
                notes,
                panels: vec![throughput, latency],
            })
        }
        "stream" => {
            let x = ["sessions"];
            let mode = first_str(rows, "mode").unwrap_or("paced");
            let secs = num(&rows[0], &["duration_s"]).unwrap_or(f64::NAN);
            let ramp = num(&rows[0], &["ramp_s"]).unwrap_or(f64::NAN);
            let throughput = Panel {
                title: "Throughput".into(),
                x_label: "concurrent streaming sessions".into(),
                y_label: "audio seconds per wall second (× real time)".into(),
                series: vec![Series::from_rows(
                    "audio × real time",
                    rows,
                    &x,
                    &["audio_x_realtime"],
                    1.0,
                )],
                hlines: Vec::new(),
                value_labels: true,
                y_from_zero: true,
            };
            let target = opts.lag_target_ms;
            let lag = Panel {
                title: "Transcript lag p99".into(),
                x_label: "concurrent streaming sessions".into(),
                y_label: "lag p99 (ms)".into(),
                series: vec![
                    Series::from_rows("interim lag p99", rows, &x, &["interim_lag_ms", "p99"], 1.0)
                        .without_empty(rows, &x, &["interim_lag_ms", "count"]),
                    Series::from_rows("final lag p99", rows, &x, &["final_lag_ms", "p99"], 1.0)
                        .without_empty(rows, &x, &["final_lag_ms", "count"]),
                ],
                hlines: vec![(target, format!("interim target {target} ms"))],
                value_labels: false,
                y_from_zero: false,
            };
            let mut notes = vec![format!(
                "{mode}, {secs} s of audio per session, ramp {ramp} s, {levels} levels; \
                 final lag includes the VAD hangover (~500 ms)"
            )];
            notes.extend(problems(
                rows,
                "sessions",
                &[
                    ("failed", "failed sessions"),
                    ("violations", "ordering violations"),
                ],
            ));
            Ok(Figure {
                title: "stream: real-time WebSocket sessions against concurrency".into(),
                notes,
                panels: vec![throughput, lag],
            })
        }
        other => bail!(
            "scenario `{other}` has no load axis to plot (health, transcribe and stream have)"
        ),
    }
}

impl Series {
    /// Drops the points of levels whose `count_path` is 0 (an empty
    /// histogram reports 0 for every percentile).
    fn without_empty(mut self, rows: &[Value], x_path: &[&str], count_path: &[&str]) -> Self {
        let empty: Vec<f64> = rows
            .iter()
            .filter(|r| num(r, count_path) == Some(0.0))
            .filter_map(|r| num(r, x_path))
            .collect();
        self.points.retain(|(x, _)| !empty.contains(x));
        self
    }
}

/// How an axis is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
}

/// Chooses an axis for `values`: logarithmic when they are all positive and
/// span more than `log_ratio` (a factor), else linear (from 0 if
/// `from_zero`), with some margin.
pub fn choose_axis(values: &[f64], log_ratio: f64, from_zero: bool) -> Axis {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if finite.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if lo > 0.0 && hi / lo > log_ratio {
        return Axis {
            lo: lo / 1.4,
            hi: hi * 1.4,
            log: true,
        };
    }
    if from_zero && lo >= 0.0 {
        lo = 0.0;
    }
    let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
    Axis {
        lo: if lo == 0.0 { 0.0 } else { lo - span * 0.08 },
        hi: hi + span * 0.12,
        log: false,
    }
}

/// A short tick label: three significant digits, no trailing zeros.
pub fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
const TARGET_COLOR: RGBColor = RGBColor(214, 39, 40);

/// Draws `fig` into an SVG file of `size` pixels.
pub fn render_svg(fig: &Figure, path: &Path, size: (u32, u32)) -> Result<()> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    draw_figure(&root, fig)?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// Draws `fig` into a string of SVG.
pub fn render_svg_string(fig: &Figure, size: (u32, u32)) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw_figure(&root, fig)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(out)
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

fn draw_figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let header_h = 40 + 20 * fig.notes.len() as u32;
    let (header, body) = root.split_vertically(header_h);
    header
        .draw(&Text::new(
            fig.title.clone(),
            (20, 10),
            ("sans-serif", 24).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    for (i, note) in fig.notes.iter().enumerate() {
        header
            .draw(&Text::new(
                note.clone(),
                (20, 42 + 20 * i as i32),
                ("sans-serif", 15).into_font().color(&RGBColor(80, 80, 80)),
            ))
            .map_err(err)?;
    }
    let n = fig.panels.len().max(1);
    for (area, panel) in body.split_evenly((n, 1)).iter().zip(&fig.panels) {
        draw_panel_auto(area, panel)?;
    }
    Ok(())
}

/// Picks linear or log axes for the panel and draws it.
fn draw_panel_auto<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()> {
    let xs: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let mut ys: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    ys.extend(panel.hlines.iter().map(|h| h.0));
    let x = choose_axis(&xs, 7.9, false);
    // Throughput stays linear (from 0); latencies go log past a 20× spread.
    let mut y = if panel.y_from_zero {
        choose_axis(&ys, f64::INFINITY, true)
    } else {
        choose_axis(&ys, 20.0, false)
    };
    // Headroom for the legend in the upper left corner.
    y.hi = legend_headroom(y);
    // A log x axis is ticked at the sweep's levels only.
    let mut levels = xs;
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    match (x.log, y.log) {
        (false, false) => draw_panel(area, panel, x.lo..x.hi, y.lo..y.hi),
        (true, false) => draw_panel(
            area,
            panel,
            (x.lo..x.hi).log_scale().with_key_points(levels),
            y.lo..y.hi,
        ),
        (false, true) => draw_panel(
            area,
            panel,
            x.lo..x.hi,
            (y.lo..y.hi)
                .log_scale()
                .with_key_points(log_ticks(y.lo, y.hi)),
        ),
        (true, true) => draw_panel(
            area,
            panel,
            (x.lo..x.hi).log_scale().with_key_points(levels),
            (y.lo..y.hi)
                .log_scale()
                .with_key_points(log_ticks(y.lo, y.hi)),
        ),
    }
}

/// Ticks of a log axis from `lo` to `hi`: 1-2-5 steps per decade, or only
/// the powers of ten when that would make more than 12.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let ticks = |steps: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let fine = ticks(&[1.0, 2.0, 5.0]);
    if fine.len() <= 12 {
        fine
    } else {
        ticks(&[1.0])
    }
}

/// The top of the y axis raised so the upper quarter of the panel is free
/// for the legend.
pub fn legend_headroom(y: Axis) -> f64 {
    if y.log {
        y.hi * (y.hi / y.lo).powf(0.3)
    } else {
        y.hi + (y.hi - y.lo) * 0.3
    }
}

fn draw_panel<DB, XS, YS>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    xs: XS,
    ys: YS,
) -> Result<()>
where
    DB: DrawingBackend,
    XS: AsRangedCoord<Value = f64>,
    YS: AsRangedCoord<Value = f64>,
    XS::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    YS::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 19))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(xs, ys)
        .map_err(err)?;
    let (x_range, y_range) = (chart.x_range(), chart.y_range());
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .max_light_lines(4)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(err)?;
    for (i, s) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(&s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
        if panel.value_labels && i == 0 {
            chart
                .draw_series(s.points.iter().map(|&(px, py)| {
                    EmptyElement::at((px, py))
                        + Text::new(
                            tick_label(py),
                            (0, -7),
                            ("sans-serif", 13)
                                .into_font()
                                .color(&RGBColor(60, 60, 60))
                                .pos(Pos::new(HPos::Center, VPos::Bottom)),
                        )
                }))
                .map_err(err)?;
        }
    }
    for (y, label) in &panel.hlines {
        if !y_range.contains(y) {
            continue;
        }
        let line = vec![(x_range.start, *y), (x_range.end, *y)];
        chart
            .draw_series(std::iter::once(PathElement::new(
                line,
                TARGET_COLOR.stroke_width(1),
            )))
            .map_err(err)?
            .label(label)
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], TARGET_COLOR.stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTH: &str = r#"{"scenario":"health","connections":4,"duration_s":4.0,"rps":70031.5,"status":{"200":280136},"errors":0,"latency_ms":{"p50":0.055,"p99":0.083},"mode":"closed"}
scenario    health  (human summary line, skipped)
{"scenario":"health","connections":1,"duration_s":4.0,"rps":36747.4,"status":{"200":146990},"errors":0,"latency_ms":{"p50":0.026,"p99":0.04},"mode":"closed"}

{"scenario":"health","connections":64,"duration_s":4.0,"rps":92565.6,"status":{"200":370000,"503":5},"errors":2,"latency_ms":{"p50":0.603,"p99":3.405},"mode":"closed"}
"#;

    const STREAM: &str = r#"{"scenario":"stream","sessions":100,"completed":100,"failed":0,"violations":0,"audio_x_realtime":66.86,"interim_lag_ms":{"p99":0.529,"count":1300},"final_lag_ms":{"p99":493.055,"count":400},"mode":"paced","duration_s":9.9,"ramp_s":5.0}
{"scenario":"stream","sessions":3000,"completed":2990,"failed":10,"violations":0,"audio_x_realtime":1380.53,"interim_lag_ms":{"p99":97.023,"count":39000},"final_lag_ms":{"p99":602.111,"count":12000},"mode":"paced","duration_s":9.9,"ramp_s":5.0}
{"scenario":"stream","sessions":500,"completed":500,"failed":0,"violations":0,"audio_x_realtime":333.39,"interim_lag_ms":{"p99":0.0,"count":0},"final_lag_ms":{"p99":495.359,"count":2000},"mode":"paced","duration_s":9.9,"ramp_s":5.0}"#;

    #[test]
    fn parses_json_lines_and_skips_the_rest() {
        let rows = parse_jsonl(HEALTH).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(num(&rows[0], &["latency_ms", "p99"]), Some(0.083));
        assert_eq!(num(&rows[0], &["latency_ms", "nope"]), None);
        assert_eq!(num(&rows[0], &["mode"]), None, "a string is not a number");
        let e = parse_jsonl("{\"a\":1}\n{not json\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        assert!(parse_jsonl("").unwrap().is_empty());
    }

    #[test]
    fn groups_rows_by_scenario_in_order() {
        let text = format!("{STREAM}\n{HEALTH}");
        let groups = group_by_scenario(parse_jsonl(&text).unwrap()).unwrap();
        let names: Vec<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stream", "health"]);
        assert_eq!(groups[0].1.len(), 3);
        assert_eq!(groups[1].1.len(), 3);
        assert!(group_by_scenario(parse_jsonl("{\"rps\":1}").unwrap()).is_err());
    }

    #[test]
    fn health_series_are_sorted_by_load() {
        let rows = parse_jsonl(HEALTH).unwrap();
        let fig = figure("health", &rows, &PlotOptions::default()).unwrap();
        assert_eq!(fig.panels.len(), 2);
        assert_eq!(
            fig.panels[0].series[0].points,
            vec![(1.0, 36747.4), (4.0, 70031.5), (64.0, 92565.6)]
        );
        let p99 = &fig.panels[1].series[0];
        assert_eq!(p99.name, "p99");
        assert_eq!(p99.points, vec![(1.0, 0.04), (4.0, 0.083), (64.0, 3.405)]);
        assert!(fig.panels[1].y_label.contains("ms"));
        assert!(fig.title.starts_with("health"));
        let notes = fig.notes.join("\n");
        assert!(notes.contains("errors: 2 at 64"), "{notes}");
        assert!(notes.contains("non-2xx responses: 5 at 64"), "{notes}");
    }

    #[test]
    fn transcribe_throughput_is_audio_seconds_when_known() {
        let rows: Vec<Value> = parse_jsonl(&HEALTH.replace("health", "transcribe")).unwrap();
        let opts = PlotOptions {
            audio_seconds: Some(2.0),
            ..PlotOptions::default()
        };
        let fig = figure("transcribe", &rows, &opts).unwrap();
        assert_eq!(fig.panels[0].series[0].points[0], (1.0, 73494.8));
        assert!(fig.panels[0].y_label.contains("audio seconds"));
        let fig = figure("transcribe", &rows, &PlotOptions::default()).unwrap();
        assert_eq!(fig.panels[0].series[0].points[0], (1.0, 36747.4));
        assert!(fig.panels[0].y_label.contains("req/s"));
    }

    #[test]
    fn stream_has_two_lag_series_and_the_target_line() {
        let rows = parse_jsonl(STREAM).unwrap();
        let fig = figure("stream", &rows, &PlotOptions::default()).unwrap();
        assert_eq!(
            fig.panels[0].series[0].points,
            vec![(100.0, 66.86), (500.0, 333.39), (3000.0, 1380.53)]
        );
        let lag = &fig.panels[1];
        assert_eq!(lag.series[0].name, "interim lag p99");
        // The level without interims (count 0) has no interim point.
        assert_eq!(lag.series[0].points, vec![(100.0, 0.529), (3000.0, 97.023)]);
        assert_eq!(lag.series[1].points.len(), 3);
        assert_eq!(lag.hlines, vec![(50.0, "interim target 50 ms".to_string())]);
        assert!(fig.notes.join(" ").contains("failed sessions: 10 at 3000"));
        assert!(figure("idle", &rows, &PlotOptions::default()).is_err());
        assert!(figure("stream", &[], &PlotOptions::default()).is_err());
    }

    #[test]
    fn axes_and_ticks() {
        let a = choose_axis(&[1.0, 4.0, 16.0, 64.0], 7.9, false);
        assert!(a.log && a.lo < 1.0 && a.hi > 64.0);
        let a = choose_axis(&[100.0, 250.0, 500.0], 7.9, false);
        assert!(!a.log && a.lo < 100.0 && a.hi > 500.0);
        let a = choose_axis(&[5.0, 10.0], f64::INFINITY, true);
        assert_eq!(a.lo, 0.0);
        assert!(a.hi > 10.0);
        let a = choose_axis(&[], 10.0, false);
        assert!(a.hi > a.lo);
        let a = choose_axis(&[3.0], 10.0, false);
        assert!(a.hi > 3.0 && a.lo < 3.0);
        assert_eq!(log_ticks(0.3, 40.0), vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(
            log_ticks(0.01, 5000.0),
            vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
        );
        assert!(log_ticks(0.0, 1.0).is_empty());
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(0.04), "0.04");
        assert_eq!(tick_label(0.12345), "0.123");
        assert_eq!(tick_label(1.5), "1.5");
        assert_eq!(tick_label(50.0), "50");
        assert_eq!(tick_label(92565.6), "92566");
        assert_eq!(tick_label(1e-7), "0");
    }

    #[test]
    fn renders_an_svg_with_the_labels() {
        let rows = parse_jsonl(STREAM).unwrap();
        let fig = figure("stream", &rows, &PlotOptions::default()).unwrap();
        let svg = render_svg_string(&fig, (900, 1000)).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "interim lag p99",
            "final lag p99",
            "lag p99 (ms)",
            "interim target 50 ms",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }
}
