//! Typed aggregate ids to stream ids. Every key passed here comes from a parsed domain value, so the conversion
//! cannot fail ([`StreamId::of`]) and no caller handles an error that cannot happen.

use cardap_domain::Aggregate;
use cardap_store::StreamId;

/// The stream of one instance of `A`, keyed by the string form of a parsed id.
pub fn stream_of<A: Aggregate>(key: &str) -> StreamId {
    StreamId::of(A::STREAM_TYPE, key)
}
