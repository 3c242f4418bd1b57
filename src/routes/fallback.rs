//! What answers when no route matched: `OPTIONS` on a known path gets 204 with `Allow`, another
//! method 405 with `Allow`, an unknown path 404. The known paths come from the served OpenAPI
//! document, so the two cannot drift. `HEAD` is served wherever `GET` is (RFC 9110 §9.1):
//! [`head_as_get`] routes it as a `GET` and actix-web leaves the body out.

use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use crate::correlation::correlation_id_of;
use crate::error::{ApiError, ApiErrorKind, allow_header};

/// The route template a request matches (`/v1/customers/{customerId}/qualifications`),
/// worked out once per request (it runs the router's patterns) and kept in its extensions
/// for the log line, the metrics and the audit.
pub fn matched_route(request: &HttpRequest) -> Option<Rc<str>> {
    #[derive(Clone)]
    struct MatchedRoute(Option<Rc<str>>);
    if let Some(known) = request.extensions().get::<MatchedRoute>() {
        return known.0.clone();
    }
    let route: Option<Rc<str>> = request.match_pattern().map(Rc::from);
    request.extensions_mut().insert(MatchedRoute(route.clone()));
    route
}

/// Every served path (as segments, `{param}` matching any one) and its methods.
pub struct RouteTable {
    routes: Vec<(Vec<Segment>, Vec<Method>)>,
}

enum Segment {
    Literal(String),
    Parameter,
}

impl RouteTable {
    /// The document's operations plus routes served outside it (health, the spec itself).
    pub fn new(document: &utoipa::openapi::OpenApi, undocumented: &[(&str, Method)]) -> Self {
        let mut table = Self { routes: Vec::new() };
        for (path, item) in &document.paths.paths {
            let item = serde_json::to_value(item).unwrap_or_default();
            let methods = [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .into_iter()
            .filter(|m| item.get(m).is_some())
            .filter_map(|m| m.to_uppercase().parse().ok());
            for method in methods {
                table.add(path, method);
            }
        }
        for (path, method) in undocumented {
            table.add(path, method.clone());
        }
        table
    }

    fn add(&mut self, path: &str, method: Method) {
        let segments: Vec<Segment> = segments_of(path)
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    Segment::Parameter
                } else {
                    Segment::Literal(s.to_owned())
                }
            })
            .collect();
        let same_path = |(existing, _): &&mut (Vec<Segment>, Vec<Method>)| {
            existing.len() == segments.len()
                && existing.iter().zip(&segments).all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Parameter, Segment::Parameter) => true,
                    _ => false,
                })
        };
        match self.routes.iter_mut().find(same_path) {
            Some((_, methods)) if !methods.contains(&method) => methods.push(method),
            Some(_) => {}
            None => self.routes.push((segments, vec![method])),
        }
    }

    /// The methods `path` answers to (with `HEAD` wherever `GET`, and `OPTIONS`); empty when
    /// no route has that shape. Matching is exact: `/healthz/` is not `/healthz`.
    pub fn allowed(&self, path: &str) -> Vec<Method> {
        let parts: Vec<&str> = segments_of(path).collect();
        let mut allowed: Vec<Method> = Vec::new();
        for (segments, methods) in &self.routes {
            let fits = segments.len() == parts.len()
                && segments
                    .iter()
                    .zip(&parts)
                    .all(|(segment, part)| match segment {
                        Segment::Literal(literal) => literal == part,
                        Segment::Parameter => !part.is_empty(),
                    });
            if fits {
                for method in methods {
                    if !allowed.contains(method) {
                        allowed.push(method.clone());
                    }
                }
            }
        }
        if allowed.is_empty() {
            return allowed;
        }
        if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
            allowed.push(Method::HEAD);
        }
        if !allowed.contains(&Method::OPTIONS) {
            allowed.push(Method::OPTIONS);
        }
        allowed
    }
}

/// Only the leading slash is dropped, so a trailing slash leaves an empty last segment that
/// no route matches.
fn segments_of(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// Innermost middleware: a `HEAD` is routed, authorized and rate-limited exactly as the `GET`
/// it stands for, and its body is dropped here. (actix-http also drops it, but by a flag kept
/// per connection, which a pipelined request behind a slow `HEAD` overwrites.)
pub async fn head_as_get(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_head = request.method() == Method::HEAD;
    if is_head {
        request.head_mut().method = Method::GET;
    }
    let response = next.call(request).await?.map_into_boxed_body();
    Ok(if is_head {
        response.map_body(|_, _| BoxBody::new(body::None::new()))
    } else {
        response
    })
}

pub async fn fallback(
    request: HttpRequest,
    routes: web::Data<Arc<RouteTable>>,
) -> Result<HttpResponse, ApiError> {
    let allowed = routes.allowed(request.path());
    if request.method() == Method::OPTIONS && !allowed.is_empty() {
        return Ok(HttpResponse::NoContent()
            .insert_header((header::ALLOW, allow_header(&allowed)))
            .finish());
    }
    let kind = if allowed.is_empty() {
        ApiErrorKind::NotFound
    } else {
        ApiErrorKind::MethodNotAllowed { allowed }
    };
    Err(ApiError::new(kind, correlation_id_of(&request)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut table = RouteTable { routes: Vec::new() };
        table.add("/v1/customers/{customerId}/qualifications", Method::GET);
        table.add("/v1/customers/{customerId}/qualifications", Method::POST);
        table.add("/v1/customers/all/validations", Method::GET);
        table.add("/healthz", Method::GET);
        table
    }

    #[test]
    fn a_parameter_matches_any_one_segment() {
        let t = table();
        assert_eq!(
            t.allowed("/v1/customers/abc/qualifications"),
            vec![Method::GET, Method::POST, Method::HEAD, Method::OPTIONS]
        );
        assert_eq!(
            t.allowed("/healthz"),
            vec![Method::GET, Method::HEAD, Method::OPTIONS]
        );
        assert!(t.allowed("/v1/customers/a/b/qualifications").is_empty());
        assert!(t.allowed("/v1/customers//qualifications").is_empty());
        assert!(t.allowed("/nope").is_empty());
    }

    #[test]
    fn a_trailing_slash_is_another_path() {
        let t = table();
        assert!(t.allowed("/healthz/").is_empty());
        assert!(t.allowed("/v1/customers/abc/qualifications/").is_empty());
    }

    #[test]
    fn a_post_only_path_offers_no_head() {
        let mut t = RouteTable { routes: Vec::new() };
        t.add("/sandbox/caller-token", Method::POST);
        assert_eq!(
            t.allowed("/sandbox/caller-token"),
            vec![Method::POST, Method::OPTIONS]
        );
    }

    #[test]
    fn literal_and_parameter_routes_at_one_shape_merge() {
        let t = table();
        assert_eq!(
            t.allowed("/v1/customers/all/validations"),
            vec![Method::GET, Method::HEAD, Method::OPTIONS]
        );
    }
}
