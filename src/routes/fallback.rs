//! What answers when no route matched: 405 with `Allow` for a known path and another method,
//! else 404. The known paths come from the served OpenAPI document, so the two cannot drift.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::correlation::correlation_id_of;
use crate::error::{ApiError, ApiErrorKind};

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
        let segments: Vec<Segment> = path
            .trim_matches('/')
            .split('/')
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

    /// The methods `path` answers to; empty when no route has that shape.
    pub fn allowed(&self, path: &str) -> Vec<Method> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
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
        allowed
    }
}

pub async fn fallback(
    request: HttpRequest,
    routes: web::Data<Arc<RouteTable>>,
) -> Result<HttpResponse, ApiError> {
    let allowed = routes.allowed(request.path());
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
            vec![Method::GET, Method::POST]
        );
        assert_eq!(t.allowed("/healthz"), vec![Method::GET]);
        assert!(t.allowed("/v1/customers/a/b/qualifications").is_empty());
        assert!(t.allowed("/v1/customers//qualifications").is_empty());
        assert!(t.allowed("/nope").is_empty());
    }

    #[test]
    fn literal_and_parameter_routes_at_one_shape_merge() {
        let t = table();
        assert_eq!(
            t.allowed("/v1/customers/all/validations"),
            vec![Method::GET]
        );
    }
}
