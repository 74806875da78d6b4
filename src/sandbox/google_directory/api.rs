//! The emulator's Directory API routes: authorisation (token, scope per method
//! from the discovery document, admin subject), parameter checks (unknown
//! parameters and out-of-range `maxResults` are 400s), paging, the resource
//! bodies and Google's error envelope.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::query::{Mask, UserQuery};
use super::resources::{
    derived_users, envelope, group_json, member_json, reachable_groups, user_json, who_matches,
};
use super::{Data, GoogleDirectoryEmulator, GoogleFault, Who};
use crate::sandbox::http::{json, query_pairs};

const SCOPE: &str = "https://www.googleapis.com/auth/";
const GLOBAL_PARAMS: [&str; 9] = [
    "fields",
    "prettyPrint",
    "quotaUser",
    "alt",
    "key",
    "access_token",
    "oauth_token",
    "$.xgafv",
    "upload_protocol",
];

/// Google's error envelope.
pub(super) fn google_error(
    status: StatusCode,
    reason: &str,
    domain: &str,
    message: &str,
) -> Response<Bytes> {
    let mut err = json!({
        "code": status.as_u16(),
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
    });
    if status == StatusCode::TOO_MANY_REQUESTS {
        err["status"] = json!("RESOURCE_EXHAUSTED");
    }
    let mut resp = json(status, &json!({ "error": err }));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
    }
    resp
}

pub(super) fn fault_response(f: GoogleFault) -> Response<Bytes> {
    match f {
        GoogleFault::TooManyRequests => google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rateLimitExceeded",
            "usageLimits",
            "Resource has been exhausted (e.g. check quota).",
        ),
        GoogleFault::BackendError => google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "backendError",
            "global",
            "Service unavailable. Please try again",
        ),
        GoogleFault::RateLimitExceeded => google_error(
            StatusCode::FORBIDDEN,
            "rateLimitExceeded",
            "usageLimits",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'",
        ),
        GoogleFault::UserRateLimitExceeded => google_error(
            StatusCode::FORBIDDEN,
            "userRateLimitExceeded",
            "usageLimits",
            "User Rate Limit Exceeded",
        ),
        GoogleFault::Forbidden => google_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "global",
            "Not Authorized to access this resource/api",
        ),
        GoogleFault::InvalidCredentials => google_error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "global",
            "Invalid Credentials",
        ),
        GoogleFault::Garbage => {
            let mut r = Response::new(Bytes::from_static(b"<html>}{ not json"));
            *r.status_mut() = StatusCode::OK;
            r
        }
        GoogleFault::WrongShape => json(
            StatusCode::OK,
            &json!({"kind": "admin#directory#users", "users": "nope", "groups": 7, "members": {}}),
        ),
    }
}

/// An error answer in the making.
struct ApiErr(StatusCode, &'static str, String);

impl ApiErr {
    fn invalid(msg: impl Into<String>) -> Self {
        ApiErr(StatusCode::BAD_REQUEST, "invalid", msg.into())
    }
    fn not_found(what: &str) -> Self {
        ApiErr(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("Resource Not Found: {what}"),
        )
    }
}

enum Route {
    UsersList,
    UsersGet(String),
    GroupsList,
    GroupsGet(String),
    MembersList(String),
    MembersGet(String, String),
    HasMember(String, String),
}

impl Route {
    /// Query parameters the discovery document defines for the method.
    fn params(&self) -> &'static [&'static str] {
        match self {
            Route::UsersList => &[
                "customFieldMask",
                "customer",
                "domain",
                "event",
                "maxResults",
                "orderBy",
                "pageToken",
                "projection",
                "query",
                "showDeleted",
                "sortOrder",
                "viewType",
            ],
            Route::UsersGet(_) => &["customFieldMask", "projection", "viewType"],
            Route::GroupsList => &[
                "customer",
                "domain",
                "maxResults",
                "orderBy",
                "pageToken",
                "query",
                "sortOrder",
                "userKey",
            ],
            Route::GroupsGet(_) | Route::MembersGet(..) | Route::HasMember(..) => &[],
            Route::MembersList(_) => &[
                "includeDerivedMembership",
                "maxResults",
                "pageToken",
                "roles",
            ],
        }
    }

    /// Scopes the discovery document accepts for the method (suffixes of `SCOPE`).
    fn scopes(&self) -> &'static [&'static str] {
        match self {
            Route::UsersList => &[
                "admin.directory.user",
                "admin.directory.user.readonly",
                "cloud-platform",
            ],
            Route::UsersGet(_) => &["admin.directory.user", "admin.directory.user.readonly"],
            Route::GroupsList | Route::GroupsGet(_) => {
                &["admin.directory.group", "admin.directory.group.readonly"]
            }
            Route::MembersList(_) | Route::MembersGet(..) | Route::HasMember(..) => &[
                "admin.directory.group",
                "admin.directory.group.member",
                "admin.directory.group.member.readonly",
                "admin.directory.group.readonly",
            ],
        }
    }
}

fn page_token(kind: &str, offset: usize, fp: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}|{offset}|{fp:x}"))
}

fn parse_page_token(token: Option<&str>, kind: &str, fp: u64) -> Result<usize, ApiErr> {
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let text = URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let mut it = text.split('|');
    match (it.next(), it.next().and_then(|o| o.parse().ok()), it.next()) {
        (Some(k), Some(off), Some(f)) if k == kind && f == format!("{fp:x}") => Ok(off),
        _ => Err(ApiErr::invalid("Invalid Input: pageToken")),
    }
}

fn fingerprint(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

fn max_results(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiErr> {
    match q.get("maxResults") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiErr::invalid(format!(
                "Invalid Input: maxResults must be 1..{max}"
            ))),
        },
    }
}

impl GoogleDirectoryEmulator {
    pub(super) fn api(&self, req: &Request<Bytes>, rest: &str) -> Response<Bytes> {
        let segs: Vec<String> = rest
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let route = match (req.method(), segs.as_slice()) {
            (&Method::GET, ["users"]) => Route::UsersList,
            (&Method::GET, ["users", k]) => Route::UsersGet(k.to_string()),
            (&Method::GET, ["groups"]) => Route::GroupsList,
            (&Method::GET, ["groups", g]) => Route::GroupsGet(g.to_string()),
            (&Method::GET, ["groups", g, "members"]) => Route::MembersList(g.to_string()),
            (&Method::GET, ["groups", g, "members", m]) => {
                Route::MembersGet(g.to_string(), m.to_string())
            }
            (&Method::GET, ["groups", g, "hasMember", m]) => {
                Route::HasMember(g.to_string(), m.to_string())
            }
            _ => {
                self.counts.rejected.inc();
                return google_error(StatusCode::NOT_FOUND, "notFound", "global", "Not Found");
            }
        };
        let c = &self.counts;
        match &route {
            Route::UsersList => c.users_list.inc(),
            Route::UsersGet(_) => c.users_get.inc(),
            Route::GroupsList => c.groups_list.inc(),
            Route::GroupsGet(_) => c.groups_get.inc(),
            Route::MembersList(_) => c.members_list.inc(),
            Route::MembersGet(..) => c.members_get.inc(),
            Route::HasMember(..) => c.has_member.inc(),
        }
        if let Some(resp) = self.injected() {
            return resp;
        }
        match self.serve_route(req, &route) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(ApiErr(status, reason, message)) => {
                self.counts.rejected.inc();
                google_error(status, reason, "global", &message)
            }
        }
    }

    fn authorise(&self, req: &Request<Bytes>, route: &Route, data: &Data) -> Result<(), ApiErr> {
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let grant = self.access.lock().ok().and_then(|a| a.get(token).cloned());
        let unauth = || {
            ApiErr(
                StatusCode::UNAUTHORIZED,
                "authError",
                "Invalid Credentials".into(),
            )
        };
        let grant = grant.ok_or_else(unauth)?;
        if grant.expires_at <= self.clock.now_unix() {
            return Err(unauth());
        }
        let ok_scope = route.scopes().iter().any(|s| {
            grant
                .scopes
                .iter()
                .any(|g| g.strip_prefix(SCOPE) == Some(s))
        });
        if !ok_scope {
            return Err(ApiErr(
                StatusCode::FORBIDDEN,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.".into(),
            ));
        }
        let admin = grant
            .subject
            .as_deref()
            .and_then(|s| data.user(s))
            .map(|u| data.users[u as usize].is_admin)
            .unwrap_or(false);
        if !admin {
            return Err(ApiErr(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Not Authorized to access this resource/api".into(),
            ));
        }
        Ok(())
    }

    fn serve_route(&self, req: &Request<Bytes>, route: &Route) -> Result<Value, ApiErr> {
        let data = self.read();
        self.authorise(req, route, &data)?;
        let mut q: HashMap<String, String> = HashMap::new();
        for (k, v) in query_pairs(req) {
            if !route.params().contains(&k.as_str()) && !GLOBAL_PARAMS.contains(&k.as_str()) {
                return Err(ApiErr::invalid(format!("Invalid parameter: {k}")));
            }
            q.insert(k, v);
        }
        let mask = Mask::parse(q.get("fields").map(String::as_str).unwrap_or(""))
            .map_err(|e| ApiErr::invalid(format!("Invalid field selection: {e}")))?;
        let truncate = self.faults.truncate_pages();
        let body = match route {
            Route::UsersList => users_list(&data, &q, truncate)?,
            Route::UsersGet(key) => {
                check_projection(&q)?;
                let u = data.user(key).ok_or_else(|| ApiErr::not_found("userKey"))?;
                user_json(&data, u)
            }
            Route::GroupsList => groups_list(&data, &q, truncate)?,
            Route::GroupsGet(key) => {
                let g = data
                    .group(key)
                    .ok_or_else(|| ApiErr::not_found("groupKey"))?;
                group_json(&data, g)
            }
            Route::MembersList(key) => members_list(&data, key, &q, truncate)?,
            Route::MembersGet(g, m) => {
                let gi = data.group(g).ok_or_else(|| ApiErr::not_found("groupKey"))?;
                let row = data.groups[gi as usize]
                    .rows
                    .iter()
                    .find(|r| who_matches(&data, r.who, m))
                    .ok_or_else(|| ApiErr::not_found("memberKey"))?;
                member_json(&data, row.who, row.role.as_str())
            }
            Route::HasMember(g, m) => {
                let gi = data.group(g).ok_or_else(|| ApiErr::not_found("groupKey"))?;
                if data.user(m).is_none() && data.group(m).is_none() {
                    return Err(ApiErr::not_found("memberKey"));
                }
                let is = derived_users(&data, gi)
                    .iter()
                    .any(|&u| who_matches(&data, Who::User(u), m))
                    || reachable_groups(&data, gi)
                        .iter()
                        .any(|&c| who_matches(&data, Who::Group(c), m));
                json!({ "isMember": is })
            }
        };
        Ok(mask.apply(body))
    }
}

fn check_projection(q: &HashMap<String, String>) -> Result<(), ApiErr> {
    match q.get("projection").map(String::as_str) {
        None | Some("basic") | Some("full") => {}
        Some("custom") if q.contains_key("customFieldMask") => {}
        Some(p) => return Err(ApiErr::invalid(format!("Invalid Input: projection {p}"))),
    }
    match q.get("viewType").map(String::as_str) {
        None | Some("admin_view") | Some("domain_public") => Ok(()),
        Some(v) => Err(ApiErr::invalid(format!("Invalid Input: viewType {v}"))),
    }
}

/// `customer=` / `domain=` must name this directory.
fn check_scope(data: &Data, q: &HashMap<String, String>) -> Result<(), ApiErr> {
    match (q.get("customer"), q.get("domain")) {
        (None, None) => Err(ApiErr(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Bad Request".into(),
        )),
        (Some(c), _) if c != "my_customer" && *c != data.customer_id => {
            Err(ApiErr::invalid("Invalid Input: customer"))
        }
        (_, Some(d)) if !d.eq_ignore_ascii_case(&data.domain) => Err(ApiErr(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Domain not found.".into(),
        )),
        _ => Ok(()),
    }
}

/// Scans `candidates` from `start`, returning up to `size` matches and the index
/// of the next match (for `nextPageToken`), if any.
fn page<T>(
    len: usize,
    start: usize,
    size: usize,
    mut pick: impl FnMut(usize) -> Option<T>,
) -> (Vec<T>, Option<usize>) {
    let mut out = Vec::with_capacity(size.min(len));
    let mut i = start;
    while i < len && out.len() < size {
        if let Some(v) = pick(i) {
            out.push(v);
        }
        i += 1;
    }
    // Peek: is there any further match?
    let mut j = i;
    while j < len {
        if pick(j).is_some() {
            return (out, Some(j));
        }
        j += 1;
    }
    (out, None)
}

fn users_list(data: &Data, q: &HashMap<String, String>, truncate: bool) -> Result<Value, ApiErr> {
    check_scope(data, q)?;
    check_projection(q)?;
    for (k, ok) in [
        ("orderBy", &["email", "familyName", "givenName"][..]),
        ("sortOrder", &["ASCENDING", "DESCENDING"][..]),
    ] {
        if let Some(v) = q.get(k) {
            if !ok.contains(&v.as_str()) {
                return Err(ApiErr::invalid(format!("Invalid Input: {k}")));
            }
        }
    }
    // orderBy/sortOrder are validated but the sandbox always lists in seed order.
    let size = max_results(q, 100, 500)?;
    let query_text = q.get("query").map(String::as_str).unwrap_or("");
    let query =
        UserQuery::parse(query_text).map_err(|e| ApiErr::invalid(format!("Invalid Input: {e}")))?;
    let domain_only = q
        .get("domain")
        .map(|d| format!("@{}", d.to_ascii_lowercase()));
    let fp = fingerprint(&[
        "users",
        query_text,
        q.get("domain").map(String::as_str).unwrap_or(""),
    ]);
    let start = parse_page_token(q.get("pageToken").map(String::as_str), "users", fp)?;
    let size = if truncate { size.div_ceil(2) } else { size };
    let (items, next) = page(data.users.len(), start, size, |i| {
        let u = &data.users[i];
        let in_domain = domain_only
            .as_ref()
            .is_none_or(|d| u.primary_email.to_ascii_lowercase().ends_with(d.as_str()));
        (in_domain && query.matches(u)).then(|| user_json(data, i as u32))
    });
    let next = if truncate {
        None
    } else {
        next.map(|n| page_token("users", n, fp))
    };
    Ok(envelope("admin#directory#users", "users", items, next))
}

fn groups_list(data: &Data, q: &HashMap<String, String>, truncate: bool) -> Result<Value, ApiErr> {
    let size = max_results(q, 200, 200)?;
    let user_key = q.get("userKey");
    let candidates: Vec<u32> = match user_key {
        Some(_) if q.contains_key("customer") => {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                "badRequest",
                "Bad Request".into(),
            ))
        }
        Some(k) => {
            if let Some(d) = q.get("domain") {
                if !d.eq_ignore_ascii_case(&data.domain) {
                    return Err(ApiErr(
                        StatusCode::BAD_REQUEST,
                        "badRequest",
                        "Domain not found.".into(),
                    ));
                }
            }
            match (data.user(k), data.group(k)) {
                (Some(u), _) => data.user_groups[u as usize].clone(),
                (None, Some(g)) => data.group_parents[g as usize].clone(),
                _ => return Err(ApiErr::not_found("userKey")),
            }
        }
        None => {
            check_scope(data, q)?;
            (0..data.groups.len() as u32).collect()
        }
    };
    // The documented alternative to userKey: query=memberKey=<email>.
    let query = q.get("query").map(String::as_str).unwrap_or("").trim();
    let member_filter: Option<BTreeSet<u32>> = if query.is_empty() {
        None
    } else if let Some(k) = query.strip_prefix("memberKey=") {
        let k = k.trim_matches(['\'', '"']);
        let set = match (data.user(k), data.group(k)) {
            (Some(u), _) => data.user_groups[u as usize].iter().copied().collect(),
            (None, Some(g)) => data.group_parents[g as usize].iter().copied().collect(),
            _ => BTreeSet::new(),
        };
        Some(set)
    } else {
        return Err(ApiErr::invalid(
            "Invalid Input: query (the sandbox supports memberKey= only)",
        ));
    };
    let fp = fingerprint(&["groups", user_key.map(String::as_str).unwrap_or(""), query]);
    let start = parse_page_token(q.get("pageToken").map(String::as_str), "groups", fp)?;
    let size = if truncate { size.div_ceil(2) } else { size };
    let (items, next) = page(candidates.len(), start, size, |i| {
        let g = candidates[i];
        member_filter
            .as_ref()
            .is_none_or(|f| f.contains(&g))
            .then(|| group_json(data, g))
    });
    let next = if truncate {
        None
    } else {
        next.map(|n| page_token("groups", n, fp))
    };
    Ok(envelope("admin#directory#groups", "groups", items, next))
}

fn members_list(
    data: &Data,
    key: &str,
    q: &HashMap<String, String>,
    truncate: bool,
) -> Result<Value, ApiErr> {
    let gi = data
        .group(key)
        .ok_or_else(|| ApiErr::not_found("groupKey"))?;
    let size = max_results(q, 200, 200)?;
    let roles: Option<Vec<String>> = q.get("roles").map(|r| {
        r.split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .collect()
    });
    let derived = match q.get("includeDerivedMembership").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiErr::invalid("Invalid Input: includeDerivedMembership")),
    };
    let group = &data.groups[gi as usize];
    let mut rows: Vec<(Who, &'static str)> = group
        .rows
        .iter()
        .map(|r| (r.who, r.role.as_str()))
        .collect();
    if derived {
        let direct: BTreeSet<u32> = rows
            .iter()
            .filter_map(|(w, _)| if let Who::User(u) = w { Some(*u) } else { None })
            .collect();
        rows.extend(
            derived_users(data, gi)
                .into_iter()
                .filter(|u| !direct.contains(u))
                .map(|u| (Who::User(u), "MEMBER")),
        );
    }
    let fp = fingerprint(&[
        "members",
        &group.id,
        q.get("roles").map(String::as_str).unwrap_or(""),
        if derived { "d" } else { "" },
    ]);
    let start = parse_page_token(q.get("pageToken").map(String::as_str), "members", fp)?;
    let size = if truncate { size.div_ceil(2) } else { size };
    let (items, next) = page(rows.len(), start, size, |i| {
        let (who, role) = rows[i];
        roles
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x == role))
            .then(|| member_json(data, who, role))
    });
    let next = if truncate {
        None
    } else {
        next.map(|n| page_token("members", n, fp))
    };
    Ok(envelope("admin#directory#members", "members", items, next))
}
