//! The inbound SCIM 2.0 HTTP endpoint at `/_usher/scim/v2/{idp}/`: bearer-token
//! authentication per IdP (constant-time compare), Users and Groups (POST, GET, PUT,
//! PATCH, DELETE, `.search`), discovery (ServiceProviderConfig, ResourceTypes,
//! Schemas), filters, paging, `attributes`/`excludedAttributes`, ETags and
//! `If-Match`/`If-None-Match`, RFC 7644 error bodies, a request body limit. Never
//! behind sign-in and never forwarded upstream. Storage is `store`, meaning is `apply`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use serde_json::{Map, Value};

use super::apply::Pusher;
use super::filter;
use super::patch;
use super::render::{decidable_on_attrs, groups_by_member, project, render, Query};
use super::schema::{self, normalize};
use super::source::{group_ref, person_with_groups};
use super::store::{member_ids, ScimStore, StoredResource};
use super::wire::{self, etag, etag_matches, Kind, ScimError, ScimType, MAX_BODY};
use crate::config::Secret;

/// Where the inbound SCIM endpoints live; `{idp}` follows.
pub const PREFIX: &str = "/_usher/scim/v2/";

/// Whether a (normalised) path belongs to the inbound SCIM server.
pub fn is_scim_path(path: &str) -> bool {
    path == "/_usher/scim" || path.starts_with("/_usher/scim/")
}

/// The inbound SCIM server for every `[[idp]]` with a `scim_token`.
pub struct ScimServer {
    store: Arc<ScimStore>,
    tokens: BTreeMap<String, Secret>,
    public_base: String,
    pusher: Option<Arc<Pusher>>,
}

impl std::fmt::Debug for ScimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimServer")
            .field("idps", &self.tokens.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn respond(status: u16, body: Option<&Value>) -> Response<Bytes> {
    let bytes = body
        .map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default()))
        .unwrap_or_default();
    let mut r = Response::new(bytes);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    if body.is_some() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(wire::CONTENT_TYPE),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(e: &ScimError) -> Response<Bytes> {
    let mut r = respond(e.status, Some(&e.body()));
    if e.status == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"usher-scim\""),
        );
    }
    if e.status == 405 {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    r
}

fn with_etag(mut r: Response<Bytes>, version: u64) -> Response<Bytes> {
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn as_object(body: Value) -> Result<Map<String, Value>, ScimError> {
    match body {
        Value::Object(o) => Ok(o),
        _ => Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "the body must be a JSON object",
        )),
    }
}

impl ScimServer {
    /// A server over `store` for the IdPs in `tokens`; pushes go to `pusher` when set.
    /// `public_url` is `[server] public_url` (resource locations are built from it).
    pub fn new(
        store: Arc<ScimStore>,
        tokens: BTreeMap<String, Secret>,
        public_url: &url::Url,
        pusher: Option<Arc<Pusher>>,
    ) -> ScimServer {
        ScimServer {
            store,
            tokens,
            public_base: public_url.as_str().trim_end_matches('/').to_string(),
            pusher,
        }
    }

    /// The store (for the directory view and tests).
    pub fn store(&self) -> &Arc<ScimStore> {
        &self.store
    }

    /// The pusher, when pushes are applied to targets.
    pub fn pusher(&self) -> Option<&Arc<Pusher>> {
        self.pusher.as_ref()
    }

    /// Answers one request under [`PREFIX`]. `None` when no `[[idp]]` of that name
    /// has a `scim_token` (the caller answers a plain 404: the endpoint is off).
    pub async fn handle<B>(&self, path: &str, req: Request<B>) -> Option<Response<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let rest = path.strip_prefix(PREFIX)?;
        let (idp, sub) = rest.split_once('/').unwrap_or((rest, ""));
        let token = self.tokens.get(idp)?;
        let (parts, body) = req.into_parts();
        if !self.authorized(&parts.headers, token) {
            tracing::warn!(idp, "inbound SCIM request without a valid bearer token");
            return Some(error(&ScimError::new(
                401,
                "a valid bearer token is required (the [[idp]] scim_token)",
            )));
        }
        let body = if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
            match read_body(&parts.headers, body).await {
                Ok(b) => Some(b),
                Err(e) => return Some(error(&e)),
            }
        } else {
            None
        };
        let base = format!("{}{PREFIX}{idp}", self.public_base);
        let ctx = Call {
            idp,
            base: &base,
            method: &parts.method,
            headers: &parts.headers,
            query: parts.uri.query(),
            body,
            now: SystemTime::now(),
        };
        Some(match self.route(sub.trim_end_matches('/'), &ctx) {
            Ok(r) => r,
            Err(e) => {
                if e.status >= 500 {
                    tracing::error!(idp, error = %e, "inbound SCIM request failed");
                }
                error(&e)
            }
        })
    }

    fn authorized(&self, headers: &HeaderMap, token: &Secret) -> bool {
        let Some(value) = header_str(headers, header::AUTHORIZATION) else {
            return false;
        };
        let Some((scheme, given)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
    }

    fn route(&self, sub: &str, c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let segs: Vec<&str> = if sub.is_empty() {
            Vec::new()
        } else {
            sub.split('/').collect()
        };
        let get = *c.method == Method::GET;
        let discovery = |r: Result<Response<Bytes>, ScimError>| {
            if get {
                r
            } else {
                Err(ScimError::new(405, "discovery endpoints answer GET only"))
            }
        };
        match segs.as_slice() {
            ["ServiceProviderConfig"] => discovery(Ok(respond(
                200,
                Some(&wire::service_provider_config(c.base)),
            ))),
            ["ResourceTypes"] => discovery(Ok(respond(
                200,
                Some(&wire::list_response(
                    2,
                    1,
                    vec![
                        wire::resource_type(Kind::User, c.base),
                        wire::resource_type(Kind::Group, c.base),
                    ],
                )),
            ))),
            ["ResourceTypes", name] => discovery(
                [Kind::User, Kind::Group]
                    .into_iter()
                    .find(|k| k.name().eq_ignore_ascii_case(name))
                    .map(|k| respond(200, Some(&wire::resource_type(k, c.base))))
                    .ok_or_else(|| ScimError::not_found(&format!("ResourceType {name}"))),
            ),
            ["Schemas"] => {
                let all = wire::schemas(c.base);
                discovery(Ok(respond(
                    200,
                    Some(&wire::list_response(all.len(), 1, all)),
                )))
            }
            ["Schemas", id] => discovery(
                wire::schemas(c.base)
                    .into_iter()
                    .find(|s| {
                        s.get("id")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case(id))
                    })
                    .map(|s| respond(200, Some(&s)))
                    .ok_or_else(|| ScimError::not_found(&format!("Schema {id}"))),
            ),
            [".search"] if *c.method == Method::POST => self.search(&[Kind::User, Kind::Group], c),
            ["Bulk"] | ["Me"] => Err(ScimError::new(
                501,
                "usher does not implement this endpoint",
            )),
            [ep, rest @ ..] => {
                let kind = [Kind::User, Kind::Group]
                    .into_iter()
                    .find(|k| k.endpoint().eq_ignore_ascii_case(ep))
                    .ok_or_else(|| ScimError::not_found("endpoint"))?;
                match (rest, c.method) {
                    ([], &Method::GET) => self.list(&[kind], Query::from_uri(c.query)?, c),
                    ([], &Method::POST) => self.create(kind, c),
                    ([".search"], &Method::POST) => self.search(&[kind], c),
                    ([id], &Method::GET) => self.get(kind, id, c),
                    ([id], &Method::PUT) => self.replace(kind, id, c),
                    ([id], &Method::PATCH) => self.patch(kind, id, c),
                    ([id], &Method::DELETE) => self.delete(kind, id, c),
                    ([] | [_], _) => Err(ScimError::new(405, "method not allowed here")),
                    _ => Err(ScimError::not_found("endpoint")),
                }
            }
            [] => Err(ScimError::not_found("endpoint")),
        }
    }

    fn list(&self, kinds: &[Kind], q: Query, c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let f = match &q.filter {
            Some(text) => {
                Some(filter::parse(text).map_err(|e| ScimError::bad(ScimType::InvalidFilter, e))?)
            }
            None => None,
        };
        let cheap = f.as_ref().is_none_or(decidable_on_attrs);
        let (total, page) = self
            .store
            .read(c.idp, |data| {
                let member_of = groups_by_member(data);
                let groups_of = |kind: Kind, r: &StoredResource| -> Vec<&StoredResource> {
                    match kind {
                        Kind::User => member_of.get(&r.id).cloned().unwrap_or_default(),
                        Kind::Group => Vec::new(),
                    }
                };
                let mut hits: Vec<(Kind, &StoredResource)> = Vec::new();
                for &kind in kinds {
                    let map = match kind {
                        Kind::User => &data.users,
                        Kind::Group => &data.groups,
                    };
                    let ce = move |urn: Option<&str>, name: &str, sub: Option<&str>| {
                        schema::case_exact(kind, urn, name, sub)
                    };
                    for r in map.values() {
                        let keep = match &f {
                            None => true,
                            // userName / externalId / displayName / members.value filters
                            // (what IdPs send) are decided without rendering anything.
                            Some(f) if cheap => f.matches(&r.attrs, &ce),
                            Some(f) => {
                                f.matches(&render(kind, r, c.base, &groups_of(kind, r)), &ce)
                            }
                        };
                        if keep {
                            hits.push((kind, r));
                        }
                    }
                }
                hits.sort_by(|a, b| (&a.1.created, &a.1.id).cmp(&(&b.1.created, &b.1.id)));
                let page: Vec<Value> = hits
                    .iter()
                    .skip(q.start - 1)
                    .take(q.count)
                    .map(|(kind, r)| {
                        Value::Object(project(render(*kind, r, c.base, &groups_of(*kind, r)), &q))
                    })
                    .collect();
                (hits.len(), page)
            })
            .ok_or_else(|| ScimError::not_found("endpoint"))?;
        Ok(respond(
            200,
            Some(&wire::list_response(total, q.start, page)),
        ))
    }

    fn search(&self, kinds: &[Kind], c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let body = as_object(c.body.clone().unwrap_or(Value::Null))?;
        let q = Query::from_pairs(body.into_iter())?;
        self.list(kinds, q, c)
    }

    fn one(
        &self,
        kind: Kind,
        r: &StoredResource,
        status: u16,
        c: &Call<'_>,
    ) -> Result<Response<Bytes>, ScimError> {
        let q = Query::from_uri(c.query)?;
        let rendered = self
            .store
            .read(c.idp, |data| {
                let groups: Vec<&StoredResource> = match kind {
                    Kind::User => data
                        .groups
                        .values()
                        .filter(|g| member_ids(g).contains(&r.id))
                        .collect(),
                    Kind::Group => Vec::new(),
                };
                render(kind, r, c.base, &groups)
            })
            .ok_or_else(|| ScimError::not_found("endpoint"))?;
        let body = Value::Object(project(rendered, &q));
        let mut resp = with_etag(respond(status, Some(&body)), r.version);
        if status == 201 {
            if let Ok(v) =
                HeaderValue::from_str(&format!("{}/{}/{}", c.base, kind.endpoint(), r.id))
            {
                resp.headers_mut().insert(header::LOCATION, v);
            }
        }
        Ok(resp)
    }

    fn get(&self, kind: Kind, id: &str, c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let r = self
            .store
            .get(c.idp, kind, id)
            .ok_or_else(|| ScimError::not_found(&format!("{} {id}", kind.name())))?;
        if header_str(c.headers, header::IF_NONE_MATCH).is_some_and(|h| etag_matches(h, r.version))
        {
            return Ok(with_etag(respond(304, None), r.version));
        }
        self.one(kind, &r, 200, c)
    }

    fn create(&self, kind: Kind, c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let attrs = normalize(kind, as_object(c.body.clone().unwrap_or(Value::Null))?);
        let r = self.store.create(c.idp, kind, attrs, c.now)?;
        tracing::info!(idp = c.idp, kind = kind.name(), id = %r.id, "SCIM create");
        if let Some(p) = &self.pusher {
            match kind {
                Kind::User => p.user_changed(c.idp, &r.id, None),
                Kind::Group => p.group_changed(c.idp, &[], &member_ids(&r), None),
            }
        }
        self.one(kind, &r, 201, c)
    }

    fn if_match<'a>(c: &'a Call<'_>) -> Option<&'a str> {
        header_str(c.headers, header::IF_MATCH)
    }

    fn changed(&self, kind: Kind, c: &Call<'_>, before: &StoredResource, after: &StoredResource) {
        let Some(p) = &self.pusher else { return };
        if before.version == after.version {
            return;
        }
        match kind {
            Kind::User => p.user_changed(c.idp, &after.id, None),
            Kind::Group => {
                let renamed = group_ref(before).email != group_ref(after).email;
                p.group_changed(
                    c.idp,
                    &member_ids(before),
                    &member_ids(after),
                    renamed.then(|| group_ref(before)),
                );
            }
        }
    }

    fn replace(&self, kind: Kind, id: &str, c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let attrs = normalize(kind, as_object(c.body.clone().unwrap_or(Value::Null))?);
        let (before, after) =
            self.store
                .update(c.idp, kind, id, Self::if_match(c), c.now, |a| {
                    *a = attrs;
                    Ok(())
                })?;
        tracing::info!(idp = c.idp, kind = kind.name(), id, "SCIM replace");
        self.changed(kind, c, &before, &after);
        self.one(kind, &after, 200, c)
    }

    fn patch(&self, kind: Kind, id: &str, c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let ops = patch::parse_request(c.body.as_ref().unwrap_or(&Value::Null))?;
        let (before, after) =
            self.store
                .update(c.idp, kind, id, Self::if_match(c), c.now, |a| {
                    patch::apply(kind, a, &ops)
                })?;
        tracing::info!(
            idp = c.idp,
            kind = kind.name(),
            id,
            ops = ops.len(),
            "SCIM patch"
        );
        self.changed(kind, c, &before, &after);
        self.one(kind, &after, 200, c)
    }

    fn delete(&self, kind: Kind, id: &str, c: &Call<'_>) -> Result<Response<Bytes>, ScimError> {
        let last = match kind {
            Kind::User => self
                .store
                .read(c.idp, |d| person_with_groups(d, id))
                .flatten(),
            Kind::Group => None,
        };
        let before = self
            .store
            .delete(c.idp, kind, id, Self::if_match(c), c.now)?;
        tracing::info!(idp = c.idp, kind = kind.name(), id, "SCIM delete");
        if let Some(p) = &self.pusher {
            match kind {
                Kind::User => p.user_changed(c.idp, id, last),
                Kind::Group => {
                    p.group_changed(c.idp, &member_ids(&before), &[], Some(group_ref(&before)))
                }
            }
        }
        Ok(respond(204, None))
    }
}

/// One request's parts the handlers read.
struct Call<'a> {
    idp: &'a str,
    base: &'a str,
    method: &'a Method,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    body: Option<Value>,
    now: SystemTime,
}

async fn read_body<B>(headers: &HeaderMap, body: B) -> Result<Value, ScimError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_big = || {
        ScimError::new(
            413,
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
    };
    let bytes = match crate::proxy::body::read_capped(headers, body, MAX_BODY).await {
        Ok(b) => b,
        Err(crate::proxy::body::CappedError::TooLarge) => return Err(too_big()),
        Err(crate::proxy::body::CappedError::Unreadable) => {
            return Err(ScimError::new(400, "the request body could not be read"))
        }
    };
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not JSON: {e}"),
        )
    })
}
