//! What every handler can reach: the use cases (one service per area, `cardap_commands`), the store's status and
//! the projection progress for health and metrics. The event store and the read models themselves are here only
//! for start-up and for the tests that set up state beneath the API: no route touches them (`scripts/check-deps`).

use std::sync::Arc;

use cardap_commands::Checkpoint;
use cardap_commands::Views;
use cardap_commands::access::Access;
use cardap_commands::biometric::Biometrics;
use cardap_commands::business_systems::BusinessSystems;
use cardap_commands::card_writes::CardWrites;
use cardap_commands::erasure::Erasure;
use cardap_commands::feeds::Feeds;
use cardap_commands::history::History;
use cardap_commands::imports::Imports;
use cardap_commands::issuance_service::IssuanceServices;
use cardap_commands::jobs::Jobs;
use cardap_commands::library::Library;
use cardap_commands::municipalities::Municipalities;
use cardap_commands::oidc::LoginProvider;
use cardap_commands::operators::Operators;
use cardap_commands::pki::Pki;
use cardap_commands::read_access::ReadAccess;
use cardap_commands::residents::ResidentServices;
use cardap_commands::status::Status;
use cardap_projections::ReadModels;
use cardap_store::EventStore;

use crate::error::ApiError;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AppState {
    /// Not for routes: start-up and tests.
    pub store: Arc<dyn EventStore>,
    /// Not for routes: start-up and tests.
    pub read: ReadModels,
    pub metrics: Arc<Metrics>,
    /// Resident service registration (residents, cards, settings, registry import) over `store`.
    pub residents: ResidentServices,
    /// Writing the card through the card agent: cardap's MACs and the events the card confirms.
    pub card_writes: CardWrites,
    /// Login, sessions and passwords.
    pub access: Access,
    /// Biometric login: authenticators (生体情報登録), the municipalities' biometric policies, WebAuthn login.
    pub biometrics: Biometrics,
    /// 市町村設定.
    pub municipalities: Municipalities,
    /// 業務システム設定 and shared use.
    pub business_systems: BusinessSystems,
    /// オペレータ管理.
    pub operators: Operators,
    /// Read-your-writes over this node's projection runners.
    pub views: Views,
    /// The event store's condition, for readiness and metrics.
    pub status: Status,
    /// How many imports run at once (registry and operator CSV), per municipality and on this server.
    pub imports: Imports,
    /// The import jobs of this server process (operator CSV): progress, outcome, generated passwords once.
    pub jobs: Jobs<ApiError>,
    /// The internal CA: certificates issued, revoked, reissued; the chain and the CRL.
    pub pki: Pki,
    /// Login to business systems through cardap (OpenID Connect provider).
    pub oidc: LoginProvider,
    /// Operator history for auditors.
    pub history: History,
    /// 消去: erase a resident for good (his erasure event, then his data keys destroyed).
    pub erasure: Erasure,
    /// The read access log (who read which residents) and the bulk-read alert threshold.
    pub reads: ReadAccess,
    /// The business systems' replication feeds and their field lists.
    pub feeds: Feeds,
    /// The library links (図書館: 標準ID ↔ 図書ID).
    pub library: Library,
    /// The municipalities' issuance services (証明書等自動交付: certificates, hours, closed periods).
    pub issuance: IssuanceServices,
    /// The webhook push of the feeds: URLs and signing secrets (the pusher runs beside the server).
    pub webhooks: cardap_commands::webhooks::Webhooks,
}

impl AppState {
    /// Waits until every read model shows the write at `checkpoint` (a write that feeds several).
    pub async fn wait_for_views(&self, checkpoint: Checkpoint) {
        self.views.wait_for(checkpoint).await;
    }
}
