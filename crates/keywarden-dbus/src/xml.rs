//! The committed introspection XML, and the check that a served object matches it.
//!
//! The XML under `interfaces/` is the contract (documented member by member); each service's
//! `introspection` test serves its object, introspects it and calls [`check_against_committed`].

use std::collections::BTreeSet;

/// `interfaces/org.keywarden.Hardware1.xml`.
pub const HARDWARE1_XML: &str = include_str!("../interfaces/org.keywarden.Hardware1.xml");
/// `interfaces/org.keywarden.HardwareSim1.xml`.
pub const HARDWARE_SIM1_XML: &str = include_str!("../interfaces/org.keywarden.HardwareSim1.xml");

/// `interfaces/org.keywarden.Policy1.xml`.
pub const POLICY1_XML: &str = include_str!("../interfaces/org.keywarden.Policy1.xml");

/// `interfaces/org.keywarden.Update1.xml`.
pub const UPDATE1_XML: &str = include_str!("../interfaces/org.keywarden.Update1.xml");

/// Every committed interface file, as (interface name, XML).
pub const ALL: &[(&str, &str)] = &[
    ("org.keywarden.Hardware1", HARDWARE1_XML),
    ("org.keywarden.HardwareSim1", HARDWARE_SIM1_XML),
    ("org.keywarden.Policy1", POLICY1_XML),
    ("org.keywarden.Update1", UPDATE1_XML),
];

/// Why an introspected object does not match its committed XML.
#[derive(Debug, thiserror::Error)]
pub enum XmlMismatch {
    /// One of the documents is not valid introspection XML.
    #[error("cannot parse {which} introspection XML: {source}")]
    Parse {
        /// "committed" or "introspected".
        which: &'static str,
        /// The parser's error.
        source: zbus_xml::Error,
    },
    /// The interface is missing from one side.
    #[error("interface {0} is missing from the {1} XML")]
    MissingInterface(String, &'static str),
    /// Members differ.
    #[error("interface {interface}: only in committed XML: {only_committed:?}; only in code: {only_code:?}")]
    Members {
        /// The interface.
        interface: String,
        /// Member descriptions found only in the committed XML.
        only_committed: Vec<String>,
        /// Member descriptions found only in the served object.
        only_code: Vec<String>,
    },
}

/// A canonical, order-independent description of every member of `interface` in `xml`:
/// `method Name(in s name, out u x)`, `signal Name(s a)`, `property Name s read`.
pub fn members(
    xml: &str,
    interface: &str,
    which: &'static str,
) -> Result<BTreeSet<String>, XmlMismatch> {
    let node = zbus_xml::Node::from_reader(xml.as_bytes())
        .map_err(|source| XmlMismatch::Parse { which, source })?;
    let iface = node
        .interfaces()
        .iter()
        .find(|i| i.name().as_str() == interface)
        .ok_or_else(|| XmlMismatch::MissingInterface(interface.to_owned(), which))?;
    let mut out = BTreeSet::new();
    for m in iface.methods() {
        let args: Vec<String> = m
            .args()
            .iter()
            .map(|a| {
                let dir = match a.direction() {
                    Some(zbus_xml::ArgDirection::Out) => "out",
                    _ => "in",
                };
                format!("{dir} {} {}", a.ty().inner(), a.name().unwrap_or_default())
            })
            .collect();
        out.insert(format!("method {}({})", m.name(), args.join(", ")));
    }
    for s in iface.signals() {
        let args: Vec<String> = s
            .args()
            .iter()
            .map(|a| format!("{} {}", a.ty().inner(), a.name().unwrap_or_default()))
            .collect();
        out.insert(format!("signal {}({})", s.name(), args.join(", ")));
    }
    for p in iface.properties() {
        out.insert(format!(
            "property {} {} {:?}",
            p.name(),
            p.ty().inner(),
            p.access()
        ));
    }
    Ok(out)
}

/// Check that `introspected` (what a served object answers to `Introspect`) declares exactly the
/// members of `interface` that the committed XML declares.
pub fn check_against_committed(interface: &str, introspected: &str) -> Result<(), XmlMismatch> {
    let committed_xml = ALL
        .iter()
        .find(|(name, _)| *name == interface)
        .map(|(_, xml)| *xml)
        .ok_or_else(|| XmlMismatch::MissingInterface(interface.to_owned(), "committed"))?;
    let committed = members(committed_xml, interface, "committed")?;
    let code = members(introspected, interface, "introspected")?;
    if committed == code {
        return Ok(());
    }
    Err(XmlMismatch::Members {
        interface: interface.to_owned(),
        only_committed: committed.difference(&code).cloned().collect(),
        only_code: code.difference(&committed).cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method, signal and property in the committed XML carries a comment right before it
    /// (allowed values, units, limits): the XML is the documentation of the contract.
    #[test]
    fn every_member_is_documented() {
        for (name, xml) in ALL {
            let lines: Vec<&str> = xml.lines().map(str::trim).collect();
            for (i, line) in lines.iter().enumerate() {
                let is_member = ["<method ", "<signal ", "<property "]
                    .iter()
                    .any(|p| line.starts_with(p));
                if is_member {
                    let before = lines[..i]
                        .iter()
                        .rev()
                        .find(|l| !l.is_empty())
                        .copied()
                        .unwrap_or("");
                    assert!(
                        before.ends_with("-->"),
                        "{name}: member `{line}` has no comment before it"
                    );
                }
            }
            assert!(
                !members(xml, name, "committed").unwrap().is_empty(),
                "{name} declares no members"
            );
        }
    }

    #[test]
    fn a_missing_member_is_reported_by_name() {
        let trimmed = HARDWARE1_XML.replace(
            r#"<property name="TamperActive" type="b" access="read"/>"#,
            "",
        );
        let err = check_against_committed("org.keywarden.Hardware1", &trimmed).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("only in committed XML: [\"property TamperActive b Read\"]"),
            "{text}"
        );
    }
}
