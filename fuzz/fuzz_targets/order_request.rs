//! Any request body: parsed and validated against the built-in menu without
//! a panic; an accepted order keeps the contract's bounds and its arithmetic.
#![no_main]

use crema_fuzz::domain::{Menu, OrderRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = serde_json::from_slice::<OrderRequest>(body) else { return };
    let menu = Menu::builtin();
    let Ok(draft) = request.validate(&menu) else { return };
    assert!((1..=20).contains(&draft.lines.len()), "1-20 lines");
    let mut total = 0u64;
    for line in &draft.lines {
        assert!((1..=20).contains(&line.qty), "qty 1-20");
        assert_eq!(line.line_total, line.unit_price * u64::from(line.qty));
        total += line.line_total;
    }
    assert_eq!(draft.total, total);
    if let Some(customer) = &draft.customer {
        assert!((1..=64).contains(&customer.chars().count()), "customer 1-64 chars");
    }
});
