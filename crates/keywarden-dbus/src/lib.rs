//! Keywarden's D-Bus contract.
//!
//! Everything two Keywarden processes must agree on to talk over the system bus lives here and only
//! here: well-known names, object paths, the client proxies, the wire types and error names, and the
//! committed introspection XML (`interfaces/*.xml`, checked against the serving code by the
//! `introspection` test of each service).
//!
//! Wire types are plain data with `zvariant` traits; the services convert them to and from their
//! core types at the edge, so core types never derive serde or zvariant traits.

mod string_enum;

pub mod caller;
pub mod hardware;
pub mod policy;
pub mod update;
pub mod xml;

pub use string_enum::UnknownValue;

/// Well-known bus names and object paths fixed by DESIGN.md.
pub mod names {
    /// Bus name owned by `keywarden-hwd`.
    pub const HARDWARE_BUS_NAME: &str = "org.keywarden.Hardware1";
    /// Object path of the hardware interface.
    pub const HARDWARE_PATH: &str = "/org/keywarden/Hardware1";
    /// Interface name of the hardware service.
    pub const HARDWARE_INTERFACE: &str = "org.keywarden.Hardware1";
    /// Object path of the `sim` backend's control surface (same bus name as the hardware service).
    pub const HARDWARE_SIM_PATH: &str = "/org/keywarden/HardwareSim1";
    /// Interface name of the `sim` backend's control surface.
    pub const HARDWARE_SIM_INTERFACE: &str = "org.keywarden.HardwareSim1";
    /// Bus name owned by `keywarden-policyd`.
    pub const POLICY_BUS_NAME: &str = "org.keywarden.Policy1";
    /// Object path of the policy interface.
    pub const POLICY_PATH: &str = "/org/keywarden/Policy1";
    /// Interface name of the policy service.
    pub const POLICY_INTERFACE: &str = "org.keywarden.Policy1";
    /// Bus name owned by `keywarden-updated`.
    pub const UPDATE_BUS_NAME: &str = "org.keywarden.Update1";
    /// Object path of the update interface.
    pub const UPDATE_PATH: &str = "/org/keywarden/Update1";
    /// Interface name of the update service.
    pub const UPDATE_INTERFACE: &str = "org.keywarden.Update1";
}

/// System users and groups fixed by DESIGN.md.
pub mod accounts {
    /// The hardware service's user.
    pub const HARDWARE_USER: &str = "keywarden-hw";
    /// The policy service's user: the only non-root caller the hardware service accepts.
    pub const POLICY_USER: &str = "keywarden";
    /// Group allowed console/staff operations on the policy service.
    pub const CONSOLE_GROUP: &str = "keywarden-console";
    /// Group allowed admin and report operations.
    pub const ADMIN_GROUP: &str = "keywarden-admin";
}
