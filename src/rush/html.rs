//! `crema rush --html FILE`: the report as one self-contained HTML page —
//! the summary table, failures by problem code, and two charts drawn as inline
//! SVG (no script, no fonts or libraries fetched): throughput over time
//! (offered, accepted, shed) and the p99 of `POST /orders` over time.

use std::fmt::Write as _;

use super::report::{Report, Second};

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_ceiling(value: f64) -> f64 {
    if !(value > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|step| step * power).find(|bound| *bound >= value).unwrap_or(10.0 * power)
}

/// One line chart: `series` are (name, colour, points of (t_s, value)).
fn chart(title: &str, unit: &str, series: &[(&str, &str, Vec<(f64, f64)>)]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 260.0;
    const LEFT: f64 = 64.0;
    const BOTTOM: f64 = 36.0;
    const TOP: f64 = 16.0;
    const RIGHT: f64 = 16.0;
    let t_last = series.iter().flat_map(|(_, _, points)| points.iter().map(|p| p.0)).fold(1.0_f64, f64::max);
    // Whole-number ticks: a round step, and the axis to the next multiple of it.
    let t_step = nice_ceiling(t_last / 5.0).max(1.0);
    let t_max = (t_last / t_step).ceil() * t_step;
    let y_max = nice_ceiling(series.iter().flat_map(|(_, _, points)| points.iter().map(|p| p.1)).fold(0.0_f64, f64::max));
    let x = |t: f64| LEFT + (t / t_max) * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / y_max) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = write!(svg, r##"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {W} {H}" role="img" aria-label="{}">"##, escape(title), escape(title));
    for step in 0..=4 {
        let value = y_max * f64::from(step) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" class="grid"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y(value) + 4.0,
            format_value(value),
            y0 = y(value)
        );
    }
    let mut t = 0.0;
    while t <= t_max + f64::EPSILON {
        let _ = write!(svg, r##"<text x="{:.1}" y="{}" class="tick" text-anchor="middle">{:.0}</text>"##, x(t), H - BOTTOM + 16.0, t);
        t += t_step;
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{}" class="axis" text-anchor="middle">time (s)</text><text x="14" y="{:.1}" class="axis" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"##,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 4.0,
        TOP + (H - TOP - BOTTOM) / 2.0,
        TOP + (H - TOP - BOTTOM) / 2.0,
        escape(unit)
    );
    for (name, colour, points) in series {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
        let _ = write!(svg, r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"><title>{}</title></polyline>"##, path.join(" "), escape(name));
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (name, colour, _) in series {
        let _ = write!(svg, r##"<span><i style="background:{colour}"></i>{}</span>"##, escape(name));
    }
    svg.push_str("</div></figure>");
    svg
}

fn format_value(value: f64) -> String {
    if value >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn points(seconds: &[Second], value: impl Fn(&Second) -> Option<f64>) -> Vec<(f64, f64)> {
    seconds.iter().filter_map(|second| value(second).map(|v| (second.t_s, v))).collect()
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let title = format!("crema rush against {}", report.target);
    let _ = write!(
        page,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>
body{{font-family:system-ui,sans-serif;color:#2b1d14;background:#f6f1ea;margin:0;padding:20px;max-width:900px;margin:auto}}
h1{{font-size:22px}} table{{border-collapse:collapse;width:100%;background:#fff;font-size:14px}}
th,td{{padding:6px 8px;border-bottom:1px solid #e4d6c6;text-align:right}} th:first-child,td:first-child{{text-align:left}}
figure{{background:#fff;border:1px solid #e4d6c6;border-radius:12px;padding:12px;margin:18px 0}} figcaption{{font-weight:600;margin-bottom:6px}}
svg{{width:100%;height:auto}} .grid{{stroke:#eee3d6}} .tick{{font-size:11px;fill:#7a6656}} .axis{{font-size:12px;fill:#2b1d14}}
.legend span{{margin-right:14px;font-size:13px}} .legend i{{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}}
.pass{{color:#2f7d4f}} .fail{{color:#b83a2b;font-weight:700}} .muted{{color:#7a6656;font-size:13px}}
</style></head><body><h1>{}</h1>"##,
        escape(&title),
        escape(&title)
    );
    let _ = write!(
        page,
        r##"<p class="muted">{:?} profile, peak {}/s, {:.0} s measured after {:.0} s warm-up, {} connections{}. Offered {} orders, accepted {} ({:.1}/s). Latency is from when each request was due.</p>"##,
        report.profile.shape,
        report.profile.peak_rate,
        report.measured_s,
        report.warmup_s,
        report.connections,
        if report.embedded { ", embedded engine" } else { "" },
        report.orders_offered,
        report.orders_accepted,
        report.accepted_per_s
    );
    if !report.thresholds.is_empty() {
        page.push_str("<ul>");
        for threshold in &report.thresholds {
            let (class, verdict) = if threshold.passed { ("pass", "passed") } else { ("fail", "FAILED") };
            let _ = write!(
                page,
                r##"<li class="{class}">threshold {}: {:.3} against a limit of {} — {verdict}</li>"##,
                threshold.name, threshold.value, threshold.limit
            );
        }
        page.push_str("</ul>");
    }
    page.push_str("<table><tr><th>endpoint</th><th>requests</th><th>req/s</th><th>2xx/s</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>");
    for endpoint in &report.endpoints {
        let l = &endpoint.latency_ms;
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(endpoint.endpoint),
            endpoint.requests,
            endpoint.throughput_per_s,
            endpoint.ok_per_s,
            l.p50,
            l.p99,
            l.p999,
            l.max
        );
        if !endpoint.failures.is_empty() {
            let failures: Vec<String> = endpoint.failures.iter().map(|(label, n)| format!("{} ×{n}", escape(label))).collect();
            let _ = write!(page, r##"<tr><td colspan="8" class="muted">failures: {}</td></tr>"##, failures.join(", "));
        }
    }
    page.push_str("</table>");
    let seconds = &report.per_second;
    page.push_str(&chart(
        "Throughput over time",
        "per second",
        &[
            ("offered orders/s", "#b7a08c", points(seconds, |s| Some(s.offered_rate))),
            ("accepted (201)/s", "#2f7d4f", points(seconds, |s| Some(s.accepted as f64))),
            ("shed (429/503)/s", "#b7791f", points(seconds, |s| Some(s.shed as f64))),
            ("failed + dropped/s", "#b83a2b", points(seconds, |s| Some((s.failed + s.dropped) as f64))),
        ],
    ));
    page.push_str(&chart(
        "POST /orders p99 latency over time",
        "ms",
        &[("p99 of the second", "#8a4b2a", points(seconds, |s| s.orders_p99_ms))],
    ));
    if seconds.iter().any(|second| second.rss_mib.is_some()) {
        page.push_str(&chart("Engine memory over time", "RSS (MiB)", &[("RSS", "#5b6fa8", points(seconds, |s| s.rss_mib))]));
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_bounds_are_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(170.0), 200.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
