//! The OpenAPI document (`GET /openapi.json`), generated from the handlers and types themselves.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ProblemDetails, ProblemField};
use crate::routes::{
    business_systems, cards, health, municipalities, operator_csv, operators, registry, resident_settings, residents,
    sessions,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "cardap", description = "マイナンバーカード カードAP搭載システム API. Errors are application/problem+json \
        with a stable `type`; messages are Japanese unless `Accept-Language: en`."),
    paths(
        health::healthz, health::readyz,
        sessions::login, sessions::logout, sessions::me, sessions::change_own_password,
        operators::register, operators::list, operators::show, operators::change, operators::revoke, operators::unlock,
        operators::end_sessions, operators::reset_password, operators::bulk_passwords, operators::assign_internal_id,
        operators::remove_internal_id,
        operator_csv::import, operator_csv::export, operator_csv::migrate,
        registry::import, registry::show, registry::lookup,
        municipalities::list, municipalities::register, municipalities::show, municipalities::change,
        municipalities::abolish,
        business_systems::list, business_systems::register, business_systems::show, business_systems::update,
        business_systems::retire, business_systems::permitted, business_systems::permit, business_systems::withdraw,
        resident_settings::show, resident_settings::replace,
        residents::register, residents::search, residents::show, residents::change, residents::move_out,
        cards::register_card, cards::show, cards::local_area, cards::install, cards::remove, cards::suspend,
        cards::resume, cards::abolish, cards::ap_counts,
    ),
    components(schemas(
        ProblemDetails, ProblemField, registry::ImportRowReport, registry::ImportProblemLine,
        registry::ImportSummaryLine,
    )),
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
