//! The L4 kinds' C ABI against the running Envoy (run by `cargo test` on the pinned 1.40.0 and
//! by `.ci/matrix.sh` on 1.38.3 and 1.39.3): for the network, listener and UDP listener filter
//! callbacks, every directly linked one is exported by this Envoy, every exported one is
//! declared (linked or looked up late), and CONSTRAINTS.md's table for the kind lists every
//! declared one with versions that match this binary.

use jisr_e2e::symbols::{self, KindAbi};
use std::collections::BTreeSet;

const NETWORK: &str = "envoy_dynamic_module_callback_network_";
const LISTENER: &str = "envoy_dynamic_module_callback_listener_";
const UDP: &str = "envoy_dynamic_module_callback_udp_listener_";

const CONSTRAINTS: &str = include_str!("../../CONSTRAINTS.md");
const NETWORK_RS: &str = include_str!("../../src/abi/network.rs");
const LISTENER_RS: &str = include_str!("../../src/abi/listener.rs");
const UDP_RS: &str = include_str!("../../src/abi/udp.rs");

/// A kind's declarations in `src` (one file holds its `extern` block and its late table) and
/// its CONSTRAINTS.md table.
fn kind<'a>(prefix: &'a str, src: &str, heading: &str) -> KindAbi<'a> {
    KindAbi {
        prefix,
        linked: symbols::linked(src, prefix),
        late: symbols::late(src, prefix),
        rows: symbols::table(CONSTRAINTS, heading, prefix),
    }
}

fn network() -> KindAbi<'static> {
    kind(
        NETWORK,
        NETWORK_RS,
        "## Every Envoy 1.40 network-filter callback",
    )
}

fn listener() -> KindAbi<'static> {
    kind(
        LISTENER,
        LISTENER_RS,
        "## Every Envoy 1.40 listener-filter callback",
    )
}

fn udp() -> KindAbi<'static> {
    kind(
        UDP,
        UDP_RS,
        "## Every Envoy 1.40 UDP-listener-filter callback",
    )
}

fn check(abi: &KindAbi) {
    let exported = symbols::exported_with(abi.prefix);
    assert!(
        exported.len() >= 16,
        "only {} {}* callbacks found in the binary",
        exported.len(),
        abi.prefix
    );
    let problems = symbols::problems(abi, &exported, jisr_e2e::envoy_minor());
    assert!(
        problems.is_empty(),
        "Envoy {}:\n{}",
        jisr_e2e::envoy_version(),
        problems.join("\n")
    );
}

#[test]
fn network_callbacks_are_bound_and_the_table_matches_the_binary() {
    let abi = network();
    // 76 linked (1.38) and 11 late (1.39: 10, 1.40: 1).
    assert_eq!(
        (abi.linked.len(), abi.late.len(), abi.rows.len()),
        (76, 11, 87)
    );
    check(&abi);
}

#[test]
fn listener_callbacks_are_bound_and_the_table_matches_the_binary() {
    let abi = listener();
    // 62 linked, 12 late: 9 from 1.39, 2 from 1.40, and one only 1.38 has.
    assert_eq!(
        (abi.linked.len(), abi.late.len(), abi.rows.len()),
        (62, 12, 74)
    );
    check(&abi);
}

#[test]
fn udp_listener_callbacks_are_bound_and_the_table_matches_the_binary() {
    let abi = udp();
    // 16 linked and 5 late (1.39).
    assert_eq!(
        (abi.linked.len(), abi.late.len(), abi.rows.len()),
        (16, 5, 21)
    );
    check(&abi);
}

/// The prefixes do not overlap: `listener_` names are not `udp_listener_` names, and every
/// exported name of the three kinds falls under exactly one.
#[test]
fn the_three_prefixes_split_the_l4_callbacks() {
    let all: BTreeSet<String> = [NETWORK, LISTENER, UDP]
        .iter()
        .flat_map(|p| symbols::exported_with(p))
        .collect();
    let sum: usize = [NETWORK, LISTENER, UDP]
        .iter()
        .map(|p| symbols::exported_with(p).len())
        .sum();
    assert_eq!(all.len(), sum);
}

/// The check catches a misspelt declaration, in the late table or the `extern` block, and a
/// table row whose version is wrong: each breakage of the real sources is reported by name.
#[test]
fn a_misspelt_name_or_a_wrong_version_is_caught() {
    let exported = symbols::exported_with(NETWORK);
    let minor = jisr_e2e::envoy_minor();

    // A late name spelt wrong: the real callback is undeclared (where this Envoy has it) and
    // the misspelt one has no row.
    let late_typo = NETWORK_RS.replace(
        "c\"envoy_dynamic_module_callback_network_filter_get_attribute_int\"",
        "c\"envoy_dynamic_module_callback_network_filter_get_atribute_int\"",
    );
    assert_ne!(late_typo, NETWORK_RS);
    let abi = kind(
        NETWORK,
        &late_typo,
        "## Every Envoy 1.40 network-filter callback",
    );
    let found = symbols::problems(&abi, &exported, minor).join("\n");
    assert!(
        found.contains("network_filter_get_atribute_int is declared but CONSTRAINTS.md"),
        "{found}"
    );
    assert!(
        found.contains("network_filter_get_attribute_int is listed but not declared"),
        "{found}"
    );

    // A linked name spelt wrong: this Envoy lacks it, and the module would not load.
    let linked_typo = NETWORK_RS.replace(
        "fn envoy_dynamic_module_callback_network_filter_get_read_buffer_size(",
        "fn envoy_dynamic_module_callback_network_filter_get_read_bufer_size(",
    );
    assert_ne!(linked_typo, NETWORK_RS);
    let abi = kind(
        NETWORK,
        &linked_typo,
        "## Every Envoy 1.40 network-filter callback",
    );
    let found = symbols::problems(&abi, &exported, minor).join("\n");
    assert!(
        found.contains("get_read_bufer_size is linked directly but this Envoy lacks it"),
        "{found}"
    );
    assert!(
        found.contains(
            "network_filter_get_read_buffer_size is exported by this Envoy but not declared"
        ),
        "{found}"
    );

    // A row claiming the wrong first version disagrees with every binary for one side.
    let mut abi = network();
    let row = abi
        .rows
        .iter_mut()
        .find(|r| {
            r.name
                .ends_with("network_filter_start_downstream_secure_transport")
        })
        .expect("row");
    row.since = if minor.1 >= 40 { 41 } else { 38 };
    let found = symbols::problems(&abi, &exported, minor).join("\n");
    assert!(
        found.contains("start_downstream_secure_transport: the table says since"),
        "{found}"
    );
    // A callback newer than 1.38 moved to the `extern` block is reported on every version
    // (1.40 exports it, but 1.38 would refuse to load the module).
    let mut abi = network();
    abi.late.remove(&format!(
        "{NETWORK}filter_start_downstream_secure_transport"
    ));
    abi.linked
        .insert(format!("{NETWORK}filter_start_downstream_secure_transport"));
    let found = symbols::problems(&abi, &exported, minor).join("\n");
    assert!(
        found.contains("start_downstream_secure_transport is missing from some supported Envoy"),
        "{found}"
    );
}
