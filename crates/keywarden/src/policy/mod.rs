//! The policy service's commands (`org.keywarden.Policy1`), by noun: each is a thin call through
//! the `keywarden-dbus` proxy, printed by [`crate::output`].

pub mod alarms;
pub mod audit;
pub mod keys;
pub mod reports;
pub mod rules;
pub mod session;
pub mod users;

use clap::builder::PossibleValuesParser;
use keywarden_dbus::policy::{Options, Policy1Proxy};
use zbus::proxy::CacheProperties;
use zbus::zvariant::Value;
use zbus::Connection;

use crate::error::{call, Error};
use crate::output::Output;

/// What every policy command gets: the proxy and how to print.
pub struct Ctx<'a> {
    /// `org.keywarden.Policy1` on the chosen bus.
    pub policy: Policy1Proxy<'a>,
    /// Tables or JSON.
    pub out: Output,
}

impl<'a> Ctx<'a> {
    /// A proxy that reads properties when asked (no cache: every command is one shot).
    pub async fn new(conn: &'a Connection, out: Output) -> Result<Ctx<'a>, Error> {
        let policy = Policy1Proxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(call("connect to org.keywarden.Policy1"))?;
        Ok(Ctx { policy, out })
    }
}

/// The `a{sv}` options of `AddUser`, `UpdateUser`, `AddKey` and `UpdateKey`: only what was given.
#[derive(Debug, Default)]
pub struct OptionMap(Options<'static>);

impl OptionMap {
    /// Set `key` if `value` is given.
    pub fn set<V: Into<Value<'static>>>(
        &mut self,
        key: &'static str,
        value: Option<V>,
    ) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(key, v.into());
        }
        self
    }

    /// The map to pass.
    pub fn get(&self) -> &Options<'static> {
        &self.0
    }
}

/// A clap parser accepting exactly the wire strings of a closed set.
pub fn one_of(values: impl IntoIterator<Item = &'static str>) -> PossibleValuesParser {
    PossibleValuesParser::new(values)
}
