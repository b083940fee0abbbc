//! Rebuilds the store when a migration is added, changed or removed: `sqlx::migrate!` embeds `../migrations` at
//! compile time, and Cargo does not otherwise notice a new file there (a build would run the old set).

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
