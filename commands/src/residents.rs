//! The clerk's workflow of resident service registration (手引き I 1.1–1.2) as commands: register and change
//! residents, register cards, create the local area, install and remove APs, suspend, resume and abolish cards,
//! and the municipality's settings that registration enforces; and the queries of the resident and card read
//! models (利用者検索, AP counts).
//!
//! Owns the looked-up facts each decision needs (the municipality's settings, which business systems it may use
//! now, the resident a card belongs to) and the atomic appends across streams. Shared use is enforced twice: the
//! permission names the municipality, and a resident or card of another municipality is "not found".

use std::collections::BTreeSet;
use std::sync::Arc;

use cardap_domain::business_system::{self, BusinessSystem};
use cardap_domain::card::{
    self, ApInstall, ApOffer, Card, CardCommand, CardError, ConsentAnswer, ConsentRecord, RegisteredCard, StandardId,
    StandardIdAllocation, StandardIdCommand,
};
use cardap_domain::local_settings::{
    self, CustomFieldError, LocalSettings, LocalSettingsCommand, LocalSettingsError, LocalSettingsState,
    LocalSettingsValue,
};
use cardap_domain::registry::RegistryKey;
use cardap_domain::resident::{
    self, CardFid, KanaName, KanjiName, NamePatch, PersonalChanges, PersonalData, RegisteredResident, Resident,
    ResidentCommand, ResidentError, ResidentId, ResidentState,
};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use cardap_projections::ReadModels;
pub use cardap_projections::residents::{ResidentPage, ResidentRow, ResidentSearch};
use cardap_store::{Checkpoint, EventStore, StreamId};
use serde_json::{Map, Value};

use crate::QueryError;
use crate::authz::Permission;
use crate::clock::Clock;
use crate::context::CommandContext;
use crate::engine::{Transacted, Tx, transact};
use crate::handler::CommandError;
use crate::read_access::{ReadAccess, ReadOperation};
use crate::views::Views;

/// Why a registration step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Resident(ResidentError),
    #[error(transparent)]
    Card(CardError),
    #[error(transparent)]
    Settings(LocalSettingsError),
    /// Custom-field input that the municipality's definitions refuse, keyed by the field key as typed.
    #[error("custom fields refused: {0:?}")]
    CustomFields(Vec<(String, CustomFieldError)>),
    /// No such resident in this municipality (another municipality's resident does not exist here either).
    #[error("no such resident in this municipality")]
    ResidentNotFound,
    /// No such card in this municipality.
    #[error("no such card in this municipality")]
    CardNotFound,
}

type Result<T> = std::result::Result<T, CommandError<RegistrationError>>;

fn refused<T>(e: RegistrationError) -> Result<T> {
    Err(CommandError::Domain(e))
}

pub use crate::ids::stream_of;

/// A card as a command left it, with its stream version (the ETag).
#[derive(Debug, Clone)]
pub struct CardSnapshot {
    pub card: RegisteredCard,
    pub version: u64,
}

/// A resident as a command left him, with his stream version (the ETag).
#[derive(Debug, Clone)]
pub struct ResidentSnapshot {
    pub resident: RegisteredResident,
    pub version: u64,
}

/// What a card operation asks for. `issuance_consent` is the resident's answer, as the clerk gives it, about his
/// user info going to the certificate issuance server (AP `01`): `None` not asked, `Some(false)` declined,
/// `Some(true)` given — recorded with the install, with the time and the clerk (`card::ConsentAnswer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardAction {
    CreateLocalArea { issuance_consent: Option<bool> },
    InstallAps { business_ids: Vec<BusinessId>, issuance_consent: Option<bool> },
    RemoveAp(BusinessId),
    Suspend,
    Resume,
    Abolish,
}

/// Draws the random part of a 標準ID (the caller's randomness keeps the domain pure and the tests repeatable).
pub type StandardIdDraw = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Resident service registration over one event store.
#[derive(Clone)]
pub struct ResidentServices {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    /// A registry import answers once the read models show it.
    views: Views,
    draw: StandardIdDraw,
    /// Every read of personal data is recorded here before it is answered.
    reads: ReadAccess,
    /// When a resident's consent was recorded.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ResidentServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentServices").finish_non_exhaustive()
    }
}

impl ResidentServices {
    pub fn new(
        store: Arc<dyn EventStore>,
        read: ReadModels,
        views: Views,
        draw: StandardIdDraw,
        reads: ReadAccess,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ResidentServices { store, read, views, draw, reads, clock }
    }

    /// The resident's answer about AP `01` (`None` not asked, `Some(false)` declined, `Some(true)` given), recorded
    /// now by `ctx`'s operator when given.
    pub(crate) fn consent_answer(&self, ctx: &CommandContext, answer: Option<bool>) -> ConsentAnswer {
        match answer {
            None => ConsentAnswer::NotAsked,
            Some(false) => ConsentAnswer::Declined,
            Some(true) => ConsentAnswer::Given(ConsentRecord {
                at: self.clock.timestamp(),
                operator: ctx.actor.as_ref().map(|a| a.operator),
            }),
        }
    }

    /// The read access log the reads of this service are recorded in.
    pub fn reads(&self) -> &ReadAccess {
        &self.reads
    }

    /// The random part of a new 標準ID.
    pub(crate) fn draw_standard_id(&self) -> u64 {
        (self.draw)()
    }

    /// The read models the resident queries answer from.
    pub fn read(&self) -> &ReadModels {
        &self.read
    }

    // ---- queries --------------------------------------------------------------------------------------------

    /// 利用者検索 by `ctx`'s operator (clerks, auditors): one page of the municipality's residents matching
    /// `search`, pages in registration order, each sorted by kana; the residents of the page are recorded in the read
    /// access log first.
    pub async fn search_residents(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        search: &ResidentSearch,
    ) -> Result<ResidentPage> {
        authorize_read(ctx, Permission::ViewResidents(code.clone()))?;
        let page = cardap_projections::residents::search(self.read.pool(), self.read.sealer(), code, search)
            .await
            .map_err(query_failed)?;
        let ids: Vec<ResidentId> = page.rows.iter().map(|r| r.resident_id).collect();
        self.reads.record(ctx, code, ReadOperation::ResidentSearch, &ids, &[]).await?;
        Ok(page)
    }

    /// One resident of `code` as `ctx`'s operator reads him (clerks, auditors), recorded in the read access log
    /// first; another municipality's resident is `ResidentNotFound`.
    pub async fn read_resident(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        id: &ResidentId,
    ) -> Result<ResidentSnapshot> {
        authorize_read(ctx, Permission::ViewResidents(code.clone()))?;
        let snapshot = self.resident(code, id).await?;
        // An erased resident is answered as such: nothing personal is shown, so nothing is recorded.
        if snapshot.resident.erased {
            return Err(resident_error(ResidentError::Erased));
        }
        self.reads.record(ctx, code, ReadOperation::ResidentRead, &[*id], &[]).await?;
        Ok(snapshot)
    }

    /// How many cards of the municipality (not abolished) carry each AP, in business-ID order.
    pub async fn ap_counts(&self, code: &MunicipalityCode) -> std::result::Result<Vec<(BusinessId, u64)>, QueryError> {
        cardap_projections::cards::ap_counts(self.read.pool(), code).await
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// This node's read models' progress, to wait for a write to show.
    pub fn views(&self) -> &Views {
        &self.views
    }

    /// Read-your-writes after a change of the settings: waits until their view shows `checkpoint`.
    pub async fn settings_shown(&self, checkpoint: Checkpoint) {
        self.views.wait_for_view(checkpoint, cardap_projections::local_settings::NAME).await;
    }

    /// Read-your-writes after a change of a resident: waits until the resident register shows `checkpoint`.
    pub async fn resident_shown(&self, checkpoint: Checkpoint) {
        self.views.wait_for_view(checkpoint, cardap_projections::residents::NAME).await;
    }

    /// Read-your-writes after a card decision, which also changes its resident (card attached, detached): waits
    /// until both the card register and the resident register show `checkpoint`.
    pub async fn card_shown(&self, checkpoint: Checkpoint) {
        self.views.wait_for_view(checkpoint, cardap_projections::cards::NAME).await;
        self.views.wait_for_view(checkpoint, cardap_projections::residents::NAME).await;
    }

    // ---- settings -------------------------------------------------------------------------------------------

    /// The municipality's settings now (defaults when never configured), with the stream version.
    pub async fn settings(&self, code: &MunicipalityCode) -> Result<(LocalSettingsState, u64)> {
        let mut tx = Tx::new(self.store.clone());
        let loaded = tx
            .load::<LocalSettings, RegistrationError>(&stream_of::<LocalSettings>(&local_settings::stream_key(code)))
            .await?;
        Ok((loaded.state, loaded.version))
    }

    /// Replaces the municipality's settings (独自項目, AP catalog, presets).
    pub async fn configure(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        if_match: Option<u64>,
        settings: LocalSettingsValue,
    ) -> Result<Transacted<u64>> {
        let stream = stream_of::<LocalSettings>(&local_settings::stream_key(code));
        let permission = Permission::ConfigureResidentServices(code.clone());
        let (stream, settings) = (&stream, &settings);
        transact(&self.store, ctx, &[permission], Some(code.clone()), |mut tx: Tx| async move {
            let loaded = tx.load::<LocalSettings, RegistrationError>(stream).await?;
            check_if_match(if_match, loaded.version)?;
            let permitted = permitted_among(&mut tx, code, settings.catalog.iter()).await?;
            let command =
                LocalSettingsCommand::Configure { municipality: code.clone(), settings: settings.clone(), permitted };
            let events = LocalSettings::decide(&loaded.state, command)
                .map_err(|e| CommandError::Domain(RegistrationError::Settings(e)))?;
            tx.append::<LocalSettings>(stream, loaded.version, &events);
            Ok((loaded.version + events.len() as u64, tx))
        })
        .await
    }

    /// What the decision would refuse in `settings` now, writing nothing: lets the edge name these refusals
    /// together with what it could not parse, without a second copy of the rules.
    pub async fn settings_refusals(
        &self,
        code: &MunicipalityCode,
        settings: &LocalSettingsValue,
    ) -> Result<Vec<LocalSettingsError>> {
        let mut tx = Tx::new(self.store.clone());
        let stream = stream_of::<LocalSettings>(&local_settings::stream_key(code));
        let loaded = tx.load::<LocalSettings, RegistrationError>(&stream).await?;
        let permitted = permitted_among(&mut tx, code, settings.catalog.iter()).await?;
        let command =
            LocalSettingsCommand::Configure { municipality: code.clone(), settings: settings.clone(), permitted };
        Ok(match LocalSettings::decide(&loaded.state, command) {
            Ok(_) => vec![],
            Err(LocalSettingsError::All(all)) => all,
            Err(one) => vec![one],
        })
    }

    // ---- residents ------------------------------------------------------------------------------------------

    /// Loads a resident of `code`; another municipality's resident is `ResidentNotFound`. Records nothing: for
    /// what is no operator's read (the answer of a write that was already applied, tests); an operator reads
    /// through [`ResidentServices::read_resident`].
    pub async fn resident(&self, code: &MunicipalityCode, id: &ResidentId) -> Result<ResidentSnapshot> {
        let mut tx = Tx::new(self.store.clone());
        load_resident(&mut tx, code, id).await
    }

    /// 利用者登録. `custom` is the clerk's raw custom-field input, checked against the settings now.
    pub async fn register_resident(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        id: ResidentId,
        registry_key: Option<RegistryKey>,
        personal: PersonalData,
        custom: &Map<String, Value>,
    ) -> Result<(ResidentSnapshot, Option<cardap_store::Checkpoint>)> {
        let stream = stream_of::<Resident>(&resident::stream_key(&id));
        let settings_stream = stream_of::<LocalSettings>(&local_settings::stream_key(code));
        let permission = Permission::RegisterResidents(code.clone());
        let (stream, settings_stream, personal, registry_key) = (&stream, &settings_stream, &personal, &registry_key);
        let done = transact(&self.store, ctx, &[permission], Some(code.clone()), |mut tx: Tx| async move {
            let settings = tx.load::<LocalSettings, RegistrationError>(settings_stream).await?;
            let mut personal = personal.clone();
            personal.custom_fields = settings
                .state
                .check_custom_fields(custom, true)
                .map_err(|e| CommandError::Domain(RegistrationError::CustomFields(e)))?
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let loaded = tx.load::<Resident, RegistrationError>(stream).await?;
            let command = ResidentCommand::Register {
                id,
                municipality: code.clone(),
                registry_key: registry_key.clone(),
                personal,
            };
            let events = Resident::decide(&loaded.state, command).map_err(resident_error)?;
            tx.append::<Resident>(stream, loaded.version, &events);
            let (state, version) = after(loaded, &events);
            Ok((resident_snapshot(state, version)?, tx))
        })
        .await?;
        let snapshot = match done.value {
            Some(snapshot) => snapshot,
            None => self.resident(code, &id).await?,
        };
        Ok((snapshot, done.checkpoint))
    }

    /// Changes personal fields; `custom` holds only the custom fields to set (`null` clears one).
    pub async fn change_resident(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        id: &ResidentId,
        if_match: Option<u64>,
        (changes, kana_name, kanji_name): (PersonalChanges, NamePatch<KanaName>, NamePatch<KanjiName>),
        custom: &Map<String, Value>,
    ) -> Result<(ResidentSnapshot, Option<cardap_store::Checkpoint>)> {
        let settings_stream = stream_of::<LocalSettings>(&local_settings::stream_key(code));
        let permission = Permission::RegisterResidents(code.clone());
        let (settings_stream, changes, names) = (&settings_stream, &changes, &(kana_name, kanji_name));
        let done = transact(&self.store, ctx, &[permission], Some(code.clone()), |mut tx: Tx| async move {
            let settings = tx.load::<LocalSettings, RegistrationError>(settings_stream).await?;
            let mut changes = changes.clone();
            changes.custom_fields = settings
                .state
                .check_custom_fields(custom, false)
                .map_err(|e| CommandError::Domain(RegistrationError::CustomFields(e)))?;
            let (loaded, stream) = load_resident_state(&mut tx, code, id).await?;
            check_if_match(if_match, loaded.version)?;
            let (kana_name, kanji_name) = names.clone();
            let command = ResidentCommand::Merge { changes, kana_name, kanji_name };
            let events = Resident::decide(&loaded.state, command).map_err(resident_error)?;
            tx.append::<Resident>(&stream, loaded.version, &events);
            let (state, version) = after(loaded, &events);
            Ok((resident_snapshot(state, version)?, tx))
        })
        .await?;
        let snapshot = match done.value {
            Some(snapshot) => snapshot,
            None => self.resident(code, id).await?,
        };
        Ok((snapshot, done.checkpoint))
    }

    /// 転出.
    pub async fn move_out(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        id: &ResidentId,
        if_match: Option<u64>,
    ) -> Result<(ResidentSnapshot, Option<cardap_store::Checkpoint>)> {
        let permission = Permission::RegisterResidents(code.clone());
        let done = transact(&self.store, ctx, &[permission], Some(code.clone()), |mut tx: Tx| async move {
            let (loaded, stream) = load_resident_state(&mut tx, code, id).await?;
            check_if_match(if_match, loaded.version)?;
            let events = Resident::decide(&loaded.state, ResidentCommand::MoveOut).map_err(resident_error)?;
            tx.append::<Resident>(&stream, loaded.version, &events);
            let (state, version) = after(loaded, &events);
            Ok((resident_snapshot(state, version)?, tx))
        })
        .await?;
        let snapshot = match done.value {
            Some(snapshot) => snapshot,
            None => self.resident(code, id).await?,
        };
        Ok((snapshot, done.checkpoint))
    }

    // ---- cards ----------------------------------------------------------------------------------------------

    /// Loads a card of `code`; another municipality's card is `CardNotFound`.
    pub async fn card(&self, code: &MunicipalityCode, fid: &CardFid) -> Result<CardSnapshot> {
        let mut tx = Tx::new(self.store.clone());
        let (loaded, _) = load_card(&mut tx, code, fid).await?;
        snapshot(loaded.state.registered, loaded.version)
    }

    /// Registers the card `fid` to a resident of `code`, making it his one active card. The resident's own state
    /// is decided first; then an FID held (not abolished) anywhere is `CardError::AlreadyRegistered`, one answer
    /// whether it is held here or elsewhere; an abolished card is released and registered afresh.
    pub async fn register_card(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        fid: &CardFid,
        resident_id: &ResidentId,
    ) -> Result<(CardSnapshot, Option<cardap_store::Checkpoint>)> {
        let card_stream = stream_of::<Card>(&card::stream_key(fid));
        let permission = Permission::RegisterResidents(code.clone());
        let card_stream = &card_stream;
        let done = transact(&self.store, ctx, &[permission], Some(code.clone()), |mut tx: Tx| async move {
            // The resident first (moved out, already has a card): what the clerk's own municipality refuses is
            // decided before anything about the FID, so that whether a card is held elsewhere is never told
            // unless the card would be registered otherwise.
            let (resident, resident_stream) = load_resident_state(&mut tx, code, resident_id).await?;
            let resident_events = Resident::decide(&resident.state, ResidentCommand::AttachCard { fid: fid.clone() })
                .map_err(resident_error)?;
            let card = tx.load::<Card, RegistrationError>(card_stream).await?;
            let card_events = Card::decide(
                &card.state,
                CardCommand::Register { fid: fid.clone(), municipality: code.clone(), resident_id: *resident_id },
            )
            .map_err(card_error)?;
            tx.append::<Card>(card_stream, card.version, &card_events);
            tx.append::<Resident>(&resident_stream, resident.version, &resident_events);
            let (state, version) = after(card, &card_events);
            Ok((snapshot(state.registered, version)?, tx))
        })
        .await?;
        let snapshot = match done.value {
            Some(snapshot) => snapshot,
            None => self.card(code, fid).await?,
        };
        Ok((snapshot, done.checkpoint))
    }

    /// Runs one card operation: the local area (with the presets), APs, suspend, resume, abolish.
    pub async fn card_action(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        fid: &CardFid,
        if_match: Option<u64>,
        action: CardAction,
    ) -> Result<(CardSnapshot, Option<cardap_store::Checkpoint>)> {
        let permissions = match &action {
            CardAction::InstallAps { business_ids: ids, .. } => {
                ids.iter().map(|id| Permission::ManageCardAp(code.clone(), id.clone())).collect::<Vec<_>>()
            }
            CardAction::RemoveAp(id) => vec![Permission::ManageCardAp(code.clone(), id.clone())],
            _ => vec![Permission::RegisterResidents(code.clone())],
        };
        let settings_stream = stream_of::<LocalSettings>(&local_settings::stream_key(code));
        let consent = match &action {
            CardAction::CreateLocalArea { issuance_consent } | CardAction::InstallAps { issuance_consent, .. } => {
                self.consent_answer(ctx, *issuance_consent)
            }
            _ => ConsentAnswer::NotAsked,
        };
        let (draw, settings_stream, action) = (&self.draw, &settings_stream, &action);
        let done = transact(&self.store, ctx, &permissions, Some(code.clone()), |mut tx: Tx| async move {
            let (card, card_stream) = load_card(&mut tx, code, fid).await?;
            check_if_match(if_match, card.version)?;
            let mut allocations = Vec::new();
            let mut with_standard_id = |business_id: BusinessId| {
                let standard_id = (business_id == BusinessId::LIBRARY).then(|| StandardId::new(code, draw()));
                if let Some(id) = &standard_id {
                    allocations.push(id.clone());
                }
                ApInstall { business_id, standard_id }
            };
            let command = match &action {
                CardAction::CreateLocalArea { .. } => {
                    let settings = tx.load::<LocalSettings, RegistrationError>(settings_stream).await?;
                    let presets = settings.state.settings.presets.clone();
                    let offer = offer(&mut tx, code, &settings.state, presets.iter()).await?;
                    CardCommand::CreateLocalArea {
                        presets: presets.into_iter().map(&mut with_standard_id).collect(),
                        offer,
                        consent,
                    }
                }
                CardAction::InstallAps { business_ids: ids, .. } => {
                    let settings = tx.load::<LocalSettings, RegistrationError>(settings_stream).await?;
                    let offer = offer(&mut tx, code, &settings.state, ids.iter()).await?;
                    let aps = ids.iter().cloned().map(&mut with_standard_id).collect();
                    CardCommand::InstallAps { aps, offer, consent }
                }
                CardAction::RemoveAp(id) => CardCommand::RemoveAp { business_id: id.clone() },
                CardAction::Suspend => CardCommand::Suspend,
                CardAction::Resume => CardCommand::Resume,
                CardAction::Abolish => CardCommand::Abolish,
            };
            let events = Card::decide(&card.state, command).map_err(card_error)?;
            // Only the 標準IDs that were really installed are allocated (a skipped preset allocates nothing).
            for event in &events {
                if let card::CardEvent::ApInstalled { standard_id: Some(id), .. } = event
                    && allocations.contains(id)
                {
                    // A 標準ID's stream exists once it was handed out: a collision with an earlier one conflicts
                    // here, and the retry draws a new number.
                    let stream = stream_of::<StandardIdAllocation>(&card::allocation_stream_key(id));
                    let allocated = StandardIdAllocation::decide(
                        &false,
                        StandardIdCommand::Allocate { id: id.clone(), fid: fid.clone() },
                    )
                    .unwrap_or_default();
                    tx.append::<StandardIdAllocation>(&stream, 0, &allocated);
                }
            }
            if *action == CardAction::Abolish
                && let Some(registered) = &card.state.registered
            {
                let (resident, resident_stream) = load_resident_state(&mut tx, code, &registered.resident_id).await?;
                let detached = Resident::decide(&resident.state, ResidentCommand::DetachCard { fid: fid.clone() })
                    .map_err(resident_error)?;
                tx.append::<Resident>(&resident_stream, resident.version, &detached);
            }
            tx.append::<Card>(&card_stream, card.version, &events);
            let (state, version) = after(card, &events);
            Ok((snapshot(state.registered, version)?, tx))
        })
        .await?;
        let snapshot = match done.value {
            Some(snapshot) => snapshot,
            None => self.card(code, fid).await?,
        };
        Ok((snapshot, done.checkpoint))
    }
}

/// A read needs an operator who holds `permission` (an action of the system itself reads nothing personal).
pub(crate) fn authorize_read(ctx: &CommandContext, permission: Permission) -> Result<()> {
    let actor = ctx.actor.as_ref().ok_or(crate::AuthzError::Forbidden)?;
    crate::authorize(actor, &permission)?;
    Ok(())
}

/// A failed query of a read model, as a use case's failure.
pub(crate) fn query_failed<E: std::error::Error + 'static>(e: QueryError) -> CommandError<E> {
    match e {
        QueryError::Store(s) => CommandError::Store(s),
        QueryError::Unavailable(e) => CommandError::Store(cardap_store::StoreError::Unavailable(e)),
        QueryError::Database(e) => CommandError::Store(cardap_store::StoreError::Database(e)),
        other => CommandError::Internal(other.to_string()),
    }
}

pub(crate) fn resident_error(e: ResidentError) -> CommandError<RegistrationError> {
    CommandError::Domain(RegistrationError::Resident(e))
}

pub(crate) fn card_error(e: CardError) -> CommandError<RegistrationError> {
    CommandError::Domain(RegistrationError::Card(e))
}

fn check_if_match(if_match: Option<u64>, current: u64) -> Result<()> {
    match if_match {
        Some(expected) if expected != current => Err(CommandError::PreconditionFailed { expected, current }),
        _ => Ok(()),
    }
}

pub(crate) fn snapshot(card: Option<RegisteredCard>, version: u64) -> Result<CardSnapshot> {
    match card {
        Some(card) => Ok(CardSnapshot { card, version }),
        None => refused(RegistrationError::CardNotFound),
    }
}

pub(crate) async fn load_resident_state(
    tx: &mut Tx,
    code: &MunicipalityCode,
    id: &ResidentId,
) -> Result<(crate::Loaded<Resident>, StreamId)> {
    let stream = stream_of::<Resident>(&resident::stream_key(id));
    let loaded = tx.load::<Resident, RegistrationError>(&stream).await?;
    match &loaded.state.registered {
        Some(r) if r.municipality == *code => Ok((loaded, stream)),
        _ => refused(RegistrationError::ResidentNotFound),
    }
}

async fn load_resident(tx: &mut Tx, code: &MunicipalityCode, id: &ResidentId) -> Result<ResidentSnapshot> {
    let (loaded, _) = load_resident_state(tx, code, id).await?;
    resident_snapshot(loaded.state, loaded.version)
}

fn resident_snapshot(state: ResidentState, version: u64) -> Result<ResidentSnapshot> {
    match state.registered {
        Some(resident) => Ok(ResidentSnapshot { resident, version }),
        None => refused(RegistrationError::ResidentNotFound),
    }
}

/// The state after `events`, as the decision's answer (no second read of the stream just written).
pub(crate) fn after<A: Aggregate>(loaded: crate::Loaded<A>, events: &[A::Event]) -> (A::State, u64) {
    (events.iter().fold(loaded.state, A::evolve), loaded.version + events.len() as u64)
}

pub(crate) async fn load_card(
    tx: &mut Tx,
    code: &MunicipalityCode,
    fid: &CardFid,
) -> Result<(crate::Loaded<Card>, StreamId)> {
    let stream = stream_of::<Card>(&card::stream_key(fid));
    let loaded = tx.load::<Card, RegistrationError>(&stream).await?;
    match &loaded.state.registered {
        Some(c) if c.municipality == *code => Ok((loaded, stream)),
        _ => refused(RegistrationError::CardNotFound),
    }
}

/// Which of `ids` the municipality may use now, read from the business systems' own streams.
async fn permitted_among<'a>(
    tx: &mut Tx,
    code: &MunicipalityCode,
    ids: impl Iterator<Item = &'a BusinessId>,
) -> Result<BTreeSet<BusinessId>> {
    let mut permitted = BTreeSet::new();
    for id in ids {
        let stream = stream_of::<BusinessSystem>(&business_system::stream_key(id));
        let loaded = tx.load::<BusinessSystem, RegistrationError>(&stream).await?;
        if loaded.state.permits(code) {
            permitted.insert(id.clone());
        }
    }
    Ok(permitted)
}

pub(crate) async fn offer<'a>(
    tx: &mut Tx,
    code: &MunicipalityCode,
    settings: &LocalSettingsState,
    ids: impl Iterator<Item = &'a BusinessId>,
) -> Result<ApOffer> {
    Ok(ApOffer { catalog: settings.settings.catalog.clone(), permitted: permitted_among(tx, code, ids).await? })
}
