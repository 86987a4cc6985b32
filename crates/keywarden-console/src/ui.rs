//! Drawing a [`Screen`] with ratatui: a header with the cabinet's state, the alarm banner, the
//! body, an error line and the keys that work on this screen. No state of its own.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Padding, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::model::{Body, KeyRow, ReasonRow, Screen};

/// Draw `screen` on the whole frame.
pub fn draw(frame: &mut Frame<'_>, screen: &Screen) {
    let banner = u16::from(screen.alarms.is_some());
    let error = u16::from(screen.error.is_some());
    let [header, alarm, body, err, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner),
        Constraint::Min(3),
        Constraint::Length(error),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let (state, colour) = match &screen.body {
        Body::Unavailable { .. } => ("Service unavailable", Color::Red),
        Body::OutOfService { .. } => ("Out of service", Color::Red),
        _ => ("Ready", Color::Green),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" KEYWARDEN ", Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw("  key cabinet  "),
            Span::styled(state, Style::new().fg(colour).bold()),
        ])),
        header,
    );
    if let Some(text) = &screen.alarms {
        frame.render_widget(
            Paragraph::new(format!(" {text} "))
                .style(Style::new().bg(Color::Red).fg(Color::White).bold()),
            alarm,
        );
    }
    draw_body(frame, body, &screen.body);
    if let Some(text) = &screen.error {
        frame.render_widget(
            Paragraph::new(format!(" {text}")).style(Style::new().fg(Color::Yellow)),
            err,
        );
    }
    frame.render_widget(
        Paragraph::new(format!(" {}", hints(&screen.body))).style(Style::new().fg(Color::DarkGray)),
        footer,
    );
}

/// The keys that work on this body, for the footer.
pub fn hints(body: &Body) -> &'static str {
    match body {
        Body::PickKey { .. } => {
            "Up/Down choose   Enter take this key   Esc cancel   (or type its label on the keypad)"
        }
        Body::PickReason { .. } => {
            "Up/Down choose   Enter confirm   Esc cancel   (or type its number on the keypad)"
        }
        Body::Pin { .. }
        | Body::Checking { .. }
        | Body::SecondPerson { .. }
        | Body::Return { .. } => "Esc cancel",
        _ => "",
    }
}

fn panel(title: &str) -> Block<'_> {
    Block::bordered()
        .title(format!(" {title} "))
        .padding(Padding::horizontal(1))
}

fn paragraph(frame: &mut Frame<'_>, area: Rect, title: &str, lines: Vec<Line<'_>>) {
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(panel(title))
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn big(text: impl Into<String>, colour: Color) -> Line<'static> {
    Line::styled(text.into(), Style::new().fg(colour).bold())
}

fn draw_body(frame: &mut Frame<'_>, area: Rect, body: &Body) {
    match body {
        Body::Unavailable { detail } => paragraph(
            frame,
            area,
            "Service unavailable",
            vec![
                Line::raw(""),
                big(
                    "Service unavailable: the cabinet cannot be used right now.",
                    Color::Red,
                ),
                Line::raw(""),
                Line::raw(format!("Waiting for the policy service ({detail})...")),
            ],
        ),
        Body::OutOfService { why } => paragraph(
            frame,
            area,
            "Out of service",
            vec![
                Line::raw(""),
                big(
                    "Out of service: no key can be taken or returned.",
                    Color::Red,
                ),
                Line::raw(""),
                Line::raw(format!(
                    "Reason: {}",
                    why.strip_prefix("out of service: ").unwrap_or(why)
                )),
            ],
        ),
        Body::Idle { prompt } => paragraph(
            frame,
            area,
            "Welcome",
            vec![Line::raw(""), big(prompt.clone(), Color::Cyan)],
        ),
        Body::Pin {
            user,
            digits,
            second,
            prompt,
        } => {
            let stars = if *digits == 0 {
                "_".to_owned()
            } else {
                "* ".repeat(*digits as usize).trim_end().to_owned()
            };
            let title = if *second { "Second person" } else { "PIN" };
            paragraph(
                frame,
                area,
                title,
                vec![
                    Line::raw(format!("Hello, {user}.")),
                    Line::raw(""),
                    Line::raw(prompt.clone()),
                    Line::raw(""),
                    Line::from(vec![
                        Span::raw("PIN: "),
                        Span::styled(stars, Style::new().bold()),
                    ]),
                ],
            );
        }
        Body::Checking { user } => paragraph(
            frame,
            area,
            "PIN",
            vec![
                Line::raw(format!("Hello, {user}.")),
                Line::raw(""),
                Line::raw("Checking your PIN..."),
            ],
        ),
        Body::PickKey {
            user,
            keys,
            cursor,
            entry,
            prompt,
        } => draw_keys(frame, area, user, keys, *cursor, entry, prompt),
        Body::PickReason {
            user,
            key,
            notes,
            reasons,
            cursor,
            entry,
        } => draw_reasons(frame, area, user, key, notes, reasons, *cursor, entry),
        Body::SecondPerson { user, key, prompt } => paragraph(
            frame,
            area,
            "Second person needed",
            vec![
                Line::raw(format!("{user} asked for key {key}.")),
                Line::raw(""),
                big(prompt.clone(), Color::Yellow),
            ],
        ),
        Body::TakeKey {
            user,
            key,
            notes,
            slot,
            due,
        } => {
            let what = if *slot == 0 {
                format!("The door is open: take key {key}, then close the door.")
            } else {
                format!("Take key {key} from slot {slot}.")
            };
            let mut lines = vec![
                Line::raw(format!("Granted, {user}.")),
                Line::raw(""),
                big(what, Color::Green),
                Line::raw(""),
            ];
            if !notes.is_empty() {
                lines.push(Line::raw(format!("Notes: {notes}")));
            }
            if let Some(due) = due.and_then(show_time) {
                lines.push(Line::raw(format!("Due back by {due}.")));
            }
            paragraph(frame, area, "Take your key", lines);
        }
        Body::Return { key, slot, prompt } => paragraph(
            frame,
            area,
            "Return a key",
            vec![
                Line::raw(format!("Returning key {key}.")),
                Line::raw(""),
                big(prompt.clone(), Color::Green),
                Line::raw(""),
                Line::raw(format!("The light of slot {slot} is blinking.")),
            ],
        ),
        Body::Denied { message } => paragraph(
            frame,
            area,
            "Refused",
            vec![
                Line::raw(""),
                big(format!("Refused: {message}"), Color::Red),
                Line::raw(""),
                Line::raw("Nothing was opened. The refusal is recorded."),
            ],
        ),
        Body::Lockout { message } => paragraph(
            frame,
            area,
            "Locked out",
            vec![
                Line::raw(""),
                big(format!("LOCKED OUT: {message}"), Color::Red),
                Line::raw(""),
                Line::raw("Too many wrong PINs. An administrator can unlock the account."),
            ],
        ),
        Body::Message { text } => paragraph(
            frame,
            area,
            "Keywarden",
            vec![Line::raw(""), big(text.clone(), Color::Cyan)],
        ),
    }
}

fn slot_text(k: &KeyRow) -> String {
    if k.available || k.status == "not-permitted" || k.status == "outside-schedule" {
        if k.slot == 0 {
            String::from("-")
        } else {
            format!("slot {}", k.slot)
        }
    } else {
        k.status.replace('-', " ")
    }
}

fn draw_keys(
    frame: &mut Frame<'_>,
    area: Rect,
    user: &str,
    keys: &[KeyRow],
    cursor: usize,
    entry: &str,
    prompt: &str,
) {
    let [top, list, notes] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(3),
    ])
    .areas(area);
    let typed = if entry.is_empty() {
        String::new()
    } else {
        format!("   Keypad: {entry}_")
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::raw(format!("Choose a key, {user}.{typed}")),
            Line::styled(prompt.to_owned(), Style::new().fg(Color::Yellow)),
        ])
        .wrap(Wrap { trim: false }),
        top,
    );
    let rows: Vec<Row<'_>> = keys
        .iter()
        .map(|k| {
            let style = if k.available {
                Style::new()
            } else {
                Style::new().fg(Color::DarkGray)
            };
            let status = if k.available {
                "available".to_owned()
            } else {
                k.status.replace('-', " ")
            };
            Row::new(vec![
                Cell::from(k.label.clone()),
                Cell::from(k.kind.clone()),
                Cell::from(slot_text(k)),
                Cell::from(status),
                Cell::from(k.notes.clone()),
            ])
            .style(style)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["Key", "Kind", "Slot", "Status", "Notes"]).bold())
    .block(panel("Keys"))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol("> ");
    let mut state = TableState::default().with_selected((!keys.is_empty()).then_some(cursor));
    frame.render_stateful_widget(table, list, &mut state);
    let chosen = keys.get(cursor).map_or(String::new(), |k| {
        if k.notes.is_empty() {
            format!("{}: no notes", k.label)
        } else {
            format!("{}: {}", k.label, k.notes)
        }
    });
    frame.render_widget(
        Paragraph::new(chosen)
            .block(panel("Notes"))
            .wrap(Wrap { trim: false }),
        notes,
    );
}

#[allow(clippy::too_many_arguments)]
fn draw_reasons(
    frame: &mut Frame<'_>,
    area: Rect,
    user: &str,
    key: &str,
    notes: &str,
    reasons: &[ReasonRow],
    cursor: usize,
    entry: &str,
) {
    let [top, list] = Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    let typed = if entry.is_empty() {
        String::new()
    } else {
        format!("   Keypad: {entry}_")
    };
    let notes = if notes.is_empty() {
        String::from("Notes: none")
    } else {
        format!("Notes: {notes}")
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::raw(format!("{user}, why do you need key {key}?{typed}")),
            Line::styled(notes, Style::new().fg(Color::Yellow)),
        ])
        .wrap(Wrap { trim: false }),
        top,
    );
    let rows: Vec<Row<'_>> = reasons
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let limit = if r.max_minutes == 0 {
                String::new()
            } else {
                format!("at most {} min", r.max_minutes)
            };
            Row::new(vec![
                Cell::from((i + 1).to_string()),
                Cell::from(r.code.clone()),
                Cell::from(r.description.clone()),
                Cell::from(limit),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(10),
            Constraint::Min(20),
            Constraint::Length(16),
        ],
    )
    .header(Row::new(vec!["#", "Reason", "", ""]).bold())
    .block(panel("Reason"))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol("> ");
    let mut state = TableState::default().with_selected((!reasons.is_empty()).then_some(cursor));
    frame.render_stateful_widget(table, list, &mut state);
}

/// Unix seconds as local time, `YYYY-MM-DD HH:MM`.
fn show_time(t: i64) -> Option<String> {
    let ts = jiff::Timestamp::from_second(t).ok()?;
    Some(
        ts.to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
    )
}
