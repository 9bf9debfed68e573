//! Self-contained reports: [`line_chart`] draws an inline SVG chart (no script, no network);
//! [`html_report`] and [`svg_report`] put each phase's figures and its throughput and latency
//! over time into one file.

use std::fmt::Write;

use crate::provenance::Provenance;
use crate::report::{Measured, render_text};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 42.0;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// CSS colour.
    pub color: &'static str,
    /// Drawn dashed (the baseline).
    pub dashed: bool,
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
}

/// Escapes text for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The smallest of 1, 2, 2.5, 5 × 10^k that is at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

/// `950`, `12k`, `1.5M`.
fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The plotting area of a chart and the ranges it shows: maps data to pixels.
struct Plot {
    max_x: f64,
    y_min: f64,
    y_max: f64,
    log: bool,
}

impl Plot {
    const W: f64 = WIDTH - LEFT - RIGHT;
    const H: f64 = HEIGHT - TOP - BOTTOM;

    /// The ranges that hold every point: x from 0 to the last second; y from 0 to a round
    /// top, or on a log scale whole decades around the positive values.
    fn around(series: &[Series], log: bool) -> Plot {
        let points = || series.iter().flat_map(|s| s.points.iter().copied());
        let max_x = points().map(|p| p.0).fold(1.0, f64::max).ceil();
        let max_y = points().map(|p| p.1).fold(0.0, f64::max);
        let (y_min, y_max) = if log {
            let min_y = points()
                .map(|p| p.1)
                .filter(|&y| y > 0.0)
                .fold(f64::MAX, f64::min);
            let low = if min_y == f64::MAX {
                1.0
            } else {
                10f64.powf(min_y.log10().floor())
            };
            let high = 10f64.powf(max_y.max(low * 10.0).log10().ceil());
            (low, high)
        } else {
            (0.0, nice_ceiling(max_y))
        };
        Plot {
            max_x,
            y_min,
            y_max,
            log,
        }
    }

    fn x(&self, x: f64) -> f64 {
        LEFT + x / self.max_x * Self::W
    }

    fn y(&self, y: f64) -> f64 {
        let fraction = if self.log {
            (y.max(self.y_min).log10() - self.y_min.log10())
                / (self.y_max.log10() - self.y_min.log10())
        } else {
            (y - self.y_min) / (self.y_max - self.y_min)
        };
        TOP + Self::H * (1.0 - fraction)
    }

    /// Horizontal grid lines and y labels: six even steps, or one a decade.
    fn y_grid(&self, svg: &mut String) {
        let ticks: Vec<f64> = if self.log {
            let decades = (self.y_max.log10() - self.y_min.log10()).round() as i32;
            (0..=decades).map(|d| self.y_min * 10f64.powi(d)).collect()
        } else {
            (0..=5).map(|i| self.y_max * f64::from(i) / 5.0).collect()
        };
        for y in ticks {
            let py = self.y(y);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + Self::W,
                LEFT - 6.0,
                py + 4.0,
                compact(y)
            );
        }
    }

    /// X ticks: whole seconds, at most about ten.
    fn x_ticks(&self, svg: &mut String) {
        let step = nice_ceiling(self.max_x / 10.0).max(1.0);
        let mut x = 0.0;
        while x <= self.max_x + 1e-9 {
            let px = self.x(x);
            let _ = write!(
                svg,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + Self::H,
                TOP + Self::H + 4.0,
                TOP + Self::H + 16.0,
                trim(x)
            );
            x += step;
        }
    }

    /// The `i`-th series: its line (a dot for a single point) and its legend entry.
    fn series(&self, svg: &mut String, i: usize, s: &Series) {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        if let [(x, y)] = s.points[..] {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                self.x(x),
                self.y(y),
                s.color
            );
        } else if !s.points.is_empty() {
            let path: Vec<String> = (s.points.iter().enumerate())
                .map(|(j, &(x, y))| {
                    let verb = if j == 0 { "M" } else { "L" };
                    format!("{verb}{:.1} {:.1}", self.x(x), self.y(y))
                })
                .collect();
            let _ = write!(
                svg,
                r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.8"{dash}/>"#,
                path.join(" "),
                s.color
            );
        }
        let ly = TOP + 8.0 + 16.0 * i as f64;
        let lx = LEFT + Self::W + 12.0;
        let _ = write!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 18.0,
            s.color,
            lx + 24.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
}

/// A line chart of `series` over seconds; `log` draws the y axis in decades.
pub fn line_chart(title: &str, y_label: &str, series: &[Series], log: bool) -> String {
    let plot = Plot::around(series, log);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{LEFT}" y="18" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
    plot.y_grid(&mut svg);
    plot.x_ticks(&mut svg);
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the measurement began</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        Plot::W,
        Plot::H,
        LEFT + Plot::W / 2.0,
        HEIGHT - 8.0,
        TOP + Plot::H / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        plot.series(&mut svg, i, s);
    }
    svg.push_str("</svg>");
    svg
}

/// The two charts of a phase: decisions per second, and latency per second.
pub fn phase_charts(measured: &Measured) -> [String; 2] {
    let run = &measured.run;
    let per_second = |f: fn(&crate::report::SecondPoint) -> f64| -> Vec<(f64, f64)> {
        run.series
            .iter()
            .map(|p| (p.second as f64 + 0.5, f(p)))
            .collect()
    };
    let mut throughput = vec![
        Series {
            name: "decisions/s".into(),
            color: "#1f77b4",
            dashed: false,
            points: per_second(|p| p.decisions as f64),
        },
        Series {
            name: "OK/s".into(),
            color: "#2ca02c",
            dashed: false,
            points: per_second(|p| p.ok as f64),
        },
        Series {
            name: "OVER_LIMIT/s".into(),
            color: "#ff7f0e",
            dashed: false,
            points: per_second(|p| p.over_limit as f64),
        },
        Series {
            name: "errors/s".into(),
            color: "#d62728",
            dashed: false,
            points: per_second(|p| p.errors as f64),
        },
    ];
    if let Some(baseline) = &measured.baseline {
        throughput.push(Series {
            name: "baseline/s".into(),
            color: "#7f7f7f",
            dashed: true,
            points: baseline
                .series
                .iter()
                .map(|p| (p.second as f64 + 0.5, p.decisions as f64))
                .collect(),
        });
    }
    let latency = vec![
        Series {
            name: "p50".into(),
            color: "#1f77b4",
            dashed: false,
            points: per_second(|p| p.p50_us as f64 / 1e3),
        },
        Series {
            name: "p99".into(),
            color: "#ff7f0e",
            dashed: false,
            points: per_second(|p| p.p99_us as f64 / 1e3),
        },
        Series {
            name: "max".into(),
            color: "#d62728",
            dashed: false,
            points: per_second(|p| p.max_us as f64 / 1e3),
        },
    ];
    [
        line_chart("Throughput", "per second", &throughput, false),
        line_chart("Latency (log scale)", "milliseconds", &latency, true),
    ]
}

fn title(measured: &Measured, index: usize) -> String {
    let run = &measured.run;
    if run.name.is_empty() {
        format!("Phase {}: {}", index + 1, run.targets.join(", "))
    } else {
        format!(
            "Phase {}: {} ({})",
            index + 1,
            run.name,
            run.targets.join(", ")
        )
    }
}

/// One HTML page: where the figures come from, then per phase the printed table and the
/// two charts, all inline.
pub fn html_report(provenance: &Provenance, phases: &[Measured]) -> String {
    let quota = provenance.quota.as_deref();
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>loadtest report</title>\n<style>body{font-family:sans-serif;margin:2em;color:#222;max-width:64em}pre{background:#f6f6f6;padding:1em;overflow-x:auto}svg{display:block;margin:1em 0}</style>\n</head>\n<body>\n<h1>loadtest report</h1>\n",
    );
    let _ = writeln!(
        html,
        "<pre class=\"provenance\">{}</pre>",
        escape(&provenance.lines().join("\n"))
    );
    for (i, measured) in phases.iter().enumerate() {
        let [throughput, latency] = phase_charts(measured);
        let _ = write!(
            html,
            "<h2>{}</h2>\n<pre>{}</pre>\n{throughput}\n{latency}\n",
            escape(&title(measured, i)),
            escape(&render_text(measured, quota))
        );
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// Writes `line` as a line of monospace SVG text at `y`; the `y` of the next line.
fn monospace_line(body: &mut String, y: f64, line: &str) -> f64 {
    let _ = write!(
        body,
        r#"<text x="10" y="{:.0}" font-family="monospace" font-size="12" xml:space="preserve">{}</text>"#,
        y + 12.0,
        escape(line)
    );
    y + 15.0
}

/// One SVG image: where the figures come from, then per phase the printed table as text
/// and the two charts.
pub fn svg_report(provenance: &Provenance, phases: &[Measured]) -> String {
    let mut body = String::new();
    let mut y = 10.0;
    let head = provenance.lines();
    for line in &head {
        y = monospace_line(&mut body, y, line);
    }
    for (i, measured) in phases.iter().enumerate() {
        let _ = write!(
            body,
            r#"<text x="10" y="{:.0}" font-size="15" font-weight="bold">{}</text>"#,
            y + 16.0,
            escape(&title(measured, i))
        );
        y += 28.0;
        for line in render_text(measured, None).lines() {
            y = monospace_line(&mut body, y, line);
        }
        for chart in phase_charts(measured) {
            let _ = write!(body, r#"<g transform="translate(0 {y:.0})">{chart}</g>"#);
            y += HEIGHT + 10.0;
        }
    }
    // Monospace text at 12 px is about 7.3 px a character.
    let widest = phases
        .iter()
        .flat_map(|m| {
            render_text(m, None)
                .lines()
                .map(|l| l.chars().count())
                .collect::<Vec<_>>()
        })
        .chain(head.iter().map(|l| l.chars().count()))
        .max()
        .unwrap_or(0);
    let width = WIDTH.max(20.0 + 7.3 * widest as f64).ceil();
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y:.0}" viewBox="0 0 {width} {y:.0}"><rect width="100%" height="100%" fill="white"/>{body}</svg>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round_numbers() {
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(1800.0), 2000.0);
        assert_eq!(nice_ceiling(2300.0), 2500.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(compact(12_000.0), "12k");
        assert_eq!(compact(1_500_000.0), "1.5M");
    }

    #[test]
    fn a_chart_is_standalone_svg_with_one_path_per_series_and_escaped_text() {
        let series = [
            Series {
                name: "a<b".into(),
                color: "red",
                dashed: false,
                points: vec![(0.5, 10.0), (1.5, 20.0)],
            },
            Series {
                name: "c".into(),
                color: "blue",
                dashed: true,
                points: vec![(0.5, 5.0), (1.5, 1.0)],
            },
        ];
        let svg = line_chart("T & t", "per second", &series, false);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<path ").count(), 2);
        assert!(svg.contains("a&lt;b") && svg.contains("T &amp; t"));
        assert!(!svg.contains("<script"));
        let log = line_chart("L", "ms", &series, true);
        assert_eq!(log.matches("<path ").count(), 2);
    }
}
