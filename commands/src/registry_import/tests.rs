//! The pipeline's scheduling, with a stand-in for the decision of a batch (whose own tests run against real
//! stores, end to end) that takes as long as a test says, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardap_domain::contact::Sex;
use cardap_domain::registry::FullName;
use cardap_domain::resident::EraDate;
use tokio::time::Instant;

use super::*;

type Input = ImportInput<&'static str, &'static str>;
type Outcome = BatchOutcome<&'static str, &'static str>;

fn read(row: u64, key: &str) -> ImportRow<&'static str> {
    let facts = RegistryFacts {
        name: FullName::parse("山田 太郎").unwrap(),
        kana: None,
        birth_date: EraDate::parse("3640107").unwrap(),
        sex: Sex::Male,
        postal_code: None,
        address: None,
    };
    ImportRow::Read(RegistryRow { row, key: RegistryKey::parse(key).unwrap(), facts })
}

/// The stand-in decision's answer.
type Deciding = std::pin::Pin<Box<dyn Future<Output = Result<Vec<Decided>, BatchError>>>>;

/// When each batch (named by its first row) started and ended.
type Log = Arc<Mutex<Vec<(u64, Instant, Instant)>>>;

/// A decision that takes `took(first row)`, fails the batches `fails` names, and otherwise answers every row
/// with `outcome(row)`.
fn decide(
    log: &Log,
    took: impl Fn(u64) -> u64 + Copy + 'static,
    fails: impl Fn(u64) -> bool + Copy + 'static,
    outcome: impl Fn(u64) -> RowOutcome + Copy + 'static,
) -> impl Fn(Vec<RegistryRow>) -> Deciding {
    let log = log.clone();
    move |rows: Vec<RegistryRow>| {
        let log = log.clone();
        Box::pin(async move {
            let first = rows.first().map_or(0, |r| r.row);
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(took(first))).await;
            log.lock().unwrap().push((first, start, Instant::now()));
            if fails(first) {
                return Err(BatchError::Command(CommandError::Contended));
            }
            Ok(rows.into_iter().map(|r| (r.row, r.key, outcome(r.row))).collect())
        })
    }
}

/// Runs the pipeline on `inputs` (the source staying open unless `close`), collecting every outcome.
async fn import(
    inputs: Vec<Input>,
    close: bool,
    decide: impl Fn(Vec<RegistryRow>) -> Deciding,
) -> (ImportTotals, Vec<Outcome>, Option<mpsc::Sender<Input>>) {
    let (input_tx, input_rx) = mpsc::channel(inputs.len() + 1);
    for input in inputs {
        input_tx.send(input).await.unwrap();
    }
    let (output_tx, mut output_rx) = mpsc::channel(1);
    let source = (!close).then_some(input_tx);
    let collect = async {
        let mut outcomes = vec![];
        while let Some(o) = output_rx.recv().await {
            outcomes.push(o);
        }
        outcomes
    };
    let (totals, outcomes) = ends(async { tokio::join!(run(input_rx, output_tx, decide), collect) }).await;
    (totals, outcomes, source)
}

/// `f`'s answer; a pipeline that never ends fails the test instead of hanging it (on paused time the hour
/// passes as soon as every task waits).
async fn ends<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3600), f).await.expect("the import ended")
}

fn first_rows(outcomes: &[Outcome]) -> Vec<u64> {
    outcomes.iter().filter_map(|o| o.rows.first().map(|(row, _)| *row)).collect()
}

fn entry(log: &Log, first: u64) -> (Instant, Instant) {
    log.lock().unwrap().iter().find(|(f, ..)| *f == first).map(|(_, s, e)| (*s, *e)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_batch_sharing_a_key_with_a_running_one_waits_for_it_and_others_do_not() {
    let log = Log::default();
    // Batch 2 is slow and writes keys 1 and 2; batch 4 (key 3) is free to run beside it; batch 5 (key 2) is
    // quick but must not overtake batch 2.
    let took = |first| match first {
        2 => 100,
        4 => 10,
        _ => 1,
    };
    let inputs = vec![
        ImportInput::Batch(vec![read(2, "1"), read(3, "2")]),
        ImportInput::Batch(vec![read(4, "3")]),
        ImportInput::Batch(vec![read(5, "2")]),
    ];

    let (totals, outcomes, _) = import(inputs, true, decide(&log, took, |_| false, |_| RowOutcome::Imported)).await;

    let (a, b, c) = (entry(&log, 2), entry(&log, 4), entry(&log, 5));
    assert!(c.0 >= a.1, "the batch sharing key 2 started only once the first had ended");
    assert!(b.0 < a.1, "a batch with no key in common ran beside it");
    assert_eq!(first_rows(&outcomes), [2, 4, 5], "outcomes in file order");
    assert_eq!(totals.counts, ImportCounts { rows: 4, imported: 4, ..ImportCounts::default() });
    assert!(!totals.aborted && !totals.abandoned);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_stops_the_import_and_closes_the_source() {
    let log = Log::default();
    let inputs: Vec<Input> = (2..12).map(|row| ImportInput::Batch(vec![read(row, &row.to_string())])).collect();

    let (totals, outcomes, source) =
        import(inputs, false, decide(&log, |_| 10, |first| first == 3, |_| RowOutcome::Imported)).await;

    assert!(totals.aborted);
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.failure.as_ref()).collect();
    assert!(
        matches!(failed[..], [ImportFailure::Batch { first: 3, last: 3, error: BatchError::Command(_) }]),
        "{failed:?}"
    );
    let started: Vec<u64> = log.lock().unwrap().iter().map(|(f, ..)| *f).collect();
    assert!(!started.contains(&(3 + IN_FLIGHT as u64 + 1)), "no batch starts after the failure: {started:?}");
    assert_eq!(totals.counts.rows, (started.len() - 1) as u64, "only the batches that went through count");
    assert!(source.unwrap().is_closed(), "the source is told to stop");
}

#[tokio::test(start_paused = true)]
async fn a_failed_source_is_the_last_outcome() {
    let log = Log::default();
    let inputs = vec![
        ImportInput::Batch(vec![read(2, "1")]),
        ImportInput::Failed("cut off"),
        ImportInput::Batch(vec![read(3, "2")]),
    ];

    let (totals, outcomes, _) = import(inputs, false, decide(&log, |_| 1, |_| false, |_| RowOutcome::Imported)).await;

    assert!(totals.aborted);
    assert_eq!(outcomes.len(), 2);
    assert!(matches!(outcomes[1].failure, Some(ImportFailure::Source("cut off"))));
    assert_eq!(log.lock().unwrap().len(), 1, "nothing after the failure is imported");
}

#[tokio::test(start_paused = true)]
async fn rows_are_counted_by_outcome_and_reported_in_file_order_with_the_unread_ones() {
    let log = Log::default();
    let outcome = |row| match row {
        2 | 7 => RowOutcome::Imported,
        4 => RowOutcome::Changed(vec!["name"]),
        5 => RowOutcome::Unchanged,
        _ => RowOutcome::Refused(RegistryError::Erased),
    };
    let inputs = vec![
        ImportInput::Batch(vec![
            read(2, "1"),
            ImportRow::Unread { row: 3, why: "bad date" },
            read(4, "2"),
            read(5, "3"),
            read(6, "4"),
        ]),
        ImportInput::Batch(vec![read(7, "5")]),
    ];

    let (totals, outcomes, _) = import(inputs, true, decide(&log, |_| 1, |_| false, outcome)).await;

    assert_eq!(
        outcomes[0].counts,
        ImportCounts { rows: 5, imported: 1, changed: 1, unchanged: 1, errors: 2 },
        "an unread row and a refused one are errors"
    );
    let rows: Vec<u64> = outcomes[0].rows.iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, [2, 3, 4, 5, 6]);
    assert!(matches!(outcomes[0].rows[1].1, RowReport::Unread("bad date")));
    assert_eq!(totals.counts, ImportCounts { rows: 6, imported: 2, changed: 1, unchanged: 1, errors: 2 });
    assert!(!totals.aborted);
}

#[tokio::test(start_paused = true)]
async fn the_import_stops_when_its_outcomes_are_no_longer_read() {
    let log = Log::default();
    let (input_tx, input_rx) = mpsc::channel(16);
    for row in 2..12 {
        input_tx.send(ImportInput::Batch(vec![read(row, &row.to_string())])).await.unwrap();
    }
    let (output_tx, mut output_rx) = mpsc::channel::<Outcome>(1);
    let reader = async move {
        // The client reads one batch's report and goes away.
        output_rx.recv().await;
    };

    let decide = decide(&log, |_| 10, |_| false, |_| RowOutcome::Imported);
    let (totals, ()) = ends(async { tokio::join!(run(input_rx, output_tx, decide), reader) }).await;

    assert!(totals.abandoned);
    assert!(log.lock().unwrap().len() < 10, "the rest of the file is not imported");
    assert!(input_tx.is_closed(), "the source is told to stop");
}

#[tokio::test(start_paused = true)]
async fn an_import_whose_guard_says_stop_ends_with_its_reason_and_closes_the_source() {
    let log = Log::default();
    // A trickling upload: one batch, then the source stays open and sends nothing.
    let (input_tx, input_rx) = mpsc::channel(4);
    input_tx.send(ImportInput::Batch(vec![read(2, "1")])).await.unwrap();
    let (output_tx, mut output_rx) = mpsc::channel::<Outcome>(1);
    let collect = async {
        let mut outcomes = vec![];
        while let Some(o) = output_rx.recv().await {
            outcomes.push(o);
        }
        outcomes
    };
    // The session ends after the third check.
    let checks = Arc::new(Mutex::new(0));
    let counted = checks.clone();
    let guard = Guard {
        every: Duration::from_secs(2),
        check: move || {
            let counted = counted.clone();
            async move {
                let mut n = counted.lock().unwrap();
                *n += 1;
                (*n >= 3).then_some("session ended")
            }
        },
    };
    let (guarded_tx, guarded_rx) = mpsc::channel(1);
    let decide = decide(&log, |_| 1, |_| false, |_| RowOutcome::Imported);
    let started = Instant::now();

    let ((), totals, outcomes) =
        ends(async { tokio::join!(guarded(input_rx, guarded_tx, guard), run(guarded_rx, output_tx, decide), collect) })
            .await;

    assert!(totals.aborted);
    assert_eq!(totals.counts.imported, 1, "the batch before the end was imported");
    assert!(matches!(outcomes.last().unwrap().failure, Some(ImportFailure::Source("session ended"))));
    assert_eq!(*checks.lock().unwrap(), 3);
    assert!(started.elapsed() <= Duration::from_secs(7), "stopped at the third check: {:?}", started.elapsed());
    assert!(input_tx.is_closed(), "the source is told to stop");
}
