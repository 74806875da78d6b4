//! The admin console's page frame and responses: the HTML layout (navigation, the
//! signed-in admin), the two static files (stylesheet, the small progress script),
//! the security headers every admin response carries (strict CSP, no framing, no
//! caching) and JSON answers. Every value put into HTML goes through [`esc`].
//! Renders; decides nothing.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::error::html_escape;

/// Where the console lives.
pub const BASE: &str = "/_usher/admin";

/// Content-Security-Policy of every admin response: nothing from elsewhere, no
/// inline script or style, no framing, forms only to this site.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
                       object-src 'none'";

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    html_escape(s)
}

/// Percent-encodes a query or path value.
pub fn url_enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The navigation entries: (path under [`BASE`], label).
const NAV: &[(&str, &str)] = &[
    ("/", "Status"),
    ("/plan", "Plan preview"),
    ("/audit", "Audit log"),
    ("/person", "Person lookup"),
];

/// A whole page: `title`, which nav entry is current, the admin's e-mail, the body
/// HTML (already escaped by the caller), and an optional auto-refresh in seconds
/// (live progress without JavaScript).
pub fn layout(title: &str, current: &str, admin: &str, body: &str, refresh: Option<u32>) -> String {
    let mut nav = String::new();
    for (path, label) in NAV {
        let cls = if *path == current {
            " class=\"current\""
        } else {
            ""
        };
        nav.push_str(&format!("<a href=\"{BASE}{path}\"{cls}>{label}</a>"));
    }
    let refresh = refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{t} · usher admin</title>\
         <link rel=\"stylesheet\" href=\"{BASE}/static/admin.css\"></head><body>\
         <header><span class=\"brand\">usher admin</span><nav>{nav}</nav>\
         <span class=\"who\">{who} · <a href=\"/_usher/logout\">Sign out</a></span></header><main><h1>{t}</h1>{body}</main>\
         <script src=\"{BASE}/static/admin.js\"></script></body></html>\n",
        t = esc(title),
        who = esc(admin),
    )
}

/// Adds the headers every admin response carries.
pub fn secure(resp: &mut Response<Bytes>) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// An HTML response.
pub fn html(status: StatusCode, body: String) -> Response<Bytes> {
    let mut resp = crate::error::html_response(status, body);
    secure(&mut resp);
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    secure(&mut resp);
    resp
}

/// A JSON error in the shape of `error::page` (`error`, `status`, `message`), plus
/// extra fields (e.g. the running sync's id on 409).
pub fn json_error(
    status: StatusCode,
    message: &str,
    extra: &[(&str, serde_json::Value)],
) -> Response<Bytes> {
    let mut v = serde_json::json!({
        "error": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "message": message,
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in extra {
            obj.insert((*k).to_string(), val.clone());
        }
    }
    json(status, &v)
}

/// A 303 to another console page (after a form POST).
pub fn see_other(location: &str) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    secure(&mut resp);
    resp
}

/// One of the two static files, by name.
pub fn asset(name: &str) -> Option<Response<Bytes>> {
    let (body, ctype) = match name {
        "admin.css" => (CSS, "text/css; charset=utf-8"),
        "admin.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut resp = Response::new(Bytes::from_static(body.as_bytes()));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    secure(&mut resp);
    Some(resp)
}

/// A POST form with the CSRF token and hidden fields, as one button.
pub fn post_button(
    action: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    label: &str,
    cls: &str,
) -> String {
    let mut hidden = format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        super::csrf::FIELD,
        esc(csrf)
    );
    for (k, v) in fields {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        ));
    }
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{hidden}<button class=\"{}\">{}</button></form>",
        esc(action),
        esc(cls),
        esc(label)
    )
}

const CSS: &str = r#"body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;gap:1.5em;align-items:center;background:#1d2330;color:#fff;padding:.6em 1.5em}
header a{color:#cfd6e4;text-decoration:none;margin-right:1em}header a.current{color:#fff;font-weight:600}
.brand{font-weight:700}.who{margin-left:auto;color:#cfd6e4}
main{max-width:72em;margin:1.5em auto;padding:0 1.5em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{background:#eef0f4;font-weight:600}
.ok{color:#17663a}.bad{color:#a4161a;font-weight:600}.muted{color:#6b7280}
.panel{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:.8em 1em;margin:.8em 0}
.brake{border-color:#a4161a;background:#fff4f4}
form.inline{display:inline-block;margin:0 .5em .3em 0}
button{font:inherit;padding:.35em .9em;border-radius:4px;border:1px solid #3b5bdb;background:#3b5bdb;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#3b5bdb}button.danger{background:#a4161a;border-color:#a4161a}
form.filters input,form.filters select{font:inherit;padding:.25em;margin-right:.6em}
code{background:#eef0f4;padding:0 .25em;border-radius:3px}
"#;

/// Live progress: on a page with `data-sync-id` (a running sync), poll its JSON
/// status each second, show the phase and counts, reload when it is done.
const JS: &str = r#"(function(){
var el=document.querySelector('[data-sync-id]');if(!el)return;
var id=el.getAttribute('data-sync-id');
function tick(){fetch('/_usher/admin/sync/'+encodeURIComponent(id),{headers:{'Accept':'application/json'},credentials:'same-origin'})
.then(function(r){return r.json();}).then(function(s){
if(s.state==='running'){var p=s.progress||{};el.textContent=(p.phase||'starting')+': '+(p.done||0)+' of '+(p.total||0)+' changes written';setTimeout(tick,1000);}
else{location.reload();}}).catch(function(){setTimeout(tick,2000);});}
setTimeout(tick,1000);})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_escapes_title_and_admin() {
        let page = layout(
            "<script>x</script>",
            "/",
            "a\"<b>@x",
            "<p>body</p>",
            Some(2),
        );
        assert!(!page.contains("<script>x</script>"), "{page}");
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(page.contains("a&quot;&lt;b&gt;@x"));
        assert!(page.contains("<p>body</p>"), "body is the caller's HTML");
        assert!(page.contains("http-equiv=\"refresh\" content=\"2\""));
        assert!(page.contains("class=\"current\">Status<"));
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        for r in [
            html(StatusCode::OK, String::new()),
            json(StatusCode::OK, &serde_json::json!({})),
            see_other("/_usher/admin/"),
            asset("admin.js").unwrap(),
        ] {
            let h = r.headers();
            assert_eq!(h["content-security-policy"], CSP);
            assert!(CSP.starts_with("default-src 'self'"));
            assert!(!CSP.contains("unsafe-inline"));
            assert_eq!(h["x-frame-options"], "DENY");
            assert_eq!(h["cache-control"], "no-store");
        }
        assert!(asset("../secret").is_none());
    }

    #[test]
    fn post_buttons_carry_the_token_escaped() {
        let f = post_button(
            "/_usher/admin/sync",
            "t\"k",
            &[("dry_run", "1")],
            "Go <now>",
            "",
        );
        assert!(f.contains("name=\"csrf\" value=\"t&quot;k\""), "{f}");
        assert!(f.contains("name=\"dry_run\" value=\"1\""));
        assert!(f.contains(">Go &lt;now&gt;</button>"));
        let e = json_error(StatusCode::CONFLICT, "busy", &[("running", "s1".into())]);
        let v: serde_json::Value = serde_json::from_slice(e.body()).unwrap();
        assert_eq!(v["status"], 409);
        assert_eq!(v["running"], "s1");
    }
}
