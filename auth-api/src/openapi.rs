//! The OpenAPI 3.1 document of the service (`GET /api/openapi.json`), hand-written in
//! `openapi/openapi.json`. A test keeps its (method, path) pairs equal to [`crate::routes::ROUTES`].

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../openapi/openapi.json");

/// The (method, path) pairs the document describes, methods uppercase, sorted.
pub fn operations() -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON");
    let mut ops: Vec<(String, String)> = doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .flat_map(|(path, item)| {
                    item.as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(method, _)| {
                            ["get", "put", "post", "delete", "patch", "head", "options"]
                                .contains(&method.as_str())
                        })
                        .map(move |(method, _)| (method.to_uppercase(), path.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    ops.sort();
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        routes.sort();
        assert_eq!(operations(), routes);
    }

    #[test]
    fn protected_routes_declare_bearer_security_and_401() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.to_lowercase()];
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(secured, r.protected, "{} {}", r.method, r.path);
            if r.protected {
                assert!(op["responses"]["401"].is_object(), "{} {}", r.method, r.path);
                // The user is read from the store (on a cache miss).
                assert!(op["responses"]["503"].is_object(), "{} {}", r.method, r.path);
            }
        }
    }

    #[test]
    fn an_alias_is_documented_as_its_route() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let mut aliases = 0;
        for r in ROUTES {
            let method = r.method.to_lowercase();
            let op = &doc["paths"][r.path][&method];
            let summary = op["summary"].as_str().unwrap_or_default();
            let Some(target) = summary
                .split_once("(alias of ")
                .and_then(|(_, rest)| rest.strip_suffix(')'))
            else {
                continue;
            };
            let primary = &doc["paths"][target][&method];
            assert!(primary.is_object(), "{} {}: no {target}", r.method, r.path);
            for key in ["responses", "requestBody", "security", "parameters"] {
                assert_eq!(op[key], primary[key], "{} {}: {key}", r.method, r.path);
            }
            aliases += 1;
        }
        assert_eq!(aliases, 3);
    }
}
