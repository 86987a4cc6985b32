//! The result protocol on the VM's serial console (see tests/vm/src/report.rs), parsed one line
//! at a time, and the tally of a run.

/// One console line, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `KWTEST START <name>`
    Start(String),
    /// `KWTEST PASS <name> <ms>`
    Pass(String, u64),
    /// `KWTEST FAIL <name>: <reason>`
    Fail(String, String),
    /// `KWTEST DONE <passed> <failed>`
    Done(u32, u32),
    /// `KWBENCH ...` (printed as is; `KWBENCH DONE` ends a bench run, `KWBENCH FAIL` fails it)
    Bench(String),
    /// Anything else: kernel messages, progress, daemon logs.
    Other(String),
}

impl Line {
    /// Classifies a line (trailing `\r` and whitespace ignored; unparsable `KWTEST` lines are
    /// `Other`, so a garbled line can never count as a pass).
    pub fn parse(raw: &str) -> Line {
        let text = raw.trim_end();
        if let Some(rest) = text.strip_prefix("KWBENCH ") {
            return Line::Bench(rest.to_owned());
        }
        let Some(rest) = text.strip_prefix("KWTEST ") else {
            return Line::Other(text.to_owned());
        };
        Self::parse_test(rest).unwrap_or_else(|| Line::Other(text.to_owned()))
    }

    fn parse_test(rest: &str) -> Option<Line> {
        let (verb, args) = rest.split_once(' ')?;
        match verb {
            "START" => Some(Line::Start(args.to_owned())),
            "PASS" => {
                let (name, ms) = args.rsplit_once(' ')?;
                Some(Line::Pass(name.to_owned(), ms.parse().ok()?))
            }
            "FAIL" => {
                let (name, reason) = args.split_once(": ").unwrap_or((args, ""));
                Some(Line::Fail(name.to_owned(), reason.to_owned()))
            }
            "DONE" => {
                let (passed, failed) = args.split_once(' ')?;
                Some(Line::Done(passed.parse().ok()?, failed.parse().ok()?))
            }
            _ => None,
        }
    }
}

/// What a run reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Scenarios that passed.
    pub passed: u32,
    /// Scenarios that failed.
    pub failed: u32,
    /// The `DONE` line's counts, if it came.
    pub done: Option<(u32, u32)>,
    /// `KWBENCH DONE` came.
    pub bench_done: bool,
    /// `KWBENCH FAIL` came.
    pub bench_failed: bool,
    /// Why the run ended without its final line (set by the runner).
    pub incomplete: Option<String>,
}

impl Tally {
    /// Counts one line.
    pub fn record(&mut self, line: &Line) {
        match line {
            Line::Pass(..) => self.passed += 1,
            Line::Fail(..) => self.failed += 1,
            Line::Done(p, f) => self.done = Some((*p, *f)),
            Line::Bench(text) if text == "DONE" => self.bench_done = true,
            Line::Bench(text) if text.starts_with("FAIL") => self.bench_failed = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Line, Tally};

    #[test]
    fn protocol_lines_parse() {
        assert_eq!(
            Line::parse("KWTEST START badge-scan\r"),
            Line::Start("badge-scan".into())
        );
        assert_eq!(
            Line::parse("KWTEST PASS badge-scan 42"),
            Line::Pass("badge-scan".into(), 42)
        );
        assert_eq!(
            Line::parse("KWTEST FAIL keypad: got (\"keypad\", \"2\"): x"),
            Line::Fail("keypad".into(), "got (\"keypad\", \"2\"): x".into())
        );
        assert_eq!(Line::parse("KWTEST DONE 9 1"), Line::Done(9, 1));
        assert_eq!(
            Line::parse("KWBENCH ping n=200"),
            Line::Bench("ping n=200".into())
        );
        assert_eq!(
            Line::parse("KWTEST PASS x notanumber"),
            Line::Other("KWTEST PASS x notanumber".into())
        );
        assert_eq!(
            Line::parse("[    1.0] gpio-sim"),
            Line::Other("[    1.0] gpio-sim".into())
        );
    }

    #[test]
    fn tally_counts_results_and_done() {
        let mut tally = Tally::default();
        for raw in [
            "KWTEST PASS a 1",
            "KWTEST FAIL b: no",
            "KWTEST DONE 1 1",
            "KWBENCH DONE",
        ] {
            tally.record(&Line::parse(raw));
        }
        assert_eq!(
            (tally.passed, tally.failed, tally.done),
            (1, 1, Some((1, 1)))
        );
        assert!(tally.bench_done && !tally.bench_failed);
    }
}
