-- Version 3: the notification outbox (see src/notify). Written by the notifier's own connection.

-- One row per message: an e-mail to one recipient, or one webhook POST. A row is pending while
-- sent_at and expired_at are NULL; delivery is retried with backoff (next_attempt_at) and the
-- row is never deleted before it was sent or given up. Times are Unix seconds.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    alert TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    sent_at INTEGER,
    expired_at INTEGER,
    last_error TEXT
) STRICT;
CREATE INDEX outbox_pending ON outbox(next_attempt_at)
    WHERE sent_at IS NULL AND expired_at IS NULL;

-- The notifier's position: 'cursor' = last audit seq turned into alerts; 'keys-out-day' and
-- 'inactive-day' = local date (YYYYMMDD) the daily jobs last ran.
CREATE TABLE notify_state (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;

-- Users alerted as inactive, with the last activity (audit ms) the alert was about: one alert
-- per inactivity period, across restarts.
CREATE TABLE notify_inactive (
    user_name TEXT PRIMARY KEY,
    last_activity_ms INTEGER NOT NULL,
    alerted_at INTEGER NOT NULL
) STRICT;
