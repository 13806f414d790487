//! Stacked bar charts as SVG, drawn on the server: no script, no chart library, nothing the
//! browser has to fetch. The exact figures are always in a table beside the chart.

use maud::{html, Markup};

/// One stacked series: label, fill colour, one value per category.
#[derive(Debug)]
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'static str,
    pub values: Vec<u64>,
}

const WIDTH: u32 = 520;
const HEIGHT: u32 = 240;
const LEFT: u32 = 72;
const BOTTOM: u32 = 40;
const TOP: u32 = 28;

/// A round axis maximum at or above `max`: 1, 2 or 5 times a power of ten.
fn nice_max(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= max {
                return step.saturating_mul(m).max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// `1234567` → `1,234,567`, for axis labels.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `scale` divides values for the axis labels (100 turns fen into yuan).
pub fn stacked_bars(
    id: &str,
    title: &str,
    categories: &[String],
    series: &[Series<'_>],
    scale: u64,
) -> Markup {
    let totals: Vec<u64> = (0..categories.len())
        .map(|i| series.iter().map(|s| s.values[i]).sum())
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - 8;
    let n = categories.len().max(1) as u32;
    let slot = plot_w / n;
    let bar = (slot * 7 / 10).max(1);
    let y = |v: u64| -> u64 {
        let dy = u128::from(v) * u128::from(plot_h) / u128::from(max);
        u64::from(TOP + plot_h) - dy as u64
    };
    // (category, x, top, height, series, value) of every bar segment, stacked bottom up.
    let mut rects = Vec::new();
    for (i, cat) in categories.iter().enumerate() {
        let x = LEFT + slot * i as u32 + (slot - bar) / 2;
        let mut base = 0u64;
        for s in series {
            let v = s.values[i];
            let top = y(base + v);
            rects.push((cat, x, top, y(base) - top, s, v));
            base += v;
        }
    }
    html! {
        figure.chart id=(id) {
            svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(HEIGHT) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) {
                title { (title) }
                @for tick in 0..=4u64 {
                    @let v = max * tick / 4;
                    line x1=(LEFT) x2=(WIDTH - 8) y1=(y(v)) y2=(y(v)) stroke="#e3e8ee" {}
                    text x=(LEFT - 6) y=(y(v) + 4) text-anchor="end" font-size="11" fill="#5b6775" { (grouped(v / scale)) }
                }
                @for (cat, x, top, h, s, v) in &rects {
                    rect x=(x) y=(top) width=(bar) height=(h) fill=(s.color) {
                        title { (cat) " " (s.label) ": " (v) }
                    }
                }
                @for (i, cat) in categories.iter().enumerate() {
                    @let x = LEFT + slot * i as u32 + (slot - bar) / 2;
                    @if n <= 24 || i % 3 == 0 {
                        text x=(x + bar / 2) y=(HEIGHT - BOTTOM + 14) text-anchor="middle" font-size="11" fill="#5b6775" { (cat) }
                    }
                }
                @for (k, s) in series.iter().enumerate() {
                    @let lx = LEFT + 130 * k as u32;
                    rect x=(lx) y="8" width="10" height="10" fill=(s.color) {}
                    text x=(lx + 14) y="17" font-size="11" fill="#1d2733" { (s.label) }
                }
            }
            figcaption { (title) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maximum_is_round_and_covers_the_data() {
        // Proves the axis always reaches the tallest bar with a 1-2-5 number.
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(500_001), 1_000_000);
        assert_eq!(nice_max(u64::MAX), u64::MAX);
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(12_345_678), "12,345,678");
    }

    #[test]
    fn labels_are_escaped() {
        // Proves a hostile series label or category cannot inject markup into the SVG.
        let cats = vec!["<script>x</script>".to_owned()];
        let series = [Series {
            label: "\"><img>",
            color: "#000",
            values: vec![3],
        }];
        let svg = stacked_bars("c", "t", &cats, &series, 1).into_string();
        assert!(!svg.contains("<script>") && !svg.contains("<img>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
