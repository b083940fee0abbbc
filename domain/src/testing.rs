//! Given/when/then for any aggregate: `given::<Municipality>([events]).when(command).then([events])`.
//!
//! Test-only. `then` also replays the new events through `evolve` and through encode/decode, so every
//! decision test checks that its events fold and survive storage.

use crate::{Aggregate, DomainEvent};

pub(crate) fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let history: Vec<A::Event> = history.into_iter().collect();
    Given { state: A::fold(&history) }
}

pub(crate) struct Given<A: Aggregate> {
    state: A::State,
}

impl<A: Aggregate> Given<A> {
    pub(crate) fn when(self, command: A::Command) -> Then<A> {
        let result = A::decide(&self.state, command);
        Then { state: self.state, result }
    }
}

pub(crate) struct Then<A: Aggregate> {
    state: A::State,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq,
{
    /// Asserts the decision and returns the state after the new events.
    #[track_caller]
    pub(crate) fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A::State {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        assert_eq!(self.result, Ok(expected.clone()));
        for event in &expected {
            let decoded = A::Event::decode(event.event_type(), event.event_version(), &event.encode());
            assert_eq!(decoded.as_ref(), Ok(event), "event does not survive encode/decode");
        }
        expected.iter().fold(self.state, A::evolve)
    }

    #[track_caller]
    pub(crate) fn then_err(self, expected: A::Error) {
        assert_eq!(self.result, Err(expected));
    }
}
