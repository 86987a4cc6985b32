//! The org.keywarden.Update1 D-Bus adapter.
