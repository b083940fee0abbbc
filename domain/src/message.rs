//! How a refusal speaks to the clerk: every domain error says itself in Japanese ([`Localized::message_ja`]) and in
//! English (its `Display`), through this one trait, so the edge turns any of them into its answer the same way.

/// A refusal with a message for the clerk at the counter.
pub trait Localized: std::fmt::Display {
    /// The message in Japanese (the default language of the answers).
    fn message_ja(&self) -> String;

    /// The message in English.
    fn message_en(&self) -> String {
        self.to_string()
    }
}

impl<T: Localized + ?Sized> Localized for &T {
    fn message_ja(&self) -> String {
        (**self).message_ja()
    }

    fn message_en(&self) -> String {
        (**self).message_en()
    }
}
