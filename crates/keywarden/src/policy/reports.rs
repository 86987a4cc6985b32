//! `keywarden report ...`: the service writes the report straight to this command's standard
//! output (its file descriptor is passed over the bus), so a large report never passes through
//! the CLI's memory.

use std::io::Write;
use std::os::fd::AsFd;

use clap::{Args, Subcommand};
use keywarden_dbus::policy::{options, ReportFormat, ReportKind};
use zbus::zvariant::Fd;

use super::{one_of, Ctx, OptionMap};
use crate::error::{call, io, Error};
use crate::times::parse_time_local;

/// Reports over the records.
#[derive(Debug, Subcommand)]
pub enum Report {
    /// Every key out now: holder, since when, reason, due, overdue.
    KeysOut(ReportOpts),
    /// The unit report: every grant, removal, return, denial and alarm of one key, with who and
    /// why ("who entered my home and why").
    Key {
        /// The key's label.
        label: String,
        #[command(flatten)]
        opts: ReportOpts,
    },
    /// Everything one person did at the cabinet.
    User {
        /// The login name.
        login: String,
        #[command(flatten)]
        opts: ReportOpts,
    },
    /// Checkouts per reason code; with CODE, every checkout for that reason and its return.
    Reason {
        /// A reason code.
        code: Option<String>,
        #[command(flatten)]
        opts: ReportOpts,
    },
    /// Every key that went overdue: holder, due, returned when and by whom, minutes late.
    Overdue(ReportOpts),
    /// Every alarm raised, with when it cleared.
    Alarms(ReportOpts),
    /// Every refused request.
    Denials(ReportOpts),
}

/// Range, filters, format and limit, common to every report.
#[derive(Debug, Args)]
pub struct ReportOpts {
    /// From this time (inclusive); default: the beginning.
    #[arg(long, value_name = "TIME", value_parser = parse_time_local)]
    from: Option<i64>,
    /// Until this time (exclusive); default: now and on.
    #[arg(long, value_name = "TIME", value_parser = parse_time_local)]
    to: Option<i64>,
    /// Only this key (label).
    #[arg(long, value_name = "LABEL")]
    key: Option<String>,
    /// Only this person (login name).
    #[arg(long, value_name = "LOGIN")]
    user: Option<String>,
    /// Only this reason code.
    #[arg(long, value_name = "CODE")]
    reason: Option<String>,
    /// Output format: table (aligned, local times), csv (RFC 4180) or json (an array, one
    /// object per line); `--json` means json.
    #[arg(long, value_parser = one_of(ReportFormat::ALL.iter().map(|f| f.as_str())))]
    format: Option<String>,
    /// At most N rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
}

/// Run one report, writing it to standard output.
pub async fn report(ctx: &Ctx<'_>, cmd: Report) -> Result<(), Error> {
    let (kind, subject, opts) = match cmd {
        Report::KeysOut(o) => (ReportKind::KeysOut, None, o),
        Report::Key { label, opts } => (ReportKind::Key, Some((options::KEY, label)), opts),
        Report::User { login, opts } => (ReportKind::User, Some((options::USER, login)), opts),
        Report::Reason {
            code: Some(code),
            opts,
        } => (ReportKind::Reason, Some((options::REASON, code)), opts),
        Report::Reason { code: None, opts } => (ReportKind::Reasons, None, opts),
        Report::Overdue(o) => (ReportKind::Overdue, None, o),
        Report::Alarms(o) => (ReportKind::Alarms, None, o),
        Report::Denials(o) => (ReportKind::Denials, None, o),
    };
    let what = format!("report {}", kind.as_str());
    let format = match (opts.format.as_deref(), ctx.out.json) {
        (Some(f), true) if f != ReportFormat::Json.as_str() => {
            return Err(Error::Invalid {
                what,
                message: format!("--json and --format {f} disagree"),
            })
        }
        (Some(f), _) => f.to_owned(),
        (None, true) => ReportFormat::Json.as_str().to_owned(),
        (None, false) => ReportFormat::Table.as_str().to_owned(),
    };
    let mut map = OptionMap::default();
    map.set(options::FROM, opts.from)
        .set(options::TO, opts.to)
        .set(options::KEY, opts.key)
        .set(options::USER, opts.user)
        .set(options::REASON, opts.reason)
        .set(options::FORMAT, Some(format))
        .set(options::LIMIT, opts.limit);
    if let Some((name, value)) = subject {
        if map.get().contains_key(name) {
            return Err(Error::Invalid {
                what,
                message: format!("the {name} is given twice"),
            });
        }
        map.set(name, Some(value));
    }
    let stdout = std::io::stdout();
    // Nothing of ours may sit in the buffer ahead of what the service writes.
    stdout
        .lock()
        .flush()
        .map_err(io(format!("{what}: flush")))?;
    ctx.policy
        .report(kind.as_str(), Fd::from(stdout.as_fd()), map.get())
        .await
        .map_err(call(what))?;
    Ok(())
}
