//! Reports over the records (keys out, by key, by reason, by employee, overdue, alarms,
//! denials). Placeholder: the reports work fills this in.
