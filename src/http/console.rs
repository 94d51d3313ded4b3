//! The admin console at `/admin`: the static files of `console/`, compiled
//! into the binary, served under a strict Content-Security-Policy. The
//! console is a page of the public API's: it signs in with an admin key
//! (kept in the tab's sessionStorage) and does everything through `/v1`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

/// Scripts, styles and connections from this origin only; no inline script
/// or style, no frames, no forms posted elsewhere, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// A file of the console: its name under /admin/, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../console/index.html"),
};

const ASSETS: [Asset; 4] = [
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/console.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/vendor/uPlot.min.css"),
    },
];

/// Registers `/admin` (the page) and `/admin/{file}` (its scripts and
/// styles).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/admin", "GET").route(web::get().to(|| async { serve(&INDEX) })))
        .service(
            super::resource("/admin/", "GET").route(web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header((header::LOCATION, "/admin"))
                    .finish()
            })),
        )
        .service(super::resource("/admin/{file}", "GET").route(web::get().to(
            |file: web::Path<String>| async move {
                match ASSETS.iter().find(|a| a.name == file.as_str()) {
                    Some(asset) => serve(asset),
                    None => not_found(),
                }
            },
        )));
}

fn serve(asset: &Asset) -> HttpResponse {
    let mut res = HttpResponse::Ok()
        .content_type(asset.content_type)
        // Small files; a new build must show at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(asset.body);
    secure(res.headers_mut());
    res
}

fn not_found() -> HttpResponse {
    let mut res = super::error::problem(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        "the console has no such file",
        None,
    );
    secure(res.headers_mut());
    res
}

fn secure(headers: &mut header::HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}
