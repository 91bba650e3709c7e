//! `crema rush`: a few seconds of a café rush against an embedded engine, as
//! a user runs it, and its JSON report checked for what it must contain.

use std::process::Command;

use serde_json::Value;

const CREMA: &str = env!("CARGO_BIN_EXE_crema");

fn endpoint<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["endpoints"].as_array().unwrap().iter().find(|e| e["endpoint"] == name).unwrap_or_else(|| {
        panic!("no {name} in {report:#}");
    })
}

#[test]
fn an_embedded_rush_places_follows_cancels_and_picks_up_orders() {
    let output = Command::new(CREMA)
        .args(["rush", "--embedded", "--duration", "4", "--rate", "150", "--ramp", "0.25"])
        .args(["--brew-scale", "0.005", "--poll-every", "0.1", "--cancel", "0.2", "--poll", "0.8", "--pickup", "1"])
        .args(["--json", "--quiet"])
        .output()
        .expect("crema rush runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints the report");

    assert_eq!(report["embedded"], true);
    let offered = report["orders_offered"].as_u64().unwrap();
    // A café profile of 4 s: 1 s ramps from 15/s to 150/s around a 2 s peak ≈ 465 orders.
    assert!((400..=530).contains(&offered), "offered {offered}");
    let orders = endpoint(&report, "POST /orders");
    assert_eq!(orders["statuses"]["201"].as_u64(), Some(offered), "every order accepted: {orders:#}");
    assert_eq!(report["orders_accepted"].as_u64(), Some(offered));

    let latency = &orders["latency_ms"];
    let (p50, p99, p999, max) =
        (latency["p50"].as_f64().unwrap(), latency["p99"].as_f64().unwrap(), latency["p999"].as_f64().unwrap(), latency["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max, "{latency}");

    // The follow-ups happened and were answered as the API says.
    let cancels = endpoint(&report, "POST /orders/{id}/cancel");
    let cancelled = cancels["statuses"]["200"].as_u64().unwrap_or(0);
    assert!(cancelled > 30, "about a fifth of the orders cancel: {cancels}");
    let polls = endpoint(&report, "GET /orders/{id}");
    assert!(polls["statuses"]["200"].as_u64().unwrap() > 100, "{polls}");
    let pickups = endpoint(&report, "POST /orders/{id}/pickup");
    assert!(pickups["statuses"]["200"].as_u64().unwrap() > 50, "{pickups}");
    for e in report["endpoints"].as_array().unwrap() {
        for bad in ["error", "timeout", "dropped", "500"] {
            assert!(e["statuses"].get(bad).is_none(), "{bad} in {e}");
        }
    }
    assert!(report["memory"]["peak_mib"].as_f64().unwrap() > 0.0, "the embedded engine's RSS is sampled");
    // A time series, a second an entry, adding up to (nearly) all orders.
    let seconds = report["per_second"].as_array().unwrap();
    assert!((3..=6).contains(&seconds.len()), "{} seconds", seconds.len());
    let accepted: u64 = seconds.iter().map(|second| second["accepted"].as_u64().unwrap()).sum();
    assert!(accepted * 10 >= offered * 7, "the series holds most orders: {accepted} of {offered}");
    assert!(seconds.iter().all(|second| second["offered_rate"].as_f64().unwrap() > 0.0));
}

#[test]
fn a_rush_needs_a_target() {
    let output = Command::new(CREMA).args(["rush", "--duration", "1"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--target"), "{}", String::from_utf8_lossy(&output.stderr));

    let output = Command::new(CREMA).args(["rush", "--target", "http://127.0.0.1:1", "--duration", "1"]).output().unwrap();
    assert!(!output.status.success(), "an unreachable target fails the rush");
    assert!(String::from_utf8_lossy(&output.stderr).contains("GET /menu"), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn thresholds_set_the_exit_code_and_failures_are_counted_by_problem_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crema.toml");
    // Half the charges fail: 503 payment_unavailable, told apart from overload.
    std::fs::write(&config, "[payment.simulated]\nfail_rate = 0.5\n[payment.breaker]\nmin_calls = 1000\n").unwrap();
    let rush = |thresholds: &[&str]| {
        Command::new(CREMA)
            .args(["rush", "--embedded", "--config", config.to_str().unwrap(), "--duration", "1500ms"])
            .args(["--rate", "60", "--profile", "constant", "--orders-only", "--brew-scale", "0", "--json", "--quiet"])
            .args(thresholds)
            .output()
            .expect("crema rush runs")
    };

    let failing = rush(&["--max-p99", "0ms", "--min-success", "0.99"]);
    assert_eq!(failing.status.code(), Some(99), "{}", String::from_utf8_lossy(&failing.stderr));
    let report: Value = serde_json::from_slice(&failing.stdout).unwrap();
    let thresholds = report["thresholds"].as_array().unwrap();
    assert_eq!(thresholds.len(), 2);
    assert!(thresholds.iter().all(|threshold| threshold["passed"] == false), "{thresholds:?}");
    let failures = &endpoint(&report, "POST /orders")["failures"];
    let unavailable = failures["503 payment_unavailable"].as_u64().unwrap_or(0);
    assert!(unavailable > 10, "failures by problem code: {failures}");

    let html = dir.path().join("rush.html");
    let passing = rush(&["--max-p99", "1m", "--min-success", "0.1", "--html", html.to_str().unwrap()]);
    assert!(passing.status.success(), "{}", String::from_utf8_lossy(&passing.stderr));
    let page = std::fs::read_to_string(&html).expect("--html writes the page");
    assert!(page.starts_with("<!doctype html>") && page.contains("<svg") && page.contains("time (s)"));
    assert!(page.contains("503 payment_unavailable"), "the failures are on the page");
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("<link"), "self-contained");
    let report: Value = serde_json::from_slice(&passing.stdout).unwrap();
    assert!(report["thresholds"].as_array().unwrap().iter().all(|threshold| threshold["passed"] == true));
}

#[test]
fn retrying_customers_get_through_a_flaky_payment_with_one_key_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crema.toml");
    std::fs::write(&config, "[payment.simulated]\nfail_rate = 0.5\n[payment.breaker]\nmin_calls = 1000\n").unwrap();
    let output = Command::new(CREMA)
        // Retries stop when the rush does, so the last seconds' orders get fewer
        // tries: over 8 s about 87 % get through (4 s gave about 77 %, too near
        // the 70 % asserted below: it failed once at 69 %).
        .args(["rush", "--embedded", "--config", config.to_str().unwrap(), "--duration", "8s", "--rate", "20"])
        .args(["--profile", "constant", "--orders-only", "--brew-scale", "0", "--retries", "5", "--json", "--quiet"])
        .output()
        .expect("crema rush runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let offered = report["orders_offered"].as_u64().unwrap();
    let accepted = report["orders_accepted"].as_u64().unwrap();
    assert!(report["retries_sent"].as_u64().unwrap() > offered / 4, "half the charges fail, so many retry: {report:#}");
    // Each order has one key: never more 201s than orders, and most get through.
    assert!(accepted <= offered, "{accepted} of {offered}");
    assert!(accepted * 10 >= offered * 7, "{accepted} of {offered} accepted after retries");
}
