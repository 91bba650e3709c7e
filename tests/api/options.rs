//! API.md contract v2, "Menu with options" and "Order lines with options":
//! modifier groups, notes, server-side pricing, sold-out choices.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

fn latte(options: Value, note: Option<&str>) -> Value {
    let mut line = json!({"menu_id": "latte", "qty": 2, "options": options});
    if let Some(note) = note {
        line["note"] = json!(note);
    }
    json!({"customer": "kim", "items": [line]})
}

fn item<'a>(menu: &'a Value, id: &str) -> &'a Value {
    menu["items"].as_array().unwrap().iter().find(|item| item["id"] == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_menu_shows_option_groups_and_an_order_is_priced_and_echoed_with_them() {
    let app = spawn_app_with(|settings| manual_stations(settings, 1)).await;
    let menu = app.json("/menu").await;
    let latte_item = item(&menu, "latte");
    assert_eq!(latte_item["station"], "bar");
    assert_eq!(latte_item["available"], true);
    let size = &latte_item["options"][0];
    assert_eq!((size["id"].as_str(), size["min"].as_u64(), size["max"].as_u64()), (Some("size"), Some(1), Some(1)));
    assert_eq!(size["default"], "tall");
    assert_eq!(size["choices"][1], json!({"id": "grande", "name": "Grande", "price": 500, "brew_ms": 500, "available": true}));

    let body = latte(json!({"size": "grande", "milk": "oat", "extras": ["vanilla", "extra_shot"]}), Some("extra hot"));
    let placed = app.post_json("/orders", &body).await;
    assert_eq!(placed.status(), 201);
    let order: Value = placed.json().await.unwrap();
    let line = &order["items"][0];
    let unit = 5000 + 500 + 600 + 500 + 500;
    assert_eq!(line["unit_price"], unit);
    assert_eq!(line["line_total"], 2 * unit);
    assert_eq!(order["total"], 2 * unit);
    assert_eq!(order["payment"]["amount"], 2 * unit, "the charge is the server's price");
    assert_eq!(line["note"], "extra hot");
    assert_eq!(
        line["options"],
        json!([
            {"group": "size", "choice": "grande", "name": "Grande", "price": 500},
            {"group": "temperature", "choice": "hot", "name": "Hot", "price": 0},
            {"group": "milk", "choice": "oat", "name": "Oat milk", "price": 600},
            {"group": "extras", "choice": "extra_shot", "name": "Extra shot", "price": 500},
            {"group": "extras", "choice": "vanilla", "name": "Vanilla syrup", "price": 500},
        ]),
        "resolved, defaults included, in the menu's order"
    );
    // The barista's ticket carries the options and the note.
    let queue = app.json("/queue").await;
    assert_eq!(queue["tickets"][0]["items"][0]["options"], line["options"]);
    assert_eq!(queue["tickets"][0]["items"][0]["note"], "extra hot");
    // A v1 line still works, with the defaults and the v1 price.
    let v1 = app.place_ok(&[("latte", 1)]).await;
    assert_eq!(v1["items"][0]["unit_price"], 5000);
    assert_eq!(v1["items"][0]["note"], Value::Null);
    // GET and a restart answer the same lines.
    let id = order["id"].as_str().unwrap().to_owned();
    let app = app.restart_with(|settings| manual_stations(settings, 1)).await;
    assert_eq!(app.order(&id).await["items"], order["items"]);
    assert_eq!(app.post("/stations/bar-1/next").await.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_and_notes_are_400_naming_the_line_group_and_choice() {
    let app = spawn_app().await;
    let cases = [
        (latte(json!({"size": "huge"}), None), "items[0].options.size", "huge"),
        (latte(json!({"syrup": "vanilla"}), None), "items[0].options.syrup", "syrup"),
        (latte(json!({"extras": ["vanilla", "vanilla"]}), None), "items[0].options.extras", "twice"),
        (latte(json!({"extras": ["vanilla", "caramel", "extra_shot", "decaf"]}), None), "items[0].options.extras", "0-3"),
        (latte(json!({"size": ["tall", "grande"]}), None), "items[0].options.size", "choose 1"),
        (latte(json!({"size": []}), None), "items[0].options.size", "got 0"),
        (latte(json!({"size": 3}), None), "body", ""),
        (latte(json!({}), Some(&"x".repeat(141))), "items[0].note", "140"),
    ];
    for (body, field, word) in cases {
        let refused = app.post_json("/orders", &body).await;
        assert_eq!(refused.status(), 400, "{body}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_order");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(field) && detail.contains(word), "{body}: {detail}");
    }
    let unknown_field = json!({"items": [{"menu_id": "latte", "qty": 1, "options": {}, "notes": "typo"}]});
    assert_eq!(app.post_json("/orders", &unknown_field).await.status(), 400);
    assert_eq!(app.stats().await["payment"]["captured"], 0, "nothing was charged");
    app.shutdown().await;
}

/// A sold-out choice (`milk.oat`) is out on every item with the group, shown,
/// refused before any charge (also when it is a default), and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_choice_is_out_on_every_item_refused_before_any_charge_and_kept() {
    let app = spawn_app().await;
    let marked = app.client.put(app.url("/stores/main/sold-out/milk.oat")).send().await.unwrap();
    assert_eq!(marked.status(), 200);
    assert_eq!(marked.json::<Value>().await.unwrap()["sold_out"], json!(["milk.oat"]));
    let menu = app.json("/menu").await;
    for id in ["latte", "cappuccino", "flat_white", "cold_brew"] {
        let milk = item(&menu, id)["options"].as_array().unwrap().iter().find(|group| group["id"] == "milk").unwrap().clone();
        let oat = milk["choices"].as_array().unwrap().iter().find(|choice| choice["id"] == "oat").unwrap().clone();
        assert_eq!(oat["available"], false, "{id}");
        assert_eq!(milk["choices"][1]["available"], true, "{id}: soy is not out");
    }
    assert_eq!(item(&menu, "latte")["available"], true, "the item itself is not out");
    let refused = app.post_json("/orders", &latte(json!({"milk": "oat"}), None)).await;
    assert_eq!(refused.status(), 409);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "item_unavailable");
    assert_eq!(problem["detail"], "items[0].options.milk: Oat milk (milk.oat) is sold out; nothing was charged");
    assert_eq!(app.post_json("/orders", &latte(json!({"milk": "soy"}), None)).await.status(), 201);
    // A sold-out default refuses the lines that would take it.
    assert_eq!(app.client.put(app.url("/stores/main/sold-out/size.tall")).send().await.unwrap().status(), 200);
    assert_eq!(app.place(&[("latte", 1)]).await.status(), 409);
    assert_eq!(app.post_json("/orders", &latte(json!({"size": "venti"}), None)).await.status(), 201);
    assert_eq!(app.place(&[("flat_white", 1)]).await.status(), 201, "no size group, not affected");
    for unknown in ["milk.cream", "syrup.oat", "latte.oat", "mocha"] {
        let response = app.client.put(app.url(&format!("/stores/main/sold-out/{unknown}"))).send().await.unwrap();
        assert_eq!(response.status(), 404, "{unknown}");
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "menu_item_not_found");
    }
    assert_eq!(app.stats().await["payment"]["captured"], 3, "only the accepted orders were charged");
    let app = app.restart_with(|_| {}).await;
    assert_eq!(app.json("/stores/main/sold-out").await["sold_out"], json!(["milk.oat", "size.tall"]), "kept");
    assert_eq!(app.post_json("/orders", &latte(json!({"milk": "oat", "size": "venti"}), None)).await.status(), 409);
    assert_eq!(app.client.delete(app.url("/stores/main/sold-out/milk.oat")).send().await.unwrap().status(), 200);
    let placed = app.post_json("/orders", &latte(json!({"milk": "oat", "size": "venti"}), None)).await;
    assert_eq!(placed.status(), 201);
    let placed: Value = placed.json().await.unwrap();
    app.wait_for(placed["id"].as_str().unwrap(), "ready", WAIT).await;
    app.shutdown().await;
}
