//! The three screens, plain HTML/CSS/JS compiled into the binary (no build
//! step, no CDN): `/` for customers, `/barista` for the baristas, `/dashboard`
//! for the owner. They use only the public API: `fetch` and `EventSource`.

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::Filter;

const CUSTOMER: &str = include_str!("static/customer.html");
const BARISTA: &str = include_str!("static/barista.html");
const DASHBOARD: &str = include_str!("static/dashboard.html");
const CSS: &str = include_str!("static/crema.css");
const JS: &str = include_str!("static/crema.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub fn routes() -> BoxedFilter<(Response,)> {
    let html = "text/html; charset=utf-8";
    let customer = warp::path::end().and(warp::get()).map(move || asset(CUSTOMER, html));
    let barista = warp::path!("barista").and(warp::get()).map(move || asset(BARISTA, html));
    let dashboard = warp::path!("dashboard").and(warp::get()).map(move || asset(DASHBOARD, html));
    let css = warp::path!("static" / "crema.css").and(warp::get()).map(|| asset(CSS, "text/css; charset=utf-8"));
    let js = warp::path!("static" / "crema.js")
        .and(warp::get())
        .map(|| asset(JS, "text/javascript; charset=utf-8"));
    customer.or(barista).unify().or(dashboard).unify().or(css).unify().or(js).unify().boxed()
}
