//! The dashboard page: static files from `auth-api/ui/`, embedded in the binary at build time
//! (no Node toolchain to build or run), served under `/ui/` (`/` and `/ui` redirect there).
//!
//! Every response carries a strict Content-Security-Policy (`default-src 'self'`, no inline
//! script or style, no framing): the page loads only these files and talks only to this API.
//! The page keeps its token in `sessionStorage`, never in a URL or a cookie.
//!
//! Caching: every file carries an `ETag` (a hash of its bytes) with `Cache-Control: no-cache`,
//! so a browser revalidates each time and gets a bodiless `304` while the binary is the same
//! (an upgraded binary serves new files at once, no stale script).

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The Content-Security-Policy of the page.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// One embedded file: its path under `/ui/`, its content type and its bytes.
pub struct Asset {
    /// Path relative to `auth-api/ui/` (and to `/ui/`).
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../ui/", $path)),
        }
    };
}

/// Every file of `auth-api/ui/` (a test keeps this list equal to the directory).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
    asset!("vendor/uplot/VERSION", "text/plain; charset=utf-8"),
];

impl Asset {
    /// The entity tag of the file: a 64-bit FNV-1a hash of its bytes, quoted.
    pub fn etag(&self) -> String {
        let hash = self.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("\"{hash:016x}\"")
    }

    /// Whether an `If-None-Match` header value names this file's current tag.
    pub fn matches(&self, if_none_match: &str) -> bool {
        let etag = self.etag();
        if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
    }
}

/// The asset at `path` (`""` is `index.html`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

fn with_security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

fn redirect_to_ui() -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert("location", HeaderValue::from_static("/ui/"));
    r
}

/// `GET /`, `GET /ui` (redirects) and `GET /ui/<file>` (`304` when `If-None-Match` names its
/// tag); anything else is not found.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(
            |path: warp::path::FullPath, if_none_match: Option<String>| async move {
                match path.as_str() {
                    "/" | "/ui" => Ok(redirect_to_ui()),
                    other => match other.strip_prefix("/ui/").and_then(asset) {
                        Some(a) => Ok(with_security_headers(serve(a, if_none_match.as_deref()))),
                        None => Err(warp::reject::not_found()),
                    },
                }
            },
        )
}

/// The file, or `304` without a body when the browser holds this version.
fn serve(a: &Asset, if_none_match: Option<&str>) -> Response {
    let mut r = if if_none_match.is_some_and(|v| a.matches(v)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(a.body.into());
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(a.content_type));
        r
    };
    if let Ok(etag) = HeaderValue::from_str(&a.etag()) {
        r.headers_mut().insert("etag", etag);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_ui_directory_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
                    on_disk.push(rel);
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn a_file_is_revalidated_by_its_tag() {
        let js = asset("app.js").unwrap();
        let html = asset("").unwrap();
        assert_ne!(js.etag(), html.etag());
        assert_eq!(js.etag(), js.etag());
        assert!(js.matches(&js.etag()));
        assert!(js.matches(&format!("W/{}", js.etag())));
        assert!(js.matches(&format!("{}, {}", html.etag(), js.etag())));
        assert!(js.matches("*"));
        assert!(!js.matches(&html.etag()));
        assert!(!js.matches("\"0\""));
        let fresh = serve(js, None);
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(fresh.headers()["etag"].to_str().unwrap(), js.etag());
        let cached = serve(js, Some(&js.etag()));
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()["etag"].to_str().unwrap(), js.etag());
        let stale = serve(js, Some(&html.etag()));
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(asset("").unwrap().body).unwrap();
        assert!(!html.contains("<style"), "inline <style>");
        assert!(!html.contains(" style="), "inline style attribute");
        let handler = html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_lowercase()).len();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(!handler, "an inline event handler (` on...=`)");
        for script in html.split("<script").skip(1) {
            let tag = &script[..script.find('>').unwrap()];
            assert!(
                tag.contains("src=\"/ui/"),
                "a script without a src: <script{tag}>"
            );
        }
        assert!(CSP.starts_with("default-src 'self';"));
        assert!(!CSP.contains("unsafe"));
    }
}
