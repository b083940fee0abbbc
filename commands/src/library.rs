//! The library link (図書館システム, 手引き II 2; issue 11, point 4): a library system links a card's 標準ID to its
//! own user number (図書ID), looks it up, and unlinks it, so that one My Number card serves as the library card of
//! any municipality's library that linked it.
//!
//! Owns who may link (which business system is a library, and for which municipalities it acts), the standing of
//! a 標準ID (looked up from its allocation and its card, for the `LibraryLink` aggregate to decide on) and how a
//! link made with a reissued card's old 標準ID is found by the new one. The link's rules are the domain's
//! (`cardap_domain::library_link`); which 標準ID replaced which is the feeds' index's
//! (`cardap_projections::library_links`).
//!
//! - **A library system** is a business system, authenticated by its business server certificate over mutual
//!   TLS like its feed, whose field list (データの最小化) carries `standard_id`: the built-in library `02` by
//!   default, and a municipality's own library system registered with another 業務ID once the system
//!   administrator grants it `standard_id` (`PUT /api/v1/business-systems/{id}/feed-fields`, an event on its
//!   stream). It reads the 標準ID from the card's library AP (`02`), whatever its own 業務ID. A system may use
//!   only its own paths (`/library-links/{its 業務ID}/…`); anything else is [`LibraryError::NotFound`].
//! - **The municipalities it acts for** are those its shared-use list (共同利用業務設定) permits now: a library
//!   system serves the residents of those municipalities at its counters. It must permit at least one (a system
//!   permitted nowhere, or retired, is [`LibraryError::NotFound`], exactly as its feed ends); the card need not be
//!   of one of them: a card that city A issued is linked by city B's library (手引き II 2.2) once B's library is
//!   permitted for B.
//! - **A link needs a 標準ID currently assigned**: handed out to the library AP of a card that still carries it and
//!   is not abolished (in use or suspended). An unknown one is refused (`UnknownStandardId`), an abolished card's
//!   too (`StandardIdAbolished`). A lookup says whether the card is usable now (in use: not suspended, not
//!   abolished).
//! - **Reissue**: a link is never moved; the feeds' index tells the library the new 標準ID (`standard_id_replaced`)
//!   and resolves its link through the replacement, so a lookup (or an unlink) by the new 標準ID finds the link
//!   made with the old one — a link made with the new one itself comes first.
//! - **In the log**: a link's events carry no operator and no municipality in their metadata (an act of the library
//!   system, not of a municipality's clerk); the terminal names the business system (`business-system 05`). An
//!   `Idempotency-Key` makes a retried `PUT`/`DELETE` apply once.

use std::sync::Arc;

use cardap_domain::BusinessId;
use cardap_domain::business_system::BusinessSystem;
use cardap_domain::card::{self, Card, CardStatus, StandardId, StandardIdAllocation, StandardIdEvent};
use cardap_domain::feed_fields::FeedField;
use cardap_domain::library_link::{
    self, LibraryId, LibraryLink, LibraryLinkCommand, LibraryLinkError, StandardIdStanding,
};
use cardap_projections::{ReadModels, library_links};
use cardap_store::{EventStore, StoreError, StreamId};

use crate::QueryError;
use crate::authz::Permission;
use crate::business_systems::stream as system_stream;
use crate::context::CommandContext;
use crate::handler::{CommandError, CommandHandler};
use crate::ids::stream_of;

/// Why a link could not be made, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// Another system's path, a system that is not a library (or not in service), or no link.
    #[error("no such library link")]
    NotFound,
    /// The domain refused: the 標準ID is unknown or its card abolished.
    #[error(transparent)]
    Refused(LibraryLinkError),
    #[error(transparent)]
    Command(CommandError<LibraryLinkError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<CommandError<LibraryLinkError>> for LibraryError {
    fn from(e: CommandError<LibraryLinkError>) -> Self {
        match e {
            CommandError::Domain(LibraryLinkError::NotLinked) => LibraryError::NotFound,
            CommandError::Domain(d) => LibraryError::Refused(d),
            other => LibraryError::Command(other),
        }
    }
}

/// A link as a library system sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkView {
    pub business_id: BusinessId,
    /// The 標準ID asked for (read from the card at the counter).
    pub standard_id: StandardId,
    /// The 標準ID the link was made with: the same, or an earlier card's that this one's replaced on a reissue.
    pub linked_standard_id: StandardId,
    pub library_id: LibraryId,
    /// The status of the card carrying `standard_id`; `None` when no card carries it any more.
    pub card_status: Option<CardStatus>,
    /// The card may be used now: it carries `standard_id` and is in use (not suspended, not abolished).
    pub usable: bool,
    /// The link stream's version (the `ETag`).
    pub version: u64,
}

/// The library links over the event store and the feeds' index.
#[derive(Debug, Clone)]
pub struct Library {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    links: CommandHandler<LibraryLink>,
    systems: CommandHandler<BusinessSystem>,
    cards: CommandHandler<Card>,
}

/// The stream of a link.
fn link_stream(business_id: &BusinessId, standard_id: &StandardId) -> StreamId {
    stream_of::<LibraryLink>(&library_link::stream_key(business_id, standard_id))
}

impl Library {
    pub fn new(store: Arc<dyn EventStore>, read: ReadModels) -> Self {
        Library {
            links: CommandHandler::new(store.clone()),
            systems: CommandHandler::new(store.clone()),
            cards: CommandHandler::new(store.clone()),
            store,
            read,
        }
    }

    /// `business_id` when it is `caller` itself, a library system, in service and permitted somewhere.
    async fn library(&self, caller: &BusinessId, business_id: &str) -> Result<BusinessId, LibraryError> {
        let Ok(id) = BusinessId::parse(business_id) else { return Err(LibraryError::NotFound) };
        if id != *caller {
            return Err(LibraryError::NotFound);
        }
        let loaded = self.systems.load(&system_stream(&id)).await.map_err(|e| match e {
            CommandError::Store(s) => LibraryError::Store(s),
            other => LibraryError::Command(other.map_domain(|_| LibraryLinkError::NotLinked)),
        })?;
        let state = loaded.state;
        let library = state.feed_fields().contains(FeedField::StandardId);
        if !state.is_registered() || state.is_retired() || !library || state.permitted().is_empty() {
            return Err(LibraryError::NotFound);
        }
        Ok(id)
    }

    /// Where `standard_id` stands now, and the status of the card carrying it.
    async fn standing(
        &self,
        standard_id: &StandardId,
    ) -> Result<(StandardIdStanding, Option<CardStatus>), LibraryError> {
        let allocation = stream_of::<StandardIdAllocation>(&card::allocation_stream_key(standard_id));
        let Some(first) = self.store.read_stream(&allocation, 1).await?.into_iter().next() else {
            return Ok((StandardIdStanding::Unknown, None));
        };
        let StandardIdEvent::Allocated { fid, .. } =
            first.decode::<StandardIdEvent>().map_err(|e| LibraryError::Command(CommandError::Decode(e)))?;
        let loaded = self.cards.load(&stream_of::<Card>(&card::stream_key(&fid))).await.map_err(|e| match e {
            CommandError::Store(s) => LibraryError::Store(s),
            other => LibraryError::Command(other.map_domain(|_| LibraryLinkError::NotLinked)),
        })?;
        let Some(card) = loaded.state.registered else { return Ok((StandardIdStanding::Unknown, None)) };
        if card.aps.get(&BusinessId::LIBRARY) != Some(&Some(standard_id.clone())) {
            return Ok((StandardIdStanding::Unknown, None));
        }
        let standing = match card.status {
            CardStatus::Abolished => StandardIdStanding::Abolished,
            CardStatus::InUse | CardStatus::Suspended => StandardIdStanding::Assigned,
        };
        Ok((standing, Some(card.status)))
    }

    /// The link `standard_id` finds for `id`: made with it, else made with a 標準ID it replaced on a reissue.
    async fn find(
        &self,
        id: &BusinessId,
        standard_id: &StandardId,
    ) -> Result<Option<(StandardId, LibraryId, u64)>, LibraryError> {
        let direct = self.links.load(&link_stream(id, standard_id)).await?;
        if let Some(linked) = direct.state.linked {
            return Ok(Some((standard_id.clone(), linked.library_id, direct.version)));
        }
        for old in library_links::linked_through(self.read.pool(), id, standard_id).await? {
            let Ok(old) = StandardId::parse(&old) else { continue };
            let loaded = self.links.load(&link_stream(id, &old)).await?;
            if let Some(linked) = loaded.state.linked {
                return Ok(Some((old, linked.library_id, loaded.version)));
            }
        }
        Ok(None)
    }

    /// The view of a link found for `standard_id`.
    async fn view(
        &self,
        id: BusinessId,
        standard_id: StandardId,
        (linked_standard_id, library_id, version): (StandardId, LibraryId, u64),
    ) -> Result<LinkView, LibraryError> {
        let (_, card_status) = self.standing(&standard_id).await?;
        Ok(LinkView {
            business_id: id,
            standard_id,
            linked_standard_id,
            library_id,
            usable: card_status == Some(CardStatus::InUse),
            card_status,
            version,
        })
    }

    /// 関連付け: library system `caller` links `standard_id` to its `library_id` (replacing another 図書ID it gave
    /// the same 標準ID; the same one again changes nothing).
    pub async fn link(
        &self,
        ctx: &CommandContext,
        caller: &BusinessId,
        business_id: &str,
        standard_id: StandardId,
        library_id: LibraryId,
    ) -> Result<LinkView, LibraryError> {
        let id = self.library(caller, business_id).await?;
        let (standing, _) = self.standing(&standard_id).await?;
        let command = LibraryLinkCommand::Link {
            business_id: id.clone(),
            standard_id: standard_id.clone(),
            library_id: library_id.clone(),
            standing,
        };
        // A business system is no operator: its identity is its certificate, checked above (the permission is
        // not consulted for a context without an operator).
        let done = self
            .links
            .execute(ctx, &Permission::ViewBusinessSystems, &link_stream(&id, &standard_id), None, None, command)
            .await?;
        self.view(id, standard_id.clone(), (standard_id, library_id, done.version)).await
    }

    /// Looks up the 図書ID `standard_id` is linked to by library system `caller`, and whether the card is usable.
    pub async fn lookup(
        &self,
        caller: &BusinessId,
        business_id: &str,
        standard_id: StandardId,
    ) -> Result<LinkView, LibraryError> {
        let id = self.library(caller, business_id).await?;
        let found = self.find(&id, &standard_id).await?.ok_or(LibraryError::NotFound)?;
        self.view(id, standard_id, found).await
    }

    /// 関連付けの解除: removes the link `standard_id` finds (made with it, or with the 標準ID it replaced).
    pub async fn unlink(
        &self,
        ctx: &CommandContext,
        caller: &BusinessId,
        business_id: &str,
        standard_id: StandardId,
    ) -> Result<(), LibraryError> {
        let id = self.library(caller, business_id).await?;
        let (linked, _, _) = self.find(&id, &standard_id).await?.ok_or(LibraryError::NotFound)?;
        self.links
            .execute(
                ctx,
                &Permission::ViewBusinessSystems,
                &link_stream(&id, &linked),
                None,
                None,
                LibraryLinkCommand::Unlink,
            )
            .await?;
        Ok(())
    }
}
