//! `cargo bench -p keywarden-policyd --bench records [-- --events N]`: the records benchmark.
//!
//! 1. **Generate** a large property's history (a few hundred users, 1000 keys, groups, schedules,
//!    reasons; `--events` audit events, 10,000,000 by default, over ten years) by driving the
//!    real sans-IO [`Core`] with a simulated clock and persisting every effect through the real
//!    [`Store::commit`] / [`Store::apply_admin`], exactly as the daemon's driver does: the hash
//!    chain, the signed checkpoints every 64 entries, loans and alarms are genuine. The only
//!    shortcut: `Effect::CheckPin` is answered without Argon2 (the simulated person types the
//!    right PIN or a wrong one and the bench calls `handle_pin_checked` directly). The database
//!    is built on tmpfs (`/dev/shm`, where `synchronous=FULL`'s fsyncs cost nothing), exported
//!    with the real [`Store::export_audit`], then moved to the cache directory
//!    (`$XDG_CACHE_HOME/keywarden/bench` or `~/.cache/keywarden/bench`, or `--cache DIR`),
//!    keyed by a hash of the generator's inputs (event count, seed, this file, the schema), so
//!    a re-run reuses it.
//! 2. **Size**: database bytes per event, by table and index (SQLite's `dbstat`).
//! 3. **Reports**: each report as policyd produces it (`reports::run`: statement, CSV
//!    formatting, written to /dev/null) next to the same statement with the same parameters run
//!    by `sqlite3 -csv` on the same file ([`report_cases`]).
//! 4. **Verification**: `sha256sum FILE` and `keywarden audit verify FILE --key HEX` (the
//!    release CLI, built first) on the same export, warm in the page cache, alternated, three
//!    runs each; medians, MB/s and the ratio.
//!
//! Options: `--events N`, `--seed N`, `--cache DIR`, `--tmp DIR` (where to generate),
//! `--runs N`, `--regenerate`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use keywarden_policyd::model::UnixTime;
use keywarden_policyd::reports::{self, Format, Query, ReportKind};
use sha2::{Digest as _, Sha256};

type BoxError = Box<dyn std::error::Error>;

/// Bump when the generator's behaviour changes, so cached databases are rebuilt.
const GENERATOR_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------
// Reports: the place where the reports module plugs in.
// ---------------------------------------------------------------------------------------------

/// One report to time: the query as `keywarden report` sends it to policyd.
pub struct ReportCase {
    /// Shown in the table.
    pub name: String,
    /// The report, its filters and range (format CSV).
    pub query: Query,
}

/// A parameter value for the `sqlite3` CLI.
#[derive(Debug, Clone)]
pub enum Param {
    /// An integer (times in Unix milliseconds, limits).
    Int(i64),
    /// Text.
    Text(String),
    /// SQL NULL (no filter).
    Null,
}

/// The reports timed: every kind, over all ten years, plus the unit report and the denials over
/// one year (the usual "last year" question). `span` is the history's (first, last) event time.
fn report_cases(span: (UnixTime, UnixTime)) -> Vec<ReportCase> {
    let case = |name: &str, kind: ReportKind, edit: &dyn Fn(&mut Query)| {
        let mut query = Query::new(kind);
        query.format = Format::Csv;
        edit(&mut query);
        ReportCase {
            name: name.to_owned(),
            query,
        }
    };
    let last_year = |q: &mut Query| {
        q.from_ms = Some((span.1 - 365 * 86_400) * 1000);
        q.to_ms = Some(span.1 * 1000 + 1);
    };
    vec![
        case("keys-out", ReportKind::KeysOut, &|_| {}),
        case("key 1207 (unit report)", ReportKind::Key, &|q| {
            q.key = Some("1207".into())
        }),
        case("key 1207, last year", ReportKind::Key, &|q| {
            q.key = Some("1207".into());
            last_year(q);
        }),
        case("user maintenance07", ReportKind::User, &|q| {
            q.user = Some("maintenance07".into())
        }),
        case("reasons (summary)", ReportKind::Reasons, &|_| {}),
        case("reason MAINT", ReportKind::Reason, &|q| {
            q.reason = Some("MAINT".into())
        }),
        case("overdue", ReportKind::Overdue, &|_| {}),
        case("alarms", ReportKind::Alarms, &|_| {}),
        case("denials", ReportKind::Denials, &|_| {}),
        case("denials, last year", ReportKind::Denials, &|q| last_year(q)),
    ]
}

/// The named parameters policyd binds for `query` (the reports adapter's rules: no range = all
/// time, no filter = NULL, no limit = -1).
fn sql_params(query: &Query, now_ms: i64) -> Vec<(&'static str, Param)> {
    let text = |v: &Option<String>| v.clone().map_or(Param::Null, Param::Text);
    vec![
        (":from_ms", Param::Int(query.from_ms.unwrap_or(0))),
        (":to_ms", Param::Int(query.to_ms.unwrap_or(i64::MAX))),
        (":key", text(&query.key)),
        (":user", text(&query.user)),
        (":reason", text(&query.reason)),
        (":now_ms", Param::Int(now_ms)),
        (
            ":limit",
            Param::Int(query.limit.map_or(-1, |n| n.try_into().unwrap_or(i64::MAX))),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------

struct Args {
    events: u64,
    seed: u64,
    cache: PathBuf,
    tmp: PathBuf,
    runs: usize,
    regenerate: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let cache_root = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let mut args = Args {
        events: 10_000_000,
        seed: 1,
        cache: cache_root.join("keywarden").join("bench"),
        tmp: if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        },
        runs: 3,
        regenerate: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => {} // cargo bench passes this
            "--events" => args.events = value("--events")?.replace('_', "").parse()?,
            "--seed" => args.seed = value("--seed")?.parse()?,
            "--cache" => args.cache = PathBuf::from(value("--cache")?),
            "--tmp" => args.tmp = PathBuf::from(value("--tmp")?),
            "--runs" => args.runs = value("--runs")?.parse::<usize>()?.max(1),
            "--regenerate" => args.regenerate = true,
            other => return Err(format!("unknown argument {other:?} (see the file's docs)").into()),
        }
    }
    if args.events < 1000 {
        return Err("--events must be at least 1000".into());
    }
    Ok(args)
}

mod generate;

use generate::{date_of, generate};

fn main() {
    if let Err(e) = run() {
        eprintln!("records bench: {e}");
        std::process::exit(1);
    }
}

/// A table row: what, figure, comparison.
struct Row(String, String, String);

fn run() -> Result<(), BoxError> {
    let args = parse_args()?;
    let key = cache_key(&args);
    let dir = args.cache.join(&key);
    let db = dir.join("keywarden.db");
    let export = dir.join("audit.jsonl");
    let meta = dir.join("meta.txt");
    if args.regenerate || !meta.exists() {
        generate(&args, &dir)?;
    } else {
        println!("using the cached database in {}", dir.display());
    }
    let meta_text = fs::read_to_string(&meta)?;
    let field = |name: &str| -> Result<String, BoxError> {
        meta_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: no {name}", meta.display()).into())
    };
    let events: u64 = field("events")?.parse()?;
    let device_key = field("device_key")?;
    let span = (field("first_at")?.parse()?, field("last_at")?.parse()?);
    let mut rows = vec![Row(
        "audit events".into(),
        events.to_string(),
        format!("{} .. {}", date_of(span.0), date_of(span.1)),
    )];
    if let Ok(rate) = field("generation") {
        rows.push(Row("generation".into(), rate, String::new()));
    }

    size_rows(&db, events, &mut rows)?;
    report_rows(
        &db,
        &report_cases(span),
        span.1 * 1000,
        args.runs,
        &mut rows,
    )?;
    verify_rows(&export, &device_key, args.runs, &mut rows)?;

    println!();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for Row(a, b, c) in &rows {
        println!("{a:<w0$}  {b:>w1$}  {c}");
    }
    Ok(())
}

/// The cache key: everything the generated files depend on.
fn cache_key(args: &Args) -> String {
    let mut h = Sha256::new();
    h.update(GENERATOR_VERSION.to_be_bytes());
    h.update(args.events.to_be_bytes());
    h.update(args.seed.to_be_bytes());
    h.update(include_str!("generate.rs"));
    h.update(include_str!("../../src/store/migrations.rs"));
    for schema in [
        include_str!("../../src/store/schema/v2-reports.sql"),
        include_str!("../../src/store/schema/v3-outbox.sql"),
        include_str!("../../src/store/schema/v4-offsite.sql"),
    ] {
        h.update(schema);
    }
    let digest = hex::encode(h.finalize());
    format!("{}-events-{}", &digest[..16], args.events)
}

// ---------------------------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------------------------

fn size_rows(db: &Path, events: u64, rows: &mut Vec<Row>) -> Result<(), BoxError> {
    let file = fs::metadata(db)?.len();
    let per = |bytes: u64| format!("{:.1} B/event", bytes as f64 / events as f64);
    rows.push(Row(
        "database file".into(),
        format!("{:.1} MB", file as f64 / 1e6),
        per(file),
    ));
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare(
        "SELECT d.name, coalesce(m.type, 'table'), coalesce(m.tbl_name, d.name), sum(d.pgsize)
         FROM dbstat AS d LEFT JOIN sqlite_schema AS m ON m.name = d.name
         GROUP BY d.name ORDER BY sum(d.pgsize) DESC",
    )?;
    let parts: Vec<(String, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut tables = 0u64;
    let mut indexes = 0u64;
    for (name, kind, table, bytes) in &parts {
        let bytes = *bytes as u64;
        if kind == "index" {
            indexes += bytes;
        } else {
            tables += bytes;
        }
        if bytes * 100 >= file {
            rows.push(Row(
                format!(
                    "  {kind} {name}{}",
                    if kind == "index" {
                        format!(" on {table}")
                    } else {
                        String::new()
                    }
                ),
                format!("{:.1} MB", bytes as f64 / 1e6),
                per(bytes),
            ));
        }
    }
    rows.push(Row(
        "  all tables (no indexes)".into(),
        format!("{:.1} MB", tables as f64 / 1e6),
        per(tables),
    ));
    rows.push(Row(
        "  all indexes".into(),
        format!("{:.1} MB", indexes as f64 / 1e6),
        per(indexes),
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Each report as policyd produces it (`reports::run_to_file`, what the service's `Report`
/// runs: its own read-only connection, the statement, every row formatted as CSV and written
/// through a 64 KiB buffer to /dev/null) next to `sqlite3 -readonly
/// -csv` running the same statement with the same parameters, output to /dev/null. Alternated,
/// `runs` times each, medians. What this leaves out on our side is the D-Bus call itself (one
/// round trip and a file descriptor), a constant of about a millisecond.
fn report_rows(
    db: &Path,
    cases: &[ReportCase],
    now_ms: i64,
    runs: usize,
    rows: &mut Vec<Row>,
) -> Result<(), BoxError> {
    let sqlite3 = which("sqlite3").ok_or("the sqlite3 CLI is missing (apt install sqlite3)")?;
    // Warm the page cache.
    fs::read(db).map(drop)?;
    for case in cases {
        let sql = reports::sql(case.query.kind);
        let mut ours = Vec::new();
        let mut cli = Vec::new();
        let mut rows_seen = 0u64;
        for _ in 0..runs {
            let t0 = Instant::now();
            let sink = fs::OpenOptions::new().write(true).open("/dev/null")?;
            rows_seen = reports::run_to_file(db, &case.query, now_ms, &TimeZone::UTC, sink)?;
            ours.push(t0.elapsed());

            let mut script = String::new();
            for (name, value) in sql_params(&case.query, now_ms) {
                match value {
                    Param::Int(v) => script.push_str(&format!(".parameter set {name} {v}\n")),
                    Param::Null => script.push_str(&format!(".parameter set {name} NULL\n")),
                    Param::Text(v) => script.push_str(&format!(
                        ".parameter set {name} \"'{}'\"\n",
                        v.replace('\'', "''")
                    )),
                }
            }
            script.push_str(sql.trim().trim_end_matches(';'));
            script.push_str(";\n");
            let t0 = Instant::now();
            let mut child = Command::new(&sqlite3)
                .args(["-readonly", "-csv", "-header"])
                .arg(db)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            child
                .stdin
                .take()
                .ok_or("sqlite3 stdin")?
                .write_all(script.as_bytes())?;
            let output = child.wait_with_output()?;
            cli.push(t0.elapsed());
            if !output.status.success() || !output.stderr.is_empty() {
                return Err(format!(
                    "sqlite3 failed on report {}: {}",
                    case.name,
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
        }
        let (ours, cli) = (median(ours), median(cli));
        rows.push(Row(
            format!("report {} ({rows_seen} rows)", case.name),
            format!("{:.3} s", ours.as_secs_f64()),
            format!(
                "sqlite3 CLI {:.3} s, ratio {:.2}x (goal <= 1.2x)",
                cli.as_secs_f64(),
                ours.as_secs_f64() / cli.as_secs_f64()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The release `keywarden` CLI, built now if needed.
fn keywarden_cli() -> Result<PathBuf, BoxError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "keywarden",
            "--bin",
            "keywarden",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .status()?;
    if !status.success() {
        return Err("cargo build --release -p keywarden failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let cli = target.join("release").join("keywarden");
    if !cli.is_file() {
        return Err(format!("{} was not built", cli.display()).into());
    }
    Ok(cli)
}

fn timed(cmd: &mut Command) -> Result<Duration, BoxError> {
    let t0 = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    let elapsed = t0.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(elapsed)
}

fn verify_rows(export: &Path, key: &str, runs: usize, rows: &mut Vec<Row>) -> Result<(), BoxError> {
    let cli = keywarden_cli()?;
    let sha256sum = which("sha256sum").ok_or("sha256sum is missing (coreutils)")?;
    let bytes = fs::metadata(export)?.len();
    let mb = bytes as f64 / 1e6;
    println!(
        "verifying {} ({mb:.1} MB), {runs} runs each",
        export.display()
    );
    // Warm the page cache, untimed.
    timed(Command::new(&sha256sum).arg(export))?;
    let (mut sums, mut verifies) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        sums.push(timed(Command::new(&sha256sum).arg(export))?);
        verifies.push(timed(
            Command::new(&cli)
                .args(["audit", "verify"])
                .arg(export)
                .args(["--key", key]),
        )?);
    }
    let (sum, verify) = (median(sums), median(verifies));
    let rate = |d: Duration| mb / d.as_secs_f64();
    rows.push(Row(
        "export file".into(),
        format!("{mb:.1} MB"),
        String::new(),
    ));
    rows.push(Row(
        "sha256sum".into(),
        format!("{:.0} MB/s", rate(sum)),
        format!("{:.2} s", sum.as_secs_f64()),
    ));
    rows.push(Row(
        "keywarden audit verify".into(),
        format!("{:.0} MB/s", rate(verify)),
        format!(
            "{:.2} s, {:.2}x sha256sum (goal >= 0.8x)",
            verify.as_secs_f64(),
            rate(verify) / rate(sum)
        ),
    ));
    Ok(())
}
