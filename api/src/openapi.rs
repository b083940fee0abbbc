//! The OpenAPI document (`GET /openapi.json`), generated from the handlers and types themselves.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ProblemDetails, ProblemField};
use crate::routes::{health, municipalities, sessions};

#[derive(OpenApi)]
#[openapi(
    info(title = "cardap", description = "マイナンバーカード カードAP搭載システム API. Errors are application/problem+json \
        with a stable `type`; messages are Japanese unless `Accept-Language: en`."),
    paths(
        health::healthz, health::readyz,
        sessions::login, sessions::logout, sessions::me,
        municipalities::list, municipalities::register, municipalities::show, municipalities::change,
        municipalities::abolish,
    ),
    components(schemas(ProblemDetails, ProblemField)),
    modifiers(&BearerAuth),
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
