//! Training curves as SVG: one panel per metric (loss, learning rate, each validation
//! metric) over epochs, one colour per run, solid lines for validation and dashed for training.
//!
//! Written as plain SVG rather than with plotters: plotters lays out text through font-kit and
//! the system's fontconfig, which servers and CI machines often lack; SVG text needs no fonts.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::training::{History, format_value, read_history};

const PANEL_W: f64 = 340.0;
const PANEL_H: f64 = 230.0;
const COLUMNS: usize = 3;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Keys of a history line that say where it was taken rather than what was measured.
const POSITION_KEYS: &[&str] = &["epoch", "step"];

/// The metric panels to draw, in a stable order: loss and learning rate first.
fn panel_keys(runs: &[(String, History)]) -> Vec<String> {
    let mut keys: Vec<String> = runs
        .iter()
        .flat_map(|(_, h)| {
            h.values()
                .flat_map(|epochs| epochs.values().flat_map(|v| v.keys().cloned()))
        })
        .filter(|k| !POSITION_KEYS.contains(&k.as_str()))
        .collect();
    keys.sort_by_key(|k| (k != "loss", k != "learning_rate", k.clone()));
    keys.dedup();
    keys
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn tick(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

/// Renders the curves of `runs` (name, history) as an SVG document.
pub fn render_svg(runs: &[(String, History)]) -> String {
    let keys = panel_keys(runs);
    let rows = keys.len().div_ceil(COLUMNS).max(1);
    let legend_h = 24.0 + 18.0 * runs.len() as f64;
    let (width, height) = (PANEL_W * COLUMNS as f64, legend_h + PANEL_H * rows as f64);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, (name, _)) in runs.iter().enumerate() {
        let y = 18.0 + 18.0 * i as f64;
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="10" y1="{y}" x2="40" y2="{y}" stroke="{color}" stroke-width="2"/><text x="46" y="{}">{} (solid: valid, dashed: train)</text>"#,
            y + 4.0,
            escape(name)
        );
    }
    for (p, key) in keys.iter().enumerate() {
        let (ox, oy) = (
            PANEL_W * (p % COLUMNS) as f64,
            legend_h + PANEL_H * (p / COLUMNS) as f64,
        );
        let (left, top, w, h) = (ox + 60.0, oy + 24.0, PANEL_W - 80.0, PANEL_H - 60.0);
        let series: Vec<(usize, bool, Vec<(f64, f64)>)> = runs
            .iter()
            .enumerate()
            .flat_map(|(r, (_, history))| {
                ["train", "valid"].into_iter().filter_map(move |split| {
                    let points: Vec<(f64, f64)> = history
                        .get(split)?
                        .iter()
                        .filter_map(|(&evaluation, values)| {
                            // x: epochs (fractional with --eval-steps) where recorded.
                            let x = values.get("epoch").copied().unwrap_or(evaluation as f64);
                            values.get(key).map(|&v| (x, v))
                        })
                        .collect();
                    (!points.is_empty()).then_some((r, split == "valid", points))
                })
            })
            .collect();
        let all = series.iter().flat_map(|(_, _, pts)| pts.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in all {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x1 <= x0 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        if y1 <= y0 {
            let pad = y0.abs().max(1e-9) * 0.05;
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        let sx = |x: f64| left + (x - x0) / (x1 - x0) * w;
        let sy = |y: f64| top + h - (y - y0) / (y1 - y0) * h;
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" font-weight="bold">{}</text><rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##,
            left,
            oy + 16.0,
            escape(key)
        );
        for t in 0..=4 {
            let v = y0 + (y1 - y0) * t as f64 / 4.0;
            let y = sy(v);
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                left + w,
                left - 4.0,
                y + 4.0,
                tick(v)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">epoch {}–{}</text>"#,
            left + w / 2.0,
            top + h + 18.0,
            format_value(x0),
            format_value(x1)
        );
        for (r, valid, points) in &series {
            let color = COLORS[r % COLORS.len()];
            let dash = if *valid {
                ""
            } else {
                r#" stroke-dasharray="5,4""#
            };
            let path: Vec<String> = points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for &(x, y) in points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    sx(x),
                    sy(y)
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Draws the curves of one or more run directories into `output` (default: the run's
/// `curves.svg` for one run, `curves.svg` here for several).
pub fn plot_runs(runs: &[PathBuf], output: Option<&Path>) -> Result<PathBuf> {
    let mut loaded = Vec::new();
    for dir in runs {
        let metrics = dir.join("metrics.jsonl");
        if !metrics.is_file() {
            return Err(Error::Input(format!(
                "{}: no metrics.jsonl (is this a burnbert run directory?)",
                dir.display()
            )));
        }
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        );
        loaded.push((name, read_history(&metrics)?));
    }
    let output = match (output, runs) {
        (Some(path), _) => path.to_path_buf(),
        (None, [one]) => one.join("curves.svg"),
        (None, _) => PathBuf::from("curves.svg"),
    };
    write_atomic(&output, render_svg(&loaded).as_bytes())?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(values: &[(usize, &str, &str, f64)]) -> History {
        let mut h = History::new();
        for &(epoch, split, key, v) in values {
            h.entry(split.into())
                .or_default()
                .entry(epoch)
                .or_default()
                .insert(key.into(), v);
        }
        h
    }

    #[test]
    fn one_panel_per_metric_one_line_per_run_and_split() {
        let a = history(&[
            (1, "train", "loss", 0.7),
            (2, "train", "loss", 0.5),
            (1, "valid", "loss", 0.6),
            (2, "valid", "loss", 0.55),
            (1, "valid", "accuracy", 0.7),
            (2, "valid", "accuracy", 0.8),
            (1, "train", "learning_rate", 5e-5),
        ]);
        let b = history(&[(1, "valid", "loss", 0.65), (1, "valid", "accuracy", 0.75)]);
        let svg = render_svg(&[("a".into(), a), ("b<1>".into(), b)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Panels: loss, learning_rate, accuracy (loss first).
        let loss = svg.find(">loss</text>").unwrap();
        let lr = svg.find(">learning_rate</text>").unwrap();
        let acc = svg.find(">accuracy</text>").unwrap();
        assert!(loss < lr && lr < acc);
        // Lines: loss (a train, a valid, b valid), lr (a train), accuracy (a valid, b valid).
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        assert!(svg.contains("b&lt;1&gt;"));
    }
}
