//! The Prometheus text exposition format (0.0.4) of the plugin's series:
//! cells summed per label set, histograms made cumulative.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

/// A histogram's totals over cells.
#[derive(Default)]
pub(super) struct HistogramTotals {
    buckets: [u64; BUCKETS_MS.len() + 1],
    sum_micros: u64,
}

impl HistogramTotals {
    fn add(&mut self, h: &Histogram) {
        for (t, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *t += b.load(Ordering::Relaxed);
        }
        self.sum_micros = self
            .sum_micros
            .wrapping_add(h.sum_micros.load(Ordering::Relaxed));
    }
}

/// `code` values: a status, or `other`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Code {
    Status(u16),
    Other,
}

pub(super) fn render_series(series: &[(Arc<Key>, Vec<Arc<Cell>>)], out: &mut String) {
    // Summed over cells, and over label sets that show the same labels
    // (two routes of one name under `prefer_name`).
    let mut status: BTreeMap<([&str; 6], Code), u64> = BTreeMap::new();
    let mut latency: BTreeMap<[&str; 4], [HistogramTotals; 3]> = BTreeMap::new();
    let mut bandwidth: BTreeMap<[&str; 4], [u64; 2]> = BTreeMap::new();
    for (key, cells) in series {
        let k = &key.values;
        let status_labels = [
            &*k[ROUTE],
            &*k[MATCHED_URI],
            &*k[MATCHED_HOST],
            &*k[SERVICE],
            &*k[CONSUMER],
            &*k[NODE],
        ];
        let labels = [&*k[ROUTE], &*k[SERVICE], &*k[CONSUMER], &*k[NODE]];
        let hists = latency.entry(labels).or_default();
        let bytes = bandwidth.entry(labels).or_default();
        for cell in cells {
            for (code, count) in cell.codes.iter().zip(&cell.counts) {
                let code = code.load(Ordering::Acquire);
                if code != 0 {
                    *status
                        .entry((status_labels, Code::Status(code)))
                        .or_default() += count.load(Ordering::Relaxed);
                }
            }
            let other = cell.other_codes.load(Ordering::Relaxed);
            if other > 0 {
                *status.entry((status_labels, Code::Other)).or_default() += other;
            }
            for (t, h) in hists.iter_mut().zip(&cell.latency) {
                t.add(h);
            }
            for (t, b) in bytes.iter_mut().zip(&cell.bandwidth) {
                *t += b.load(Ordering::Relaxed);
            }
        }
    }
    if series.is_empty() {
        return;
    }

    header(
        out,
        "apisix_http_status",
        "counter",
        "HTTP status codes per service in APISIX",
    );
    for ((l, code), n) in &status {
        let code = match code {
            Code::Status(c) => c.to_string(),
            Code::Other => "other".to_owned(),
        };
        let _ = writeln!(
            out,
            "apisix_http_status{{code=\"{code}\",route=\"{}\",matched_uri=\"{}\",matched_host=\"{}\",service=\"{}\",consumer=\"{}\",node=\"{}\"}} {n}",
            escape(l[0]), escape(l[1]), escape(l[2]), escape(l[3]), escape(l[4]), escape(l[5]),
        );
    }

    header(
        out,
        "apisix_http_latency",
        "histogram",
        "HTTP request latency in milliseconds per service in APISIX",
    );
    for (l, hists) in &latency {
        let labels = format!(
            "route=\"{}\",service=\"{}\",consumer=\"{}\",node=\"{}\"",
            escape(l[0]),
            escape(l[1]),
            escape(l[2]),
            escape(l[3])
        );
        for (kind, h) in LATENCY_TYPES.iter().zip(hists) {
            let count: u64 = h.buckets.iter().sum();
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS_MS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), u64::to_string);
                let _ = writeln!(
                    out,
                    "apisix_http_latency_bucket{{type=\"{kind}\",{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "apisix_http_latency_sum{{type=\"{kind}\",{labels}}} {}",
                millis(h.sum_micros)
            );
            let _ = writeln!(
                out,
                "apisix_http_latency_count{{type=\"{kind}\",{labels}}} {count}"
            );
        }
    }

    header(
        out,
        "apisix_bandwidth",
        "counter",
        "Total bandwidth in bytes consumed per service in APISIX",
    );
    for (l, bytes) in &bandwidth {
        for (kind, n) in BANDWIDTH_TYPES.iter().zip(bytes) {
            let _ = writeln!(
                out,
                "apisix_bandwidth{{type=\"{kind}\",route=\"{}\",service=\"{}\",consumer=\"{}\",node=\"{}\"}} {n}",
                escape(l[0]), escape(l[1]), escape(l[2]), escape(l[3]),
            );
        }
    }
}

pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Microseconds as decimal milliseconds, exactly (`1500` → `1.5`).
pub(super) fn millis(micros: u64) -> String {
    let (whole, frac) = (micros / 1000, micros % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// A label value escaped for the text format (`\`, `"`, newline).
pub(super) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}
