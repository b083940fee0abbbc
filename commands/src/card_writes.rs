//! Writing the card itself (手引き I 1.1 地域住民向け領域設定, カードAP搭載, through the card agent): cardap's side of
//! the local-area profile (`card-agent/PROFILE.md`).
//!
//! - [`CardWrites::prepare_write`]: the operator asks to create the local area, install or remove APs, or bring
//!   the card up to cardap's record; cardap decides it as the clerk's own card operations do (same permissions,
//!   same domain rules, the presets with the local area, a 標準ID drawn for the library AP), appends **nothing**,
//!   and answers the area image the card is to hold with its COMMIT MAC over the card's one-time challenge.
//! - [`CardWrites::record_card_state`]: the card's MAC over the image it holds (after a COMMIT, or read at
//!   insertion) is checked, then cardap's record is compared with it: the same → nothing to do; the card holds an
//!   image cardap authorized from its current version → the card was written and the confirmation never arrived:
//!   the events are appended now (rolled forward); otherwise cardap moved on since → the card is outdated and
//!   is to be rewritten (a `Sync` write). The install events are appended only here, after the card confirmed.
//!
//! AP `01` (certificate issuance) needs the resident's consent here as at the counter: the clerk's answer comes
//! with the write it authorizes and again with the card's confirmation that records it (`issuance_consent`, as
//! `ResidentServices::card_action` takes it); an image holding an AP `01` that cardap has not recorded, confirmed
//! without consent, is not rolled forward (cardap's record wins, the card is rewritten).
//!
//! Owns the card keys: each card's key is HMAC-SHA-256 of its FID under a secret derived from the master key
//! ([`CardKeys`]); neither ever leaves cardap (the card emulator gets its key at issuance, `cardap card-key`).
//! Must not log a key, a MAC or an image.

use std::collections::BTreeMap;

use cardap_domain::card::{
    self, ApInstall, Card, CardCommand, CardEvent, CardState, ConsentAnswer, StandardId, StandardIdAllocation,
};
use cardap_domain::card_area::{AreaImage, commit_message, state_message};
use cardap_domain::local_settings::{self, LocalSettings};
use cardap_domain::resident::CardFid;
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use cardap_store::{Checkpoint, MasterKey};
use ring::hmac;

use crate::authz::{Permission, authorize};
use crate::context::CommandContext;
use crate::engine::{Tx, transact};
use crate::handler::CommandError;
use crate::ids::stream_of;
use crate::residents::{
    CardSnapshot, RegistrationError, ResidentServices, after, card_error, load_card, offer, snapshot,
};

/// The label the card keys' secret is derived from the master key under.
const CARD_KEYS_LABEL: &str = "cardap card keys v1";

/// The most bytes of a card challenge or nonce.
const MAX_CHALLENGE: usize = 32;

/// Every card's local-area key, derived on demand. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct CardKeys {
    secret: hmac::Key,
}

impl std::fmt::Debug for CardKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardKeys(<redacted>)")
    }
}

impl CardKeys {
    pub fn new(master: &MasterKey) -> CardKeys {
        CardKeys { secret: hmac::Key::new(hmac::HMAC_SHA256, &master.derive_secret(CARD_KEYS_LABEL)) }
    }

    /// The key of card `fid`, for its issuance (personalization) only: `cardap card-key` hands it to the card
    /// (the emulator's card file); no route answers it.
    pub fn card_key(&self, fid: &CardFid) -> [u8; 32] {
        let mut out = [0_u8; 32];
        out.copy_from_slice(hmac::sign(&self.secret, fid.as_str().as_bytes()).as_ref());
        out
    }

    fn key(&self, fid: &CardFid) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.card_key(fid))
    }
}

/// What a write to the card is for; `issuance_consent` as `residents::CardAction` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardWrite {
    CreateLocalArea {
        issuance_consent: Option<bool>,
    },
    InstallAps {
        business_ids: Vec<BusinessId>,
        issuance_consent: Option<bool>,
    },
    RemoveAp(BusinessId),
    /// Write cardap's record onto the card (after reconciliation found the card outdated).
    Sync,
}

/// The image the card is to commit and cardap's MAC that lets it.
#[derive(Debug, Clone)]
pub struct PreparedWrite {
    pub image: Vec<u8>,
    pub commit_mac: Vec<u8>,
}

/// What a card says it holds, with its MAC (READ STATE, or the answer to COMMIT).
#[derive(Debug, Clone)]
pub struct CardStateProof {
    /// The area image (empty: no local area).
    pub image: Vec<u8>,
    /// The nonce the card MACed with (the COMMIT's challenge, or READ STATE's nonce).
    pub nonce: Vec<u8>,
    pub mac: Vec<u8>,
}

/// How cardap's record and the card compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// They agree; nothing was appended.
    InAgreement,
    /// The card holds a write cardap authorized and had not recorded: these events were appended now.
    Recorded(Vec<CardEvent>),
    /// cardap's record moved on (or the card lost its area): the card is to be rewritten with a `Sync` write.
    CardOutdated,
}

/// Why a card write or a card's state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardWriteError {
    #[error(transparent)]
    Registration(RegistrationError),
    #[error("the card's challenge must be 1 to 32 bytes")]
    BadChallenge,
    /// The card's MAC does not verify: not this card, or the data was altered on the way.
    #[error("the card's confirmation does not verify")]
    BadConfirmation,
    #[error("the card's local area cannot be read: {0}")]
    BadImage(String),
    /// The card's local area was created by another municipality.
    #[error("the card's local area belongs to another municipality")]
    OtherMunicipality,
}

impl cardap_domain::Localized for CardWriteError {
    fn message_ja(&self) -> String {
        match self {
            Self::Registration(e) => e.to_string(),
            Self::BadChallenge => "カードのチャレンジが不正です".to_owned(),
            Self::BadConfirmation => {
                "カードの応答を検証できません（別のカードか、データが改変されています）".to_owned()
            }
            Self::BadImage(_) => "カードの地域住民向け領域を読み取れません".to_owned(),
            Self::OtherMunicipality => "このカードの地域住民向け領域は他の市町村のものです".to_owned(),
        }
    }
}

type Result<T> = std::result::Result<T, CommandError<CardWriteError>>;

fn registration(e: CommandError<RegistrationError>) -> CommandError<CardWriteError> {
    e.map_domain(CardWriteError::Registration)
}

fn refused<T>(e: CardWriteError) -> Result<T> {
    Err(CommandError::Domain(e))
}

/// The card writes of one installation.
#[derive(Debug, Clone)]
pub struct CardWrites {
    residents: ResidentServices,
    keys: CardKeys,
}

impl CardWrites {
    pub fn new(residents: ResidentServices, keys: CardKeys) -> CardWrites {
        CardWrites { residents, keys }
    }

    /// The key of card `fid`, for its issuance only (`cardap card-key`, the tests' emulated cards).
    pub fn card_key(&self, fid: &CardFid) -> [u8; 32] {
        self.keys.card_key(fid)
    }

    /// Decides `write` on card `fid` of `code` and answers the image the card is to commit, with cardap's MAC
    /// over the card's `challenge`. Appends nothing: [`CardWrites::record_card_state`] does, once the card
    /// confirms.
    pub async fn prepare_write(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        fid: &CardFid,
        challenge: &[u8],
        write: CardWrite,
    ) -> Result<PreparedWrite> {
        let permissions = match &write {
            CardWrite::InstallAps { business_ids: ids, .. } => {
                ids.iter().map(|id| Permission::ManageCardAp(code.clone(), id.clone())).collect()
            }
            CardWrite::RemoveAp(id) => vec![Permission::ManageCardAp(code.clone(), id.clone())],
            CardWrite::CreateLocalArea { .. } | CardWrite::Sync => vec![Permission::RegisterResidents(code.clone())],
        };
        authorize_all(ctx, &permissions)?;
        if challenge.is_empty() || challenge.len() > MAX_CHALLENGE {
            return refused(CardWriteError::BadChallenge);
        }
        let mut tx = Tx::new(self.residents.store().clone());
        let (loaded, _) = load_card(&mut tx, code, fid).await.map_err(registration)?;
        let with_standard_id = |business_id: BusinessId| {
            let standard_id =
                (business_id == BusinessId::LIBRARY).then(|| StandardId::new(code, self.residents.draw_standard_id()));
            ApInstall { business_id, standard_id }
        };
        let settings_stream = stream_of::<LocalSettings>(&local_settings::stream_key(code));
        let command = match &write {
            CardWrite::CreateLocalArea { issuance_consent } => {
                let settings =
                    tx.load::<LocalSettings, RegistrationError>(&settings_stream).await.map_err(registration)?;
                let presets = settings.state.settings.presets.clone();
                let offer = offer(&mut tx, code, &settings.state, presets.iter()).await.map_err(registration)?;
                Some(CardCommand::CreateLocalArea {
                    presets: presets.into_iter().map(with_standard_id).collect(),
                    offer,
                    consent: self.residents.consent_answer(ctx, *issuance_consent),
                })
            }
            CardWrite::InstallAps { business_ids: ids, issuance_consent } => {
                let settings =
                    tx.load::<LocalSettings, RegistrationError>(&settings_stream).await.map_err(registration)?;
                let offer = offer(&mut tx, code, &settings.state, ids.iter()).await.map_err(registration)?;
                Some(CardCommand::InstallAps {
                    aps: ids.iter().cloned().map(with_standard_id).collect(),
                    offer,
                    consent: self.residents.consent_answer(ctx, *issuance_consent),
                })
            }
            CardWrite::RemoveAp(id) => Some(CardCommand::RemoveAp { business_id: id.clone() }),
            CardWrite::Sync => None,
        };
        let version = loaded.version;
        let state = match command {
            Some(command) => {
                let events = Card::decide(&loaded.state, command).map_err(|e| registration(card_error(e)))?;
                after(loaded, &events).0
            }
            None => loaded.state,
        };
        let card = snapshot(state.registered, version).map_err(registration)?.card;
        if !card.local_area {
            return Err(registration(card_error(card::CardError::LocalAreaMissing)));
        }
        let image = AreaImage { municipality: code.clone(), base_version: version, aps: card.aps }
            .encode()
            .map_err(|e| CommandError::Domain(CardWriteError::BadImage(e.to_string())))?;
        let commit_mac = hmac::sign(&self.keys.key(fid), &commit_message(fid, challenge, &image)).as_ref().to_vec();
        Ok(PreparedWrite { image, commit_mac })
    }

    /// Checks the card's MAC over the image it holds and brings cardap's record and the card together (see the
    /// module comment): nothing, the events of an unrecorded write appended now, or "the card is outdated".
    /// `issuance_consent` is the resident's answer about AP `01`, for an image that installs it.
    pub async fn record_card_state(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        fid: &CardFid,
        proof: &CardStateProof,
        issuance_consent: Option<bool>,
    ) -> Result<(Reconciled, CardSnapshot, Option<Checkpoint>)> {
        authorize_all(ctx, &[Permission::RegisterResidents(code.clone())])?;
        if proof.nonce.is_empty() || proof.nonce.len() > MAX_CHALLENGE {
            return refused(CardWriteError::BadChallenge);
        }
        let message = state_message(fid, &proof.nonce, &proof.image);
        if hmac::verify(&self.keys.key(fid), &message, &proof.mac).is_err() {
            return refused(CardWriteError::BadConfirmation);
        }
        let image = match proof.image.as_slice() {
            [] => None,
            bytes => Some(
                AreaImage::decode(bytes).map_err(|e| CommandError::Domain(CardWriteError::BadImage(e.to_string())))?,
            ),
        };
        if image.as_ref().is_some_and(|i| i.municipality != *code) {
            return refused(CardWriteError::OtherMunicipality);
        }
        // A first look decides which permissions recording the card's APs needs.
        let current = self.residents.card(code, fid).await.map_err(registration)?;
        let Some(image) = image.filter(|i| i.base_version == current.version && !agrees(&current, i)) else {
            let outcome = match proof.image.is_empty() {
                true if !current.card.local_area => Reconciled::InAgreement,
                true => Reconciled::CardOutdated,
                false => {
                    let image = AreaImage::decode(&proof.image)
                        .map_err(|e| CommandError::Domain(CardWriteError::BadImage(e.to_string())))?;
                    if agrees(&current, &image) { Reconciled::InAgreement } else { Reconciled::CardOutdated }
                }
            };
            return Ok((outcome, current, None));
        };
        let mut permissions = vec![Permission::RegisterResidents(code.clone())];
        for id in changed_aps(&current.card.aps, &image.aps) {
            permissions.push(Permission::ManageCardAp(code.clone(), id));
        }
        let settings_stream = stream_of::<LocalSettings>(&local_settings::stream_key(code));
        let consent = self.residents.consent_answer(ctx, issuance_consent);
        let (image, settings_stream) = (&image, &settings_stream);
        let done = transact(self.residents.store(), ctx, &permissions, Some(code.clone()), |mut tx: Tx| async move {
            let (card, card_stream) = load_card(&mut tx, code, fid).await.map_err(registration)?;
            if card.version != image.base_version {
                // cardap moved on between the first look and now.
                let version = card.version;
                return Ok(((None, snapshot(card.state.registered, version).map_err(registration)?), tx));
            }
            let settings = tx.load::<LocalSettings, RegistrationError>(settings_stream).await.map_err(registration)?;
            let ids: Vec<BusinessId> = image.aps.keys().cloned().collect();
            let offer = offer(&mut tx, code, &settings.state, ids.iter()).await.map_err(registration)?;
            let Some(events) = roll_forward(&card.state, image, &offer, consent) else {
                let version = card.version;
                return Ok(((None, snapshot(card.state.registered, version).map_err(registration)?), tx));
            };
            for event in &events {
                if let CardEvent::ApInstalled { standard_id: Some(id), .. } = event {
                    let stream = stream_of::<StandardIdAllocation>(&card::allocation_stream_key(id));
                    let allocated = StandardIdAllocation::decide(
                        &false,
                        card::StandardIdCommand::Allocate { id: id.clone(), fid: fid.clone() },
                    )
                    .unwrap_or_default();
                    tx.append::<StandardIdAllocation>(&stream, 0, &allocated);
                }
            }
            tx.append::<Card>(&card_stream, card.version, &events);
            let (state, version) = after(card, &events);
            Ok(((Some(events), snapshot(state.registered, version).map_err(registration)?), tx))
        })
        .await?;
        match done.value {
            Some((Some(events), snapshot)) => Ok((Reconciled::Recorded(events), snapshot, done.checkpoint)),
            Some((None, snapshot)) => Ok((Reconciled::CardOutdated, snapshot, None)),
            // A retry of a command already applied: the card as it is now.
            None => Ok((Reconciled::InAgreement, self.residents.card(code, fid).await.map_err(registration)?, None)),
        }
    }
}

fn authorize_all(ctx: &CommandContext, permissions: &[Permission]) -> Result<()> {
    if let Some(actor) = &ctx.actor {
        for permission in permissions {
            authorize(actor, permission)?;
        }
    }
    Ok(())
}

fn agrees(current: &CardSnapshot, image: &AreaImage) -> bool {
    current.card.local_area && image.same_aps(&current.card.aps)
}

/// The APs that differ between cardap's record and the card.
fn changed_aps(
    recorded: &BTreeMap<BusinessId, Option<StandardId>>,
    card: &BTreeMap<BusinessId, Option<StandardId>>,
) -> Vec<BusinessId> {
    let mut ids: Vec<BusinessId> = recorded
        .iter()
        .filter(|(id, s)| card.get(*id) != Some(*s))
        .map(|(id, _)| id.clone())
        .chain(card.iter().filter(|(id, s)| recorded.get(*id) != Some(*s)).map(|(id, _)| id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The events that bring `state` to what `image` holds, each decided by the card's own rules; `None` when a rule
/// refuses one (e.g. an AP no longer permitted, or AP `01` without consent): cardap's record wins then.
fn roll_forward(
    state: &CardState,
    image: &AreaImage,
    offer: &card::ApOffer,
    consent: ConsentAnswer,
) -> Option<Vec<CardEvent>> {
    let registered = state.registered.as_ref()?;
    let mut commands = Vec::new();
    if !registered.local_area {
        commands.push(CardCommand::CreateLocalArea { presets: vec![], offer: offer.clone(), consent });
    }
    for (id, standard_id) in &registered.aps {
        if image.aps.get(id) != Some(standard_id) {
            commands.push(CardCommand::RemoveAp { business_id: id.clone() });
        }
    }
    let new: Vec<ApInstall> = image
        .aps
        .iter()
        .filter(|(id, s)| registered.aps.get(*id) != Some(*s))
        .map(|(id, s)| ApInstall { business_id: id.clone(), standard_id: s.clone() })
        .collect();
    if !new.is_empty() {
        commands.push(CardCommand::InstallAps { aps: new, offer: offer.clone(), consent });
    }
    let mut state = state.clone();
    let mut events = Vec::new();
    for command in commands {
        let decided = Card::decide(&state, command).ok()?;
        state = decided.iter().fold(state, Card::evolve);
        events.extend(decided);
    }
    Some(events)
}
